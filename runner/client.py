"""The host-side handle of a sandboxed plugin: an LLMClient whose calls run in a child process.

App code uses a :class:`Plugin` exactly like an in-process ``LLMClient``. The process
starts on first use; after any failure that killed it, the next call starts a fresh
one. Calls are serialized: one request at a time per plugin process, and calls from
other threads wait their turn. A call made on the thread that is reading one of this
plugin's streams fails at once with ``PluginUnavailable`` (reason ``"busy"``) and
leaves the stream intact.

Deadlines run from the moment a method is called: waiting for the turn and a restart's
back-off count against the call's own deadline (``total`` for a generation, and so on).
Starting a process is the one pause: it has its own ``start`` deadline, and a call's
clock stops while it runs. Within a stream, ``first_chunk`` counts from the request and
``idle`` from the last chunk with text. To cancel one call from another thread, pass it
a :class:`~runner.calls.CancelToken` (``cancel=``), or call a stream's ``cancel()``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from llm_utils import DEFAULT_CONTEXT_WINDOW, LLMClient, Message
from runner.calls import CancelToken, Stream
from runner.config import Deadlines, PluginConfig
from runner.connection import Connection
from runner.egress import EgressUse
from runner.errors import (
    PluginCancelled,
    PluginError,
    PluginProtocolError,
    PluginRaised,
    PluginResultError,
    PluginTimeout,
    PluginUnavailable,
)
from runner.lifecycle import EventListener, Lifecycle, PluginStats, exit_details
from runner.methods import Readiness, check_problem, count_problem, generation, one_line, plain_messages, readiness_of, text_problem
from runner.process import resident_bytes
from runner.restarts import RestartGate, RestartPolicy
from runner.states import LifeStage, state_of
from runner.turn import Turn

__all__ = ["Plugin", "PluginStats", "Readiness"]

_KEEPS_PROCESS = (PluginRaised, PluginResultError, PluginCancelled)  # failures that leave the child healthy
_RUNNING = LifeStage.RUNNING


class Plugin(LLMClient):
    """A plugin running in its own sandboxed subprocess, used as an ordinary LLMClient."""

    def __init__(
        self,
        config: PluginConfig | Callable[[], PluginConfig],
        *,
        policy: RestartPolicy | None = None,
        on_event: EventListener | None = None,
    ) -> None:
        """``config`` is fixed, or a function called at every start and restart.

        A function lets the caller decide the plugin's access (its code, grants, keys,
        paths) again each time a process starts, from the code that process will run.
        """
        self.stats = PluginStats()
        self._on_event = on_event
        self._turn = Turn()
        self._life = Lifecycle(config, policy, self.stats, self._emit, self._turn)
        self.name = self._life.name
        self._busy = 0
        self._streaming: threading.Thread | None = None  # the thread reading a stream, while one is read

    @property
    def config(self) -> PluginConfig:
        """The configuration of the current (or last) process."""
        return self._life.config

    def set_deadlines(self, deadlines: Deadlines) -> None:
        """Bound the next calls by ``deadlines``, the process kept (no start decision); for a caller that
        serialises its calls itself (the sandchat agent serves each command's own): a running call may see either."""
        self._life.config = dataclasses.replace(self._life.config, deadlines=deadlines)
        conn = self._life.conn
        if conn is not None:
            conn.config = dataclasses.replace(conn.config, deadlines=deadlines)

    @property
    def restart_gate(self) -> RestartGate:
        """The restart policy's state for this plugin: failures, back-off, quarantine."""
        return self._life.restart_gate

    @property
    def _conn(self) -> Connection | None:
        return self._life.conn

    @property
    def state(self) -> str:
        """One of ``runner.STATES`` (all but ``disabled``, which is the app's), read from the lifecycle's stage."""
        return state_of(self._life.stage, self._busy > 0, self._life.restart_gate)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Start the process if it is not running and return its hello."""
        start = self.config.deadlines.start
        if not self._turn.take(time.monotonic() + start):
            raise PluginTimeout(
                self.name, f"timed out after {start:g}s (the start deadline) waiting for another call to end", phase="start", seconds=start
            )
        try:
            return self._life.connection().hello
        finally:
            self._turn.give()

    @property
    def running(self) -> bool:
        return self._life.running

    @property
    def pid(self) -> int | None:
        return self._conn.pid if self.running else None  # type: ignore[union-attr]

    @property
    def hello(self) -> dict[str, Any]:
        """The last hello received (empty before the first start)."""
        return self._conn.hello if self._conn is not None else {}

    @property
    def context_window(self) -> int:  # type: ignore[override]
        window = self.hello.get("context_window")
        return window if type(window) is int and window > 0 else DEFAULT_CONTEXT_WINDOW

    def uptime(self) -> float | None:
        return time.monotonic() - self._conn.started_at if self.running else None  # type: ignore[union-attr]

    def network_use(self) -> EgressUse:
        """What the running process did with the network (network profile; else nothing).

        Its events (``network_connected``, ``network_refused``) have reached the event
        listener when this returns: they are written off the connect's path.
        """
        conn = self._conn
        if conn is None or conn.dead:
            return EgressUse()
        return conn.network_use(flush=True)

    def containment(self) -> dict[str, Any]:
        """The host's own facts about the running process's cgroup and memory (not the child's word).

        ``cgroup`` is the mechanism ("cgroup2", "cgroup1", "systemd-scope") or None with
        ``cgroup_missing`` saying why; ``memory_bytes`` is what the cgroup charges (memfd and
        shared memory included), or the resident set when there is no cgroup.
        """
        conn = self._conn
        if conn is None or conn.dead:
            return {}
        cage = conn.cage
        if cage is None:
            return {"cgroup": None, "cgroup_missing": conn.cage_missing, "memory_bytes": resident_bytes(conn.pid)}
        return {"cgroup": cage.kind, "tasks": cage.tasks(), "tasks_max": cage.limits.tasks,
                "memory_bytes": cage.memory_bytes(), "memory_max": cage.limits.memory}  # fmt: skip

    def stderr_tail(self, lines: int = 5) -> tuple[str, ...]:
        return self._conn.stderr_tail(lines) if self._conn is not None else ()

    def stop(self) -> None:
        """Stop the process politely (then by force); safe to call twice and from any thread."""
        self._life.stop()

    def close(self, why: str = "sandchat is shutting down") -> None:
        """Stop and refuse further calls, saying ``why``; safe to call twice and from any thread."""
        self._life.close(why)

    # -- calls -----------------------------------------------------------------------------

    def _call(
        self, method: str, params: dict[str, Any], seconds: float, phase: str,
        check: Callable[[Any], str] | None = None, cancel: CancelToken | None = None,
    ) -> Any:  # fmt: skip
        """One request and its result; ``check`` names what is wrong with a result ('' if nothing).

        A result ``check`` rejects is a forged reply: the process goes, and the call counts
        as a failure, never first as a success (it may be the probe after a quarantine).
        """
        if self._streaming is not None:
            self._refuse_reentry(f"before {method}")
        taken = False
        try:
            deadline = None if self._turn.take_now() else self._wait_turn(seconds, phase, cancel)
            taken = True
            life = self._life
            conn: Connection
            if life.stage is _RUNNING and cancel is None:  # the usual live process: no check to make
                conn = life.conn  # type: ignore[assignment]  # RUNNING: set and usable
            else:
                conn, deadline = self._ready(deadline, seconds, phase, cancel)
            self.stats.calls += 1
            self._busy += 1
            try:
                result = conn.call(method, params, seconds, phase, deadline, cancel)
            except PluginError as exc:
                self._failed(conn, exc)
                raise
            except BaseException:
                conn.kill()  # Ctrl-C mid-call: the reply may still come, so the stream is in doubt
                raise
            finally:
                self._busy -= 1
            if check is not None:
                problem = check(result)
                if problem:
                    self._distrust(problem)
            gate = self._life.restart_gate
            if gate.half_open or gate.failures:  # else succeeded() has nothing to forget
                gate.succeeded(time.monotonic())
            return result
        finally:
            if taken:
                self._turn.give()

    def _stream(self, method: str, params: dict[str, Any], cancel: CancelToken | None) -> Stream:
        return Stream(lambda token: self._chunks(method, params, token), cancel)

    def _chunks(self, method: str, params: dict[str, Any], cancel: CancelToken) -> Iterator[str]:
        if self._streaming is not None:
            self._refuse_reentry("first")
        total = self.config.deadlines.total
        taken = False
        try:
            deadline = None if self._turn.take_now() else self._wait_turn(total, "total", cancel)
            taken = True
            conn, deadline = self._ready(deadline, total, "total", cancel)
            self.stats.calls += 1
            self._busy += 1
            self._streaming = threading.current_thread()  # an object: a thread id is reused once its thread ends
            try:
                yield from conn.stream(method, params, deadline, cancel)
            except PluginError as exc:
                self._failed(conn, exc)
                raise
            finally:
                self._busy -= 1
                self._streaming = None
            self._life.restart_gate.succeeded(time.monotonic())
        finally:
            if taken:
                self._turn.give()

    def _wait_turn(self, seconds: float, phase: str, cancel: CancelToken | None) -> float:
        """Wait for another call to end, within this call's deadline; returns that deadline."""
        deadline = time.monotonic() + seconds
        if self._turn.take(deadline, cancel):
            return deadline
        if self._life.closed:  # close() sent the queue away
            raise PluginUnavailable(self.name, f"is stopped: {self._life.closed_why}", reason="closed")
        if cancel is not None and cancel.cancelled:
            raise PluginCancelled(self.name, "was cancelled while waiting for another call to end")
        raise self._life.late(seconds, phase, "waiting for another call to end")

    def _ready(self, deadline: float | None, seconds: float, phase: str, cancel: CancelToken | None) -> tuple[Connection, float | None]:
        """The live process for a call (started if need be) and the call's deadline.

        A start has a deadline of its own, so the call's clock stops while it runs.
        """
        if cancel is not None and cancel.cancelled:  # before any start: a cancelled call reaches nothing
            raise PluginCancelled(self.name, "was cancelled before it started")
        life = self._life
        if life.stage is _RUNNING:
            conn: Connection = life.conn  # type: ignore[assignment]  # RUNNING: set and usable
        else:
            if deadline is None:
                deadline = time.monotonic() + seconds
            starts = self.stats.starts
            conn = self._life.connection(deadline, seconds, phase, cancel)
            if self.stats.starts != starts and self.stats.startup_seconds is not None:
                deadline += self.stats.startup_seconds
            if self._life.closed or not conn.usable:  # closed or stopped from an event listener as it started
                raise self._life.ended_start(cancel)
        if cancel is not None and cancel.cancelled:
            raise PluginCancelled(self.name, "was cancelled before it started")
        return conn, deadline

    def _refuse_reentry(self, when: str) -> None:
        """Refuse a call made on the thread reading this plugin's stream (others wait their turn).

        The lock is re-entrant, so that thread would get in and interleave a request with
        the stream it is reading: refuse, and leave the stream as it was.
        """
        if self._streaming is threading.current_thread():
            raise PluginUnavailable(self.name, f"is streaming a reply to this thread: finish or close that stream {when}", reason="busy")

    def _failed(self, conn: Connection, exc: PluginError) -> None:
        self.stats.record(exc)
        if isinstance(exc, _KEEPS_PROCESS) or (isinstance(exc, PluginUnavailable) and exc.reason == "stopped"):
            return  # the plugin's own error, a cancel, or a deliberate stop: nothing to restart for
        conn.kill()  # whatever state it is in, the next call gets a fresh process
        self._emit("crashed" if not isinstance(exc, PluginTimeout) else "deadline", {"error": str(exc), **exit_details(exc)})
        gate = self._life.restart_gate
        if not self._life.closed and gate.failed(time.monotonic()):
            self._emit("quarantined", {"failures": gate.consecutive, "cooldown": gate.policy.cooldown})

    def _emit(self, event: str, details: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(self.name, event, details)

    def ping(self) -> float:
        """Round-trip a ping and return its latency in seconds (starts the plugin if needed)."""
        began = time.perf_counter()
        self._call("ping", {}, self.config.deadlines.ping, "ping")
        return time.perf_counter() - began

    def check_alive(self) -> bool | None:
        """Ping the process if it is running and idle; None when skipped (busy or stopped).

        A busy plugin is never presumed dead: its call has deadlines of its own.
        """
        if not self.running or not self._turn.take_now():
            return None
        try:
            if not self.running or self._busy:
                return None  # busy on this very thread (the lock is re-entrant): a stream between chunks
            self._call("ping", {}, self.config.deadlines.ping, "ping")
            return True
        except PluginError:
            return False
        finally:
            self._turn.give()

    def readiness(self) -> Readiness:
        """Ask the plugin whether it can answer now (its ``check()``), under the ``check`` deadline.

        Also learns how it counts tokens and its context window, as it knows them now.
        """
        readiness = readiness_of(self._call("check", {}, self.config.deadlines.check, "check", check_problem))
        conn = self._conn
        if readiness.context_window is not None and conn is not None:
            conn.hello["context_window"] = readiness.context_window  # this process's own word, learned after its hello
        return readiness

    def check(self) -> str | None:
        """``LLMClient.check``: the plugin's reason it cannot answer now, or None (see :meth:`readiness`)."""
        readiness = self.readiness()
        return None if readiness.ready else readiness.reason

    def token_counting(self) -> str:
        """``LLMClient.token_counting``, asked of the plugin; its ``check()`` is not run for this."""
        result = self._call("check", {"ready": False}, self.config.deadlines.check, "check", check_problem)
        return one_line(result["counting"])

    def count_tokens(self, text: str) -> int:
        return self._call("count_tokens", {"text": text}, self.config.deadlines.count_tokens, "count_tokens", count_problem)

    def generate_response(
        self, system: str, user_message: str, max_tokens: int = 4096, temperature: float | None = 0.8, *, cancel: CancelToken | None = None,
    ) -> str:  # fmt: skip
        params = generation(system, max_tokens, temperature, user_message=user_message)
        return self._call("generate", params, self.config.deadlines.total, "total", self._text_problem, cancel)

    def generate_chat(
        self,
        system: str,
        messages: Sequence[Message],
        max_tokens: int = 4096,
        temperature: float | None = 0.8,
        *,
        cancel: CancelToken | None = None,
    ) -> str:
        params = generation(system, max_tokens, temperature, messages=plain_messages(messages))
        return self._call("chat", params, self.config.deadlines.total, "total", self._text_problem, cancel)

    def stream_response(
        self, system: str, user_message: str, max_tokens: int = 4096, temperature: float | None = 0.8, *, cancel: CancelToken | None = None,
    ) -> Stream:  # fmt: skip
        """The reply as a :class:`Stream` of text; ``stream.cancel()`` ends it from any thread."""
        return self._stream("stream", generation(system, max_tokens, temperature, user_message=user_message), cancel)

    def stream_chat(
        self,
        system: str,
        messages: Sequence[Message],
        max_tokens: int = 4096,
        temperature: float | None = 0.8,
        *,
        cancel: CancelToken | None = None,
    ) -> Stream:
        return self._stream("stream", generation(system, max_tokens, temperature, messages=plain_messages(messages)), cancel)

    def _distrust(self, what: str) -> None:
        """The child's own runtime validates results, so a bad one means a forged reply."""
        error = PluginProtocolError(self.name, what)
        conn = self._conn
        if conn is not None:
            self._failed(conn, error)  # called from inside the call's own turn
        raise error

    def _text_problem(self, result: Any) -> str:
        return text_problem(result, self.config.max_reply)
