"""The child side of the protocol: send the hello, then answer requests until shutdown.

Generation runs on a worker thread so ``ping`` and ``cancel`` are answered while a
plugin generates; ``count_tokens`` and ``ping`` run inline on the read loop because
they are short and sit on the hot path (no thread hand-off).
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from llm_utils import LLMClient
from runner.child import loader
from runner.constants import OPTIONAL_METHODS, PROTOCOL_VERSION, READ_SIZE, SPIN_SECONDS
from runner.protocol import DEFAULT_MAX_MESSAGE, Decoder, Encoder, ProtocolViolation, error_map, request_of

__all__ = ["Server", "SpinGovernor", "serve"]

_GENERATION = {"generate", "chat", "stream", "check"}  # run on a worker thread: plugin code may take its time
_MAX_REASON = 500  # characters of a check() reason or token_counting() text the host is sent
_MAX_TRACEBACK = 8000


class _Reply(Exception):
    """Raised inside a handler to answer the request with an error map."""

    def __init__(self, kind: str, type_: str, message: str, traceback_text: str = "") -> None:
        self.error = error_map(kind, type_, message, traceback_text[-_MAX_TRACEBACK:])


class SpinGovernor:
    """Whether the serve loop polls before it blocks: only while requests come back to back.

    Like Linux's haltpoll cpuidle governor. Polling after a reply pays when the next
    request comes within the window (it then costs no wake-up); otherwise it only burns
    CPU, ``window`` of it per reply: round-robin over many plugins, each child would
    spin after every reply while the next request goes to another. So a spin that ends
    with no request stops the spinning, and a request that comes within the window of
    the previous reply while not spinning (it would have been caught) starts it again.
    A window of 0 never spins.
    """

    __slots__ = ("window", "spinning")

    def __init__(self, window: float) -> None:
        self.window = window
        self.spinning = window > 0

    def spun(self, caught: bool) -> None:
        """A spin ended: with a request (``caught``), or at the end of its window."""
        self.spinning = caught

    def arrived(self, gap: float) -> None:
        """A request came ``gap`` seconds after the previous reply, while not spinning.

        ``gap`` includes this process's own wake-up, which a spin would not have paid:
        a request that a spin would just have caught may not resume it. That errs on
        the side of burning no CPU.
        """
        if gap <= self.window and self.window > 0:
            self.spinning = True


class Server:
    """Serves one plugin instance over a pair of private file descriptors."""

    def __init__(self, read_fd: int, write_fd: int, plugin: LLMClient | None, max_message: int) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd
        self.plugin = plugin
        self.max_message = max_message
        self._encoder = Encoder()
        self._write_lock = threading.Lock()
        self._active: dict[int, threading.Event] = {}
        self._running = True

    def send(self, data: bytes) -> None:
        with self._write_lock:
            self._write(data)

    def _write(self, data: bytes) -> None:
        """Write one whole message; the caller holds the write lock (messages never interleave)."""
        written = os.write(self.write_fd, data)
        if written < len(data):
            self._write_rest(data, written)

    def _write_rest(self, data: bytes, written: int) -> None:
        view = memoryview(data)[written:]  # a large message: the pipe took only part of it
        while view:
            view = view[os.write(self.write_fd, view) :]

    def respond(self, msgid: int, error: dict[str, str] | None, result: Any = None) -> None:
        with self._write_lock:  # one hold for packing (the Packer is shared) and writing
            data = self._encoder.response(msgid, error, result)
            written = os.write(self.write_fd, data)
            if written < len(data):
                self._write_rest(data, written)

    def notify(self, method: str, params: Any) -> None:
        with self._write_lock:
            self._write(self._encoder.notification(method, params))

    def run(self) -> int:
        decoder = Decoder(self.max_message)
        read, fd, single, feed, dispatch = os.read, self.read_fd, decoder.single_request, decoder.feed, self.dispatch
        lock, response, write, out = self._write_lock, self._encoder.response, os.write, self.write_fd
        governor, poll = _governor(fd)
        spin, spun, arrived, clock = governor.window, governor.spun, governor.arrived, time.monotonic
        while self._running:
            if not spin:
                data = read(fd, READ_SIZE)
            elif governor.spinning and not self._active:
                spun(_spin_until_readable(poll, spin))
                data = read(fd, READ_SIZE)
            else:
                replied = clock()
                data = read(fd, READ_SIZE)
                arrived(clock() - replied)
            if not data:
                return 0  # the host closed our input: it is gone or done with us
            # The usual read: one whole request (the host sends requests only), and usually
            # count_tokens, answered right here with no Python call of its own: this is the hot
            # path of figure 1, and each call costs ~0.1 us (more on a CPU whose caches the host
            # just had). Anything else, and any doubt, goes through feed() and dispatch().
            request = single(data)
            if request is not None:
                msgid, method, params = request
                if method == "count_tokens" and type(params) is dict:
                    text = params.get("text")  # _count_tokens() and respond(), inlined: the same checks and errors
                    try:
                        if type(text) is not str:
                            text = _param(params, "text", str)  # raises the BadRequest (or accepts a str subclass)
                        count = self.plugin.count_tokens(text)  # type: ignore[union-attr]
                        if type(count) is not int or count < 0:
                            raise _bad_count(count)
                    except BaseException as exc:
                        self.respond(msgid, _error_of(exc))
                        continue
                    with lock:  # the Packer is shared with the generation thread
                        reply = response(msgid, None, count)
                        written = write(out, reply)
                        if written < len(reply):
                            self._write_rest(reply, written)
                else:
                    dispatch(msgid, method, params)
                continue
            for each in feed(data):
                request = request_of(each)
                if request is not None and self._running:  # nothing after a shutdown is served
                    dispatch(*request)
        return 0

    def dispatch(self, msgid: int, method: str, params: Any) -> None:
        """Answer a request that is not a count_tokens of one whole read (run() answers those itself)."""
        if not isinstance(params, dict):
            self.respond(msgid, error_map("request", "BadRequest", f"params of {method} must be a map"))
        elif method in _GENERATION:
            self._start_generation(msgid, method, params)
        elif method == "count_tokens":
            self._call(msgid, self._count_tokens, params)
        elif method == "ping":
            self.respond(msgid, None, {"pid": os.getpid(), "busy": bool(self._active)})
        elif method == "cancel":
            target = params.get("id")
            event = self._active.get(target) if type(target) is int else None
            if event is not None:
                event.set()
            self.respond(msgid, None, event is not None)
        elif method == "shutdown":
            self._running = False
            self.respond(msgid, None, None)
        else:
            self.respond(msgid, error_map("request", "UnknownMethod", f"unknown method {method!r}"))

    def _start_generation(self, msgid: int, method: str, params: dict[str, Any]) -> None:
        if self._active:
            self.respond(msgid, error_map("busy", "Busy", "a generation is already running"))
            return
        cancel = self._active[msgid] = threading.Event()
        handler = {"stream": self._stream, "generate": self._generate, "chat": self._chat, "check": self._check}[method]
        worker = threading.Thread(target=self._call, args=(msgid, handler, params, cancel), name=f"{method}-{msgid}", daemon=True)
        worker.start()

    def _call(self, msgid: int, handler: Callable[..., Any], *args: Any) -> None:
        error, result = None, None
        try:
            result = handler(msgid, *args)
        except BaseException as exc:
            error = _error_of(exc)
        finally:
            # Before the reply: the host may send its next generation as soon as it reads
            # the reply, and must not find this one still marked running ("busy").
            self._active.pop(msgid, None)
        self.respond(msgid, error, result)

    def _count_tokens(self, msgid: int, params: dict[str, Any]) -> int:
        text = _param(params, "text", str)
        count = self.plugin.count_tokens(text)  # type: ignore[union-attr]
        if type(count) is not int or count < 0:
            raise _bad_count(count)
        return count

    def _generate(self, msgid: int, params: dict[str, Any], cancel: threading.Event) -> str:
        return self._whole(self.plugin.generate_response, _generation_args(params, chat=False), cancel)  # type: ignore[union-attr]

    def _chat(self, msgid: int, params: dict[str, Any], cancel: threading.Event) -> str:
        return self._whole(self.plugin.generate_chat, _generation_args(params, chat=True), cancel)  # type: ignore[union-attr]

    def _whole(self, function: Callable[..., Any], args: tuple[Any, ...], cancel: threading.Event) -> str:
        text, method = function(*args), function.__name__
        if type(text) is not str:
            method = _origin(type(self.plugin), method)
            raise _Reply("contract", "BadReturn", f"returned {type(text).__name__} from {method}, expected str")
        if cancel.is_set():
            raise _Reply("cancelled", "Cancelled", "cancelled by the host")
        return text

    def _check(self, msgid: int, params: dict[str, Any], cancel: threading.Event) -> dict[str, Any]:
        """Readiness, counting method and context window, read in that order (check() may learn the window)."""
        plugin = self.plugin
        reason = plugin.check() if params.get("ready") is not False else None  # type: ignore[union-attr]
        if reason is not None and type(reason) is not str:
            raise _Reply("contract", "BadReturn", f"returned {type(reason).__name__} from check, expected str or None")
        counting = plugin.token_counting()  # type: ignore[union-attr]
        if type(counting) is not str:
            raise _Reply("contract", "BadReturn", f"returned {type(counting).__name__} from token_counting, expected str")
        window = getattr(plugin, "context_window", None)
        return {
            "ready": None if reason is None else (reason.strip() or "not ready (no reason given)")[:_MAX_REASON],
            "counting": counting.strip()[:_MAX_REASON],
            "context_window": window if type(window) is int and window > 0 else None,
        }

    def _stream(self, msgid: int, params: dict[str, Any], cancel: threading.Event) -> dict[str, int]:
        chat = "messages" in params
        args = _generation_args(params, chat=chat)
        method = "stream_chat" if chat else "stream_response"
        chunks = (self.plugin.stream_chat if chat else self.plugin.stream_response)(*args)  # type: ignore[union-attr]
        if isinstance(chunks, (str, bytes)) or not hasattr(chunks, "__iter__"):
            raise _Reply("contract", "BadReturn", f"returned {type(chunks).__name__} from {method}, expected an iterator of str")
        count = 0
        try:
            for chunk in chunks:
                if cancel.is_set():
                    raise _Reply("cancelled", "Cancelled", "cancelled by the host")
                if type(chunk) is not str:
                    origin = _origin(type(self.plugin), method)
                    verb = "yielded" if origin.startswith("stream_") else "returned"
                    raise _Reply("contract", "BadReturn", f"{verb} {type(chunk).__name__} from {origin}, expected str")
                if chunk:
                    self.notify("chunk", [msgid, chunk])
                    count += 1
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return {"chunks": count}


def _bad_count(count: Any) -> _Reply:
    shown = type(count).__name__ if type(count) is not int else str(count)
    return _Reply("contract", "BadReturn", f"returned {shown} from count_tokens, expected a non-negative int")


def _origin(cls: type, method: str) -> str:
    """The plugin's own method behind ``method``, which may be an inherited ``LLMClient`` default.

    A two-method plugin streams through the default ``stream_response``, which yields what
    ``generate_response`` returned: a bad value is then blamed on ``generate_response``.
    """
    if method == "stream_chat" and getattr(cls, "stream_chat", None) is LLMClient.stream_chat:
        method = "generate_chat" if getattr(cls, "generate_chat", None) is not LLMClient.generate_chat else "stream_response"
    if method == "generate_chat" and getattr(cls, "generate_chat", None) is LLMClient.generate_chat:
        method = "generate_response"
    if method == "stream_response" and getattr(cls, "stream_response", None) is LLMClient.stream_response:
        method = "generate_response"
    return method


def _governor(fd: int) -> tuple[SpinGovernor, Callable[[int], list[Any]]]:
    """The spin governor for the serve loop, and a poll of ``fd`` to spin on.

    Between requests, the loop polls without sleeping for a moment first (see
    constants.SPIN_SECONDS), while requests come back to back (SpinGovernor): a request that
    follows at once then costs no cross-CPU wake-up. Never while a generation runs (its thread
    needs the GIL), nor when this process has one CPU (the host could not run meanwhile).
    """
    governor = SpinGovernor(SPIN_SECONDS if len(os.sched_getaffinity(0)) > 1 else 0.0)
    readable = select.poll()
    readable.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return governor, readable.poll


def _spin_until_readable(poll: Callable[[int], list[Any]], seconds: float) -> bool:
    """Poll without sleeping for up to ``seconds``; whether the fd became readable meanwhile."""
    until = time.monotonic() + seconds
    while not poll(0):
        if time.monotonic() >= until:
            return False
        os.sched_yield()
    return True


def _error_of(exc: BaseException) -> dict[str, str]:
    """The error map answering a request whose handler raised ``exc``."""
    if isinstance(exc, _Reply):
        return exc.error
    if isinstance(exc, SystemExit):
        _exit_like(exc)
    text = "".join(traceback.format_exception(exc))  # plugin code raised: send it as data, keep serving
    return error_map("plugin", type(exc).__name__, str(exc), text[-_MAX_TRACEBACK:])


def _param(params: dict[str, Any], key: str, kind: type) -> Any:
    value = params.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _Reply("request", "BadRequest", f"param {key!r} must be {kind.__name__}")
    return value


def _generation_args(params: dict[str, Any], *, chat: bool) -> tuple[Any, ...]:
    system = _param(params, "system", str)
    if chat:
        messages = params.get("messages")
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
        ):
            raise _Reply("request", "BadRequest", "param 'messages' must be a list of {role, content} maps")
        prompt: Any = messages
    else:
        prompt = _param(params, "user_message", str)
    max_tokens = _param(params, "max_tokens", int)
    if "temperature" not in params:
        return system, prompt, max_tokens  # the caller left it to the plugin: its method's own default
    temperature = params["temperature"]
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
        raise _Reply("request", "BadRequest", "param 'temperature' must be a number")
    return system, prompt, max_tokens, float(temperature)


def _exit_like(exc: SystemExit) -> None:
    """The plugin called sys.exit(): honour it at once, as an exit of the whole process."""
    code = exc.code
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    sys.stderr.flush()
    os._exit(code)


def _hello(options: dict[str, Any], report: dict[str, Any], plugin: LLMClient | None) -> dict[str, Any]:
    cls = type(plugin) if plugin is not None else None
    return {
        "protocol": PROTOCOL_VERSION,
        "pid": os.getpid(),
        "plugin": options.get("name", ""),
        "class": cls.__name__ if cls else None,
        "doc": ((cls.__doc__ or "") if cls else "").strip()[:2000],
        "context_window": getattr(plugin, "context_window", 0),
        "methods": [m for m in OPTIONAL_METHODS if cls and getattr(cls, m) is not getattr(LLMClient, m)],
        "python": sys.version.split()[0],
        "error": None,
    }


def serve(read_fd: int, write_fd: int, options: dict[str, Any], report: dict[str, Any]) -> int:
    """Load the plugin named in ``options``, say hello, and serve until told to stop."""
    sys.dont_write_bytecode = True  # plugin folders are read-only in the sandbox
    server = Server(read_fd, write_fd, None, options.get("max_message") or DEFAULT_MAX_MESSAGE)
    try:
        module = loader.load_module(options["source"], options["plugin"], "sandchat_plugin_" + (options.get("name") or "plugin"))
        server.plugin = loader.instantiate(loader.plugin_class(module))
    except loader.LoadFailure as failure:
        hello = _hello(options, report, None)
        hello["error"] = error_map("load", failure.type, failure.message, failure.traceback[-_MAX_TRACEBACK:])
        server.notify("hello", hello)
        return 1
    server.notify("hello", _hello(options, report, server.plugin))
    try:
        return server.run()
    except ProtocolViolation as exc:
        print(f"sandchat child: protocol violation from host: {exc}", file=sys.stderr)
        return 2
