"""A plugin's process lifecycle: start through its restart gate, stop, close; the live Connection.

One :class:`Lifecycle` per :class:`~runner.client.Plugin`. It decides each start's
configuration afresh (the code and grants may have changed), remembers code that cannot
load, asks the restart gate whether to back off or refuse (quarantine), spawns and
handshakes, and stops the process politely or by force. A stop or close from another
thread, at any moment of a start, wins: no process it missed lives on.

Its :class:`~runner.states.LifeStage` is the handle's one state, moved only here: IDLE,
STARTING, RUNNING (while the live connection is usable: a connection that ends, from any
thread, tells its owner, which moves back to IDLE), BROKEN (the code cannot load) and
CLOSED, which nothing leaves.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.calls import CancelToken
from runner.config import PluginConfig
from runner.connection import Connection
from runner.errors import (
    PluginCancelled,
    PluginError,
    PluginLoadError,
    PluginSandboxError,
    PluginStartError,
    PluginTimeout,
    PluginUnavailable,
    PluginVersionError,
)  # fmt: skip
from runner.restarts import RestartGate, RestartPolicy
from runner.states import LifeStage
from runner.turn import Turn

__all__ = ["EventListener", "Lifecycle", "PluginStats", "exit_details"]

ROOT = Path(__file__).resolve().parent.parent  # holds llm_utils.py and runner/
_CANNOT_LOAD = (PluginLoadError, PluginSandboxError, PluginVersionError)  # restarting will not help

#: A listener told about lifecycle events: (plugin name, event, details).
EventListener = Callable[[str, str, dict[str, Any]], None]


class PluginStats:
    """Counters kept for health reports; plain attributes, updated by the thread holding the turn."""

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.timeouts = 0
        self.starts = 0
        self.startup_seconds: float | None = None
        self.last_error: str = ""
        self.last_error_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def record(self, exc: PluginError) -> None:
        if isinstance(exc, PluginCancelled):
            return  # the caller's choice, not the plugin's failure
        self.errors += 1
        self.timeouts += isinstance(exc, PluginTimeout)
        self.last_error = str(exc)
        self.last_error_at = time.time()


class Lifecycle:
    """Starts, stops and closes one plugin's process; holds the live :class:`Connection`."""

    def __init__(
        self, config: PluginConfig | Callable[[], PluginConfig], policy: RestartPolicy | None,
        stats: PluginStats, emit: Callable[[str, dict[str, Any]], None], turn: Turn,
    ) -> None:  # fmt: skip
        self._configure: Callable[[], PluginConfig] = config if callable(config) else (lambda: config)
        self.config = config if isinstance(config, PluginConfig) else config()
        # A decision made just now serves the first start; every later start decides again.
        self._decided: PluginConfig | None = None if isinstance(config, PluginConfig) else self.config
        self.name = self.config.name
        self.restart_gate = RestartGate(policy)
        self.stats = stats
        self._emit = emit
        self._turn = turn
        self.conn: Connection | None = None
        self._pending: Connection | None = None  # a process still in its handshake
        self._stops = 0  # stop() calls so far: a start that sees this change gives up
        self.stage = LifeStage.IDLE  # the one state: see the module docstring
        self._moving = threading.Lock()  # a move and the facts it depends on, against close() and a connection's end
        self.closed_why = ""
        self.load_error: PluginError | None = None
        self._load_error_code: str | None = None  # SHA-256 of the code that failed to load
        self._sleepers: set[threading.Event] = set()  # back-offs in progress, woken by close()

    @property
    def running(self) -> bool:
        """A live process takes calls: the stage is RUNNING, so ``conn`` is set and usable."""
        return self.stage is LifeStage.RUNNING

    @property
    def closed(self) -> bool:
        return self.stage is LifeStage.CLOSED

    def _move(self, to: LifeStage) -> None:
        """Move to ``to``, unless closed (CLOSED is final)."""
        with self._moving:
            if self.stage is not LifeStage.CLOSED:
                self.stage = to

    def _settle(self) -> None:
        """A start ended without a process: BROKEN if the code cannot load, else IDLE."""
        self._move(LifeStage.BROKEN if self.load_error is not None else LifeStage.IDLE)

    def _arrive(self, conn: Connection) -> None:
        """A start handed over its connection: RUNNING, unless it ended already (then IDLE)."""
        with self._moving:
            if self.stage is LifeStage.STARTING:
                self.stage = LifeStage.RUNNING if conn.usable else LifeStage.IDLE

    def _ended(self, conn: Connection) -> None:
        """A connection stopped being usable (told from any thread): if it was the live one, there is no process now."""
        with self._moving:
            if conn is self.conn and self.stage is LifeStage.RUNNING:
                self.stage = LifeStage.IDLE

    def stop(self) -> None:
        """Stop the process politely (then by force); safe to call twice and from any thread."""
        self._stops += 1
        pending = self._pending
        if pending is not None and not pending.dead:
            pending.kill()  # still starting: its handshake ends at once with "stopped"
            self._emit("stopped", {"pid": pending.pid})
        conn = self.conn
        if conn is not None and not conn.dead:
            if self._turn.take(time.monotonic() + 0.05):
                try:
                    conn.close()
                finally:
                    self._turn.give()
            else:
                conn.kill()  # a call is running: end it now rather than wait behind it
            self._emit("stopped", {"pid": conn.pid})

    def close(self, why: str) -> None:
        self.closed_why = why
        self._move(LifeStage.CLOSED)
        for wake in list(self._sleepers):
            wake.set()  # a restart's back-off ends at once
        self._turn.shut()  # queued calls end at once, "closed"
        self.stop()

    def connection(
        self, deadline: float | None = None, seconds: float = 0.0, phase: str = "", cancel: CancelToken | None = None
    ) -> Connection:
        """The live process, started now if need be; the caller holds the turn.

        A restart's back-off counts against ``deadline`` (the call's, ``seconds`` long).
        """
        if self.closed:
            raise PluginUnavailable(self.name, f"is stopped: {self.closed_why}", reason="closed")
        if self.stage is LifeStage.RUNNING:
            return self.conn  # type: ignore[return-value]
        decided = None
        if self.load_error is not None:
            decided = self._decide()
            if hashlib.sha256(decided[1]).hexdigest() == self._load_error_code:
                raise self.load_error  # the code is unchanged: starting it again would fail the same way
        decision = self.restart_gate.decide(time.monotonic())
        if decision.quarantined:
            raise PluginUnavailable(
                self.name,
                f"is quarantined after {self.restart_gate.consecutive} failures; it may start again in "
                f"{math.ceil(decision.wait)}s (last error: {self.stats.last_error or 'unknown'})",
                reason="quarantined",
            )
        if decision.wait:  # exponential back-off between restarts, bounded by the policy
            self._back_off(decision.wait, deadline, seconds, phase, cancel)
        return self._start(decided, cancel)

    def ended_start(self, cancel: CancelToken | None) -> PluginError:
        """What to say about a start something ended: a close, the call's cancel, or a stop."""
        if self.closed:
            return PluginUnavailable(self.name, f"was stopped while starting: {self.closed_why}", reason="closed")
        if cancel is not None and cancel.cancelled:
            return PluginCancelled(self.name, "was cancelled while starting")
        return PluginUnavailable(self.name, "was stopped while starting", reason="stopped")

    def late(self, seconds: float, phase: str, doing: str) -> PluginTimeout:
        """A call whose deadline passed before it reached the plugin: counted, but not the process's fault."""
        error = PluginTimeout(
            self.name, f"timed out after {seconds:g}s (the {phase.replace('_', ' ')} deadline) {doing}", phase=phase, seconds=seconds
        )
        self.stats.record(error)
        return error

    def _back_off(self, wait: float, deadline: float | None, seconds: float, phase: str, cancel: CancelToken | None) -> None:
        """Sleep before a restart, within the call's deadline, and wake for its cancel."""
        left = math.inf if deadline is None else deadline - time.monotonic()
        wake = threading.Event()  # set by the call's cancel or by close(), whichever comes
        self._sleepers.add(wake)
        key = cancel._watch(wake.set) if cancel is not None else 0
        try:
            if not self.closed:
                wake.wait(max(0.0, min(wait, left)))
        finally:
            self._sleepers.discard(wake)
            if key:
                cancel._unwatch(key)  # type: ignore[union-attr]
        if self.closed:
            raise PluginUnavailable(self.name, f"is stopped: {self.closed_why}", reason="closed")
        if cancel is not None and cancel.cancelled:
            raise PluginCancelled(self.name, "was cancelled while waiting to restart")
        if left <= wait:
            raise self.late(seconds, phase, "waiting to restart after a failure")

    def _decide(self) -> tuple[PluginConfig, bytes]:
        """This start's configuration and the exact code it runs, decided now."""
        try:
            config, self._decided = self._decided or self._configure(), None
            return config, config.code()
        except PluginError:
            raise
        except (OSError, ValueError) as exc:
            raise PluginStartError(self.name, f"could not read its code: {exc}") from None

    def _start(self, decided: tuple[PluginConfig, bytes] | None = None, cancel: CancelToken | None = None) -> Connection:
        """Start a process for ``decided`` (the configuration and code), or for a decision made now.

        A stop, a close or the call's cancel, from any thread at any moment, ends the start:
        the process is killed and the handshake (which never touches a dead connection's
        fds) ends with "stopped", reported here as what ended it.
        """
        if self.closed:  # closed while this call backed off or waited: start nothing
            raise self.ended_start(cancel)
        _precompile_child()
        began = time.monotonic()
        self.stats.starts += 1
        stops = self._stops  # before the stage says "starting": a stop that sees it must end this start
        self._move(LifeStage.STARTING)
        self._emit("restarting" if self.restart_gate.failures else "starting", {})
        code = b""
        key = 0
        handed = False
        try:
            self.config, code = decided or self._decide()
            conn = self._pending = Connection(self.config, ROOT, self._emit, self._ended)
            if cancel is not None:
                key = cancel._watch(conn.kill)  # the call that started it no longer wants it
            if self.closed or self._stops != stops:
                conn.kill()  # stopped while spawning: stop() may have looked before _pending was set
            conn.handshake(code)
            self.load_error = None
            self.conn, self._pending, handed = conn, None, True
            self._arrive(conn)
        except PluginError as exc:
            if isinstance(exc, PluginUnavailable) and exc.reason == "stopped":
                raise self.ended_start(cancel) from None  # stopped, closed or cancelled while starting: not a failure
            self.stats.record(exc)
            self._emit("start_failed", {"error": str(exc), **exit_details(exc)})
            if isinstance(exc, _CANNOT_LOAD):
                self.load_error, self._load_error_code = exc, hashlib.sha256(code).hexdigest()
            elif self.restart_gate.failed(time.monotonic()):
                self._emit("quarantined", {"failures": self.restart_gate.consecutive})
            raise
        finally:
            if not handed:
                self._settle()
            if key:
                cancel._unwatch(key)  # type: ignore[union-attr]
        if self.closed or self._stops != stops or (cancel is not None and cancel.cancelled):
            conn.kill()  # stopped during the handshake: stop() may have seen neither
            raise self.ended_start(cancel)
        self.restart_gate.started(time.monotonic())
        self.stats.startup_seconds = time.monotonic() - began
        self._emit("started", {"pid": conn.pid, "seconds": round(self.stats.startup_seconds, 4)})
        return conn


@functools.cache
def _precompile_child() -> None:
    """Write the bytecode of the modules the child imports, once per host process.

    Inside its sandbox the child cannot write ``__pycache__``, so without this every
    plugin start would recompile the runner (about 10 ms) on an editable install.
    """
    import compileall

    compileall.compile_dir(ROOT / "runner", quiet=2, maxlevels=1)  # runner/child and runner/sandbox too
    compileall.compile_file(ROOT / "llm_utils.py", quiet=2)


def exit_details(exc: PluginError) -> dict[str, Any]:
    return {key: getattr(exc, key) for key in ("exit_code", "signal", "phase") if getattr(exc, key, None) is not None}
