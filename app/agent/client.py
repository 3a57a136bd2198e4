"""Agent client: reach the user's agent in one bounded round trip, and a plugin handle whose calls it serves.

:meth:`AgentClient.open` connects (0.2 s for the connect and the hellos together, so a hung or
absent agent costs a command at most that), checks the peer is this user and the same version
and protocol, and returns the connection; anything wrong is an ``AgentError`` or ``OSError``,
and the caller runs the plugin itself. Each request is one connection::

    client -> agent   hello, then {op, name, config (the whole launch decision), events, args}
    agent -> client   hello, then {type: result, value} | {type: chunk, text}... {type: done} |
                      {type: error, error: {type, plugin, message, ...}}
    client -> agent   {type: cancel} while a stream runs (Ctrl-C), or the connection closes

:class:`RemotePlugin` is the subset of ``runner.Plugin`` the one-shot commands use. A call that
could not be handed to the agent (it is gone, or the request exceeds a frame) runs on the
direct handle instead; once the agent has the request, its failure is the call's failure.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import runner
from app.agent import decision, wire
from app.agent.errordata import error_from
from app.agent.errors import AgentError
from app.agent.paths import AgentPaths, ensure_private
from app.agent.peer import peer_pid, require_same_user

CONNECT_SECONDS = 0.2


class AgentClient:
    """Talks to the agent listening in ``paths``, if one of ``version`` does."""

    def __init__(self, paths: AgentPaths, version: str) -> None:
        self.paths = paths
        self.version = version

    def _connect(self) -> socket.socket:
        ensure_private(self.paths)  # never send a launch decision (keys) into a directory others could enter
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_SECONDS)
            sock.connect(os.fspath(self.paths.socket))
            require_same_user(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def open(self) -> socket.socket:
        """A connection past the hellos, or ``AgentError``/``OSError``; the 0.2 s bound covers both."""
        sock = self._connect()
        try:
            wire.send(sock, wire.hello(self.version))
            wire.check_hello(wire.receive(sock), self.version)
        except BaseException:
            sock.close()
            raise
        return sock

    def ask(self, request: dict[str, Any], seconds: float = 5.0) -> dict[str, Any] | None:
        """One request and its one reply (``status``, ``stop``); None when no agent of this version answers."""
        try:
            with self.open() as sock:
                wire.send(sock, request)
                sock.settimeout(seconds)
                return wire.receive(sock)
        except (AgentError, OSError):
            return None

    def pid(self) -> int | None:
        """The pid of the process listening (any version, even one that no longer answers), or None."""
        try:
            with self._connect() as sock:
                return peer_pid(sock)
        except (AgentError, OSError):
            return None

    def probe(self, config: runner.PluginConfig, events: str | None) -> dict[str, Any] | None:
        """The runtime part of ``plugins health``'s report on the agent's process for ``config``; None
        when no agent of this build carried it out (the caller probes the plugin itself)."""
        try:
            with self.open() as sock:
                wire.send(sock, {"op": "probe", "name": config.name, "config": decision.to_plain(config), "events": events, "args": {}})
                sock.settimeout(wire.SILENCE)
                frame = _answer(sock)
        except (AgentError, OSError):
            return None
        value = frame.get("value") if frame.get("type") == "result" else None
        return value if isinstance(value, dict) else None

    def plugin(self, config: runner.PluginConfig, direct: Callable[[], runner.Plugin], events: str | None) -> RemotePlugin | None:
        """A handle on the plugin of launch decision ``config`` served by the agent, if it answers now; else None.

        ``direct`` gives the caller's own handle, for a call the agent cannot be handed: only
        then is it made, so a warm command never imports the runner's process machinery.
        """
        try:
            sock = self.open()
        except (AgentError, OSError):
            return None
        return RemotePlugin(self, config, direct, events, sock)


class RemotePlugin:
    """The calls ``sandchat prompt`` and ``tokens`` make, served by the agent for ``config``."""

    def __init__(
        self, client: AgentClient, config: runner.PluginConfig, direct: Callable[[], runner.Plugin], events: str | None, sock: socket.socket
    ) -> None:
        self.name = config.name
        self.config = config  # the launch decision made now, by the caller, for this command
        self._direct = direct
        self._direct_handle: runner.Plugin | None = None
        self._client = client
        self._events = events
        self._spare: socket.socket | None = sock  # the connection that proved the agent answers: the first call's
        self._window: int | None = None

    @property
    def direct(self) -> runner.Plugin:
        """The caller's own handle, where a call goes that the agent could not be handed (made on first use)."""
        if self._direct_handle is None:
            self._direct_handle = self._direct()
        return self._direct_handle

    def _send(self, op: str, args: dict[str, Any]) -> socket.socket | None:
        """A connection that carries the request now, or None when the call must run on the direct handle."""
        sock, self._spare = self._spare, None
        try:
            if sock is None:
                sock = self._client.open()
            wire.send(sock, {"op": op, "name": self.name, "config": decision.to_plain(self.config), "events": self._events, "args": args})
        except (AgentError, OSError):
            if sock is not None:
                sock.close()
            return None
        sock.settimeout(wire.SILENCE)  # the agent beats while a call queues or runs: a silence this long is a hang
        return sock

    def _result(self, op: str, args: dict[str, Any]) -> Any:
        sock = self._send(op, args)
        if sock is None:
            return None
        with sock:
            frame = self._receive(sock)
        if frame.get("type") == "result":
            return frame.get("value")
        raise self._failure(frame)

    def _receive(self, sock: socket.socket) -> dict[str, Any]:
        try:
            return _answer(sock)
        except AgentError as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise runner.PluginTimeout(self.name, "timed out: the sandchat agent running it stopped answering") from None
            raise runner.PluginCrashed(
                self.name, "crashed: the sandchat agent running it ended mid-call; the next command runs it without the agent"
            ) from None

    def _failure(self, frame: dict[str, Any]) -> runner.PluginError:
        if frame.get("type") == "error":
            return error_from(frame.get("error"), self.name)
        return runner.PluginProtocolError(self.name, f"the sandchat agent answered {str(frame.get('type'))[:40]!r}")

    def start(self) -> dict[str, Any]:
        value = self._result("start", {})
        if value is None:
            hello = self.direct.start()
            self._window = self.direct.context_window
            return hello
        self._window = value.get("context_window") if isinstance(value, dict) else None
        return {"context_window": self._window}

    @property
    def context_window(self) -> int:
        if self._window is None:
            self.start()
        window = self._window
        return window if type(window) is int and window > 0 else self.direct.context_window  # the runner's default

    def count_tokens(self, text: str) -> int:
        value = self._result("count_tokens", {"text": text})
        return self.direct.count_tokens(text) if value is None else int(value)

    def token_counting(self) -> str:
        value = self._result("token_counting", {})
        return self.direct.token_counting() if value is None else str(value)

    def stream_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float | None = 0.8) -> Iterator[str]:
        args = {"system": system, "user_message": user_message, "max_tokens": max_tokens, "temperature": temperature}
        sock = self._send("stream", args)
        return self.direct.stream_response(system, user_message, max_tokens, temperature) if sock is None else self._chunks(sock)

    def stream_chat(
        self, system: str, messages: Sequence[dict[str, str]], max_tokens: int = 4096, temperature: float | None = 0.8
    ) -> Iterator[str]:
        plain = [{"role": m["role"], "content": m["content"]} for m in messages]
        sock = self._send("stream", {"system": system, "messages": plain, "max_tokens": max_tokens, "temperature": temperature})
        return self.direct.stream_chat(system, messages, max_tokens, temperature) if sock is None else self._chunks(sock)

    def _chunks(self, sock: socket.socket) -> Iterator[str]:
        """The streamed reply; leaving early (Ctrl-C, close) sends the agent a cancel for it."""
        with sock:
            try:
                while True:
                    frame = self._receive(sock)
                    kind = frame.get("type")
                    if kind == "chunk":
                        yield str(frame.get("text", ""))
                    elif kind == "done":
                        return
                    else:
                        raise self._failure(frame)
            except BaseException:  # KeyboardInterrupt, GeneratorExit: the agent must stop this reply
                with contextlib.suppress(AgentError, OSError):
                    sock.settimeout(CONNECT_SECONDS)
                    wire.send(sock, {"type": "cancel"})
                raise


def _answer(sock: socket.socket) -> dict[str, Any]:
    """The agent's next frame that is not a ``waiting`` beat (the call queues or runs: the agent is alive)."""
    while (frame := wire.receive(sock)).get("type") == "waiting":
        pass
    return frame
