"""Agent slots: one warm ``runner.Plugin`` per plugin name, reused only for the same launch decision.

A :class:`Slot` keeps the handle, the digest (``app.agent.decision``) of the decision it
was started with, and a lock: calls on one plugin are served one at a time, whole, in the
order the lock grants them, each under the deadlines its own command computed (they are
set on the handle while the lock is held, which is why the lock is the agent's and not
only the runner's turn). A request whose decision differs (the file's bytes, a grant, a
key, a setting, the sandbox) closes the old process and starts one for the new decision;
the same decision reuses it, and a restart after a crash uses the latest one received.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import runner
from app.agent import decision, wire
from app.agent.errors import AgentError

if TYPE_CHECKING:
    from app.healthlog import HealthLog

Send = Callable[[dict[str, Any]], None]

#: Which deadline bounds each operation's wait for the plugin (and so its place in the queue).
_PHASES = {"start": "start", "stream": "total", "count_tokens": "count_tokens", "token_counting": "check", "probe": "start"}
_QUEUE_POLL = 0.1  # how often a queued call looks at its client's cancel
PIECE = 1 << 20  # characters of a chunk per frame: at most 6 MiB of JSON, under wire.MAX_FRAME


class Slot:
    """One plugin name's warm handle, the digest it was started for, and its lock."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.plugin: runner.Plugin | None = None
        self.digest = ""
        self.config: runner.PluginConfig | None = None
        self.calls = 0

    def ready(self, config: runner.PluginConfig, on_event: Callable[[str, str, dict[str, Any]], None] | None) -> runner.Plugin:
        """The handle for ``config``: the warm one if its decision is the same, else a new one (the old closed)."""
        digest = decision.digest(config)
        self.config = config  # the same decision with this call's deadlines, or a new one: a restart decides from it
        if self.plugin is not None and digest == self.digest and self.plugin.running:
            return self.plugin
        if self.plugin is not None:  # another decision, or no live process to reuse: start afresh, as a command would
            self.plugin.close("its launch decision changed" if digest != self.digest else "its process ended")
        self.plugin = runner.Plugin(lambda: self.config, on_event=on_event)  # type: ignore[arg-type,return-value]
        self.digest, self.calls = digest, 0
        return self.plugin

    def status(self) -> dict[str, Any]:
        plugin = self.plugin
        if plugin is None:
            return {"name": self.name, "state": "stopped"}
        uptime = plugin.uptime()
        return {"name": self.name, "state": plugin.state, "pid": plugin.pid, "uptime": None if uptime is None else round(uptime, 3),
                "calls": self.calls, "starts": plugin.stats.starts}  # fmt: skip


class Slots:
    """Every slot of the agent, and the health logs their events go to."""

    def __init__(self) -> None:
        self._slots: dict[str, Slot] = {}
        self._logs: dict[str, HealthLog] = {}
        self._lock = threading.Lock()
        runner.harden_host()  # as the app does before its first plugin: non-dumpable, the reaper of orphans

    def _slot(self, name: str) -> Slot:
        with self._lock:
            return self._slots.setdefault(name, Slot(name))

    def _listener(self, events: Any) -> Callable[[str, str, dict[str, Any]], None] | None:
        """Events go to the health log of the command's data dir, as they would without the agent."""
        if not isinstance(events, str) or not events:
            return None
        from app.healthlog import HealthLog

        with self._lock:
            log = self._logs.setdefault(events, HealthLog(Path(events)))
        return log.record

    def call(self, request: dict[str, Any], send: Send, sock: socket.socket | None) -> None:
        """Serve one plugin request, its answer written with ``send``; ``sock`` is watched for the client's cancel."""
        op = request.get("op")
        if op not in _PHASES:
            raise ValueError(f"unknown request {op!r}")
        config = decision.from_plain(request.get("config"))
        args = request.get("args") or {}
        cancel, finished, slot, phase = runner.CancelToken(), threading.Event(), self._slot(config.name), _PHASES[op]
        send, beating = _beating(send, finished)
        if sock is not None:
            threading.Thread(target=_watch, args=(sock, cancel, finished, slot, op), name="agent-cancel", daemon=True).start()
        seconds, began = getattr(config.deadlines, phase), time.monotonic()
        try:
            _queue(slot, config.name, phase, seconds, cancel)
            try:
                plugin = slot.ready(config, self._listener(request.get("events")))
                plugin.set_deadlines(_less(config.deadlines, phase, time.monotonic() - began))
                slot.calls += 1
                _run(plugin, op, args, send, cancel)
            finally:
                slot.lock.release()
        finally:
            finished.set()
            beating.join()  # no beat is being written when the server sends this call's error frame

    def forget(self, names: list[str] | None) -> list[str]:
        """Close the warm processes of ``names`` (all when None), each under its slot's lock; the names closed."""
        with self._lock:
            slots = [s for s in self._slots.values() if s.plugin is not None and (names is None or s.name in names)]
        closed = []
        for slot in slots:
            if slot.lock.acquire(timeout=0):  # idle: close it and empty the slot
                try:
                    if slot.plugin is not None:
                        slot.plugin.close("what it may get changed")
                        slot.plugin, slot.digest = None, ""
                        closed.append(slot.name)
                finally:
                    slot.lock.release()
            elif (plugin := slot.plugin) is not None:  # busy: its call ends as a cancelled one would; the next starts afresh
                plugin.close("what it may get changed")
        return closed

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            slots = sorted(self._slots.values(), key=lambda s: s.name)
        return [slot.status() for slot in slots if slot.plugin is not None]

    def close(self) -> None:
        """Close every plugin (each stop bounded by its stop grace), in parallel: the agent is exiting."""
        with self._lock:
            plugins = [slot.plugin for slot in self._slots.values() if slot.plugin is not None]
        closers = [threading.Thread(target=plugin.close, args=("the sandchat agent is exiting",)) for plugin in plugins]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join()


def _queue(slot: Slot, name: str, phase: str, seconds: float, cancel: runner.CancelToken) -> None:
    """Take the slot's lock within the call's deadline, as the runner's own queue would, leaving on a cancel."""
    end = time.monotonic() + seconds
    while not slot.lock.acquire(timeout=max(0.0, min(_QUEUE_POLL, end - time.monotonic()))):
        if cancel.cancelled:
            raise runner.PluginCancelled(name, "was cancelled while waiting for another call to end")
        if time.monotonic() >= end:
            raise runner.PluginTimeout(
                name, f"timed out after {seconds:g}s (the {phase.replace('_', ' ')} deadline) waiting for another call to end",
                phase=phase, seconds=seconds,
            )  # fmt: skip


def _less(deadlines: runner.Deadlines, phase: str, waited: float) -> runner.Deadlines:
    """The call's deadlines, its own phase less the time it waited for the slot (a deadline runs from the call)."""
    left = max(getattr(deadlines, phase) - waited, 0.001)
    return dataclasses.replace(deadlines, **{phase: left})


def _run(plugin: runner.Plugin, op: str, args: dict[str, Any], send: Send, cancel: runner.CancelToken) -> None:
    if op == "start":
        plugin.start()
        send({"type": "result", "value": {"context_window": plugin.context_window}})
    elif op == "count_tokens":
        send({"type": "result", "value": plugin.count_tokens(str(args.get("text", "")))})
    elif op == "token_counting":
        send({"type": "result", "value": plugin.token_counting()})
    elif op == "probe":  # plugins health: the warm process's own uptime and calls
        from app.health import RUNTIME_KEYS, blank, probe_handle

        report = blank(plugin.name)
        probe_handle(plugin, report)
        send({"type": "result", "value": {key: report[key] for key in RUNTIME_KEYS}})
    else:
        _stream(plugin, args, send, cancel)


def _stream(plugin: runner.Plugin, args: dict[str, Any], send: Send, cancel: runner.CancelToken) -> None:
    system, max_tokens, temperature = str(args.get("system", "")), int(args.get("max_tokens", 4096)), args.get("temperature")
    if "messages" in args:
        stream = plugin.stream_chat(system, args["messages"], max_tokens, temperature, cancel=cancel)
    else:
        stream = plugin.stream_response(system, str(args.get("user_message", "")), max_tokens, temperature, cancel=cancel)
    try:
        for chunk in stream:
            for at in range(0, len(chunk), PIECE):  # a plugin's chunk may be 16 MiB, and JSON may make each character 6 bytes
                send({"type": "chunk", "text": chunk[at : at + PIECE]})
    except AgentError:
        return  # the client is gone: leaving the loop closes the stream, which cancels the call
    finally:
        stream.close()
    send({"type": "done"})


def _watch(sock: socket.socket, cancel: runner.CancelToken, finished: threading.Event, slot: Slot, op: str) -> None:
    """Cancel the call when its client sends a cancel frame or goes away (closed socket, Ctrl-C, death).

    A stream ends at the cancel; the other calls take no cancel, so one still running when its
    command is gone has its process closed, as it would have died with that command without
    the agent (and the next command must not wait behind it).
    """
    try:
        while wire.receive(sock).get("type") != "cancel":
            pass
    except AgentError:
        pass
    cancel.cancel()
    plugin = slot.plugin
    if op != "stream" and not finished.is_set() and plugin is not None and slot.lock.locked():
        plugin.close("its command was interrupted")


def _beating(send: Send, finished: threading.Event) -> tuple[Send, threading.Thread]:
    """``send`` made safe from two threads, and a ``waiting`` frame every second until ``finished``:
    the client takes a silence of ``wire.SILENCE`` seconds for a hung agent, whatever the call's deadlines."""
    lock = threading.Lock()

    def locked(frame: dict[str, Any]) -> None:
        if frame.get("type") in ("result", "done", "error"):
            finished.set()  # before the client can read it and leave: its leaving is then no interruption
        with lock:
            send(frame)

    def beat() -> None:
        while not finished.wait(wire.BEAT_EVERY):
            try:
                locked({"type": "waiting"})
            except AgentError:
                return  # the client is gone: the watcher cancels the call

    beating = threading.Thread(target=beat, name="agent-beat", daemon=True)
    beating.start()
    return locked, beating
