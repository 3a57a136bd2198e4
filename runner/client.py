"""The host-side handle of a sandboxed plugin: an LLMClient whose calls run in a child process.

App code uses a :class:`Plugin` exactly like an in-process ``LLMClient``. The process
starts on first use; after any failure that killed it, the next call starts a fresh
one. Calls are serialized: one request at a time per plugin process.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from llm_utils import DEFAULT_CONTEXT_WINDOW, LLMClient, Message
from runner.config import PluginConfig
from runner.connection import Connection
from runner.errors import PluginCancelled, PluginError, PluginProtocolError, PluginRaised, PluginResultError, PluginTimeout

__all__ = ["Plugin", "PluginStats"]

ROOT = Path(__file__).resolve().parent.parent  # holds llm_utils.py and runner/
_KEEPS_PROCESS = (PluginRaised, PluginResultError, PluginCancelled)  # failures that leave the child healthy

#: A listener told about lifecycle events: (plugin name, event, details).
EventListener = Callable[[str, str, dict[str, Any]], None]


class PluginStats:
    """Counters kept for health reports; plain attributes, updated under the plugin's lock."""

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


class Plugin(LLMClient):
    """A plugin running in its own sandboxed subprocess, used as an ordinary LLMClient."""

    def __init__(self, config: PluginConfig, *, on_event: EventListener | None = None) -> None:
        self.config = config
        self.name = config.name
        self.stats = PluginStats()
        self._on_event = on_event
        self._conn: Connection | None = None
        self._lock = threading.RLock()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Start the process if it is not running and return its hello."""
        with self._lock:
            return self._connection().hello

    @property
    def running(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.dead

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

    def stderr_tail(self, lines: int = 5) -> tuple[str, ...]:
        return self._conn.stderr_tail(lines) if self._conn is not None else ()

    def stop(self) -> None:
        """Stop the process politely (then by force); safe to call twice and from any thread."""
        conn = self._conn
        if conn is not None and not conn.dead:
            if self._lock.acquire(timeout=0.05):
                try:
                    conn.close()
                finally:
                    self._lock.release()
            else:
                conn.kill()  # a call is running: end it now rather than wait behind it
            self._emit("stop", {"pid": conn.pid})

    def close(self) -> None:
        """Stop and refuse further calls."""
        self._closed = True
        self.stop()

    def cancel(self) -> None:
        """Cancel the running generation, from any thread; a no-op when idle."""
        conn = self._conn
        if conn is not None and not conn.dead:
            conn.cancel()

    def _connection(self) -> Connection:
        if self._closed:
            from runner.errors import PluginUnavailable

            raise PluginUnavailable(self.name, "is closed", reason="closed")
        if self._conn is None or self._conn.dead:
            began = time.monotonic()
            self.stats.starts += 1
            self._emit("starting", {})
            conn = Connection(self.config, ROOT)
            try:
                conn.handshake()
            except PluginError as exc:
                self._record(exc)
                self._emit("start_failed", {"error": str(exc), "exit_code": getattr(exc, "exit_code", None)})
                conn.kill()
                raise
            self._conn = conn
            self.stats.startup_seconds = time.monotonic() - began
            self._emit("started", {"pid": conn.pid, "seconds": self.stats.startup_seconds})
        return self._conn

    # -- calls -----------------------------------------------------------------------------

    def _call(self, method: str, params: dict[str, Any], seconds: float, phase: str) -> Any:
        with self._lock:
            conn = self._connection()
            self.stats.calls += 1
            try:
                return conn.call(method, params, seconds, phase)
            except PluginError as exc:
                self._failed(conn, exc)
                raise

    def _stream(self, method: str, params: dict[str, Any]) -> Iterator[str]:
        with self._lock:
            conn = self._connection()
            self.stats.calls += 1
            try:
                yield from conn.stream(method, params)
            except PluginError as exc:
                self._failed(conn, exc)
                raise

    def _failed(self, conn: Connection, exc: PluginError) -> None:
        self._record(exc)
        if not isinstance(exc, _KEEPS_PROCESS):
            conn.kill()  # whatever state it is in, the next call gets a fresh process
            self._emit("call_failed", {"error": str(exc), "type": type(exc).__name__, **_exit_details(exc)})

    def _record(self, exc: PluginError) -> None:
        self.stats.errors += 1
        self.stats.timeouts += isinstance(exc, PluginTimeout)
        self.stats.last_error = str(exc)
        self.stats.last_error_at = time.time()

    def _emit(self, event: str, details: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(self.name, event, details)

    def ping(self) -> float:
        """Round-trip a ping and return its latency in seconds (starts the plugin if needed)."""
        began = time.perf_counter()
        self._call("ping", {}, self.config.deadlines.ping, "ping")
        return time.perf_counter() - began

    def count_tokens(self, text: str) -> int:
        result = self._call("count_tokens", {"text": text}, self.config.deadlines.count_tokens, "count_tokens")
        if type(result) is not int or result < 0:
            raise PluginProtocolError(self.name, f"answered count_tokens with {type(result).__name__}")
        return result

    def generate_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> str:
        params = _generation(system, max_tokens, temperature, user_message=user_message)
        return self._text(self._call("generate", params, self._generation_seconds(), "total"))

    def generate_chat(self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = 0.8) -> str:
        params = _generation(system, max_tokens, temperature, messages=_plain_messages(messages))
        return self._text(self._call("chat", params, self._generation_seconds(), "total"))

    def stream_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> Iterator[str]:
        return self._stream("stream", _generation(system, max_tokens, temperature, user_message=user_message))

    def stream_chat(self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = 0.8) -> Iterator[str]:
        return self._stream("stream", _generation(system, max_tokens, temperature, messages=_plain_messages(messages)))

    def _generation_seconds(self) -> float:
        return self.config.deadlines.total

    def _text(self, result: Any) -> str:
        if type(result) is not str:
            raise PluginProtocolError(self.name, f"answered a generation with {type(result).__name__}")
        return result


def _generation(system: str, max_tokens: int, temperature: float, **prompt: Any) -> dict[str, Any]:
    return {"system": system, "max_tokens": int(max_tokens), "temperature": float(temperature), **prompt}


def _plain_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def _exit_details(exc: PluginError) -> dict[str, Any]:
    return {key: getattr(exc, key) for key in ("exit_code", "signal", "phase") if getattr(exc, key, None) is not None}
