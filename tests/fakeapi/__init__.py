"""Fake LLM HTTP APIs: real HTTP servers on 127.0.0.1 that speak the vendors' wire formats.

Each server is a stdlib ``ThreadingHTTPServer`` on an ephemeral port, served from a daemon
thread. By default it is plain HTTP on loopback, so anything can talk to it: the plugin
under test in this process, or a sandboxed plugin child that has been granted ``server.port``.

With ``tls=<server ssl.SSLContext>`` (see :mod:`tests.fakeapi.tls` for one made from a test
CA) every accepted connection is wrapped in TLS and ``base_url`` starts with ``https://``.
The handshake runs in the connection's own thread and its outcome is recorded, success or
failure, as a :class:`Handshake` in :attr:`FakeServer.handshakes`.

Common API (see :class:`FakeServer`)::

    with FakeAnthropicServer(reply="Hi there") as server:    # or .start() / .stop()
        os.environ["ANTHROPIC_BASE_URL"] = server.base_url
        server.queue_error(429, retry_after=1)                 # next request fails once
        ...
        server.requests_to("/v1/messages")[-1].body["system"]  # what the client sent
        server.request_count, server.connection_count
        server.wait_for_handshakes(1, timeout=5)[-1].version  # TLS mode: "TLSv1.3"

Scripting is thread-safe; tests read state after the client call returns, so nothing
needs to sleep or poll.
"""

from __future__ import annotations

import json
import re
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "FakeAnthropicServer",
    "FakeOpenAIServer",
    "FakeServer",
    "Handshake",
    "JsonReply",
    "QueuedError",
    "RecordedRequest",
    "StreamReply",
    "split_words",
]

_WORDS = re.compile(r"\S+\s*|\s+")

#: What a reply can be: fixed text, or a function of the parsed request body.
ReplySource = str | Callable[[Mapping[str, Any]], str]


def split_words(text: str) -> list[str]:
    """Split ``text`` into streaming chunks: each word with its trailing whitespace."""
    return _WORDS.findall(text)


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the server received it."""

    method: str
    path: str  # without the query string
    query: str
    headers: Mapping[str, str]  # lower-cased names
    raw: bytes
    body: Any  # parsed JSON, or None when the body was empty or not JSON


@dataclass(frozen=True)
class Handshake:
    """The TLS handshake of one accepted connection, as the server saw it (TLS mode only)."""

    peer: tuple[str, int]
    ok: bool
    version: str | None = None  # "TLSv1.3"...; None when the handshake failed
    cipher: str | None = None  # the negotiated cipher suite's OpenSSL name
    server_name: str | None = None  # the SNI the client sent (none for an IP-address URL)
    error: str | None = None  # the SSLError's reason, e.g. "TLSV1_ALERT_UNKNOWN_CA"
    detail: str | None = None  # the whole error message


@dataclass
class QueuedError:
    """An error the server will answer with instead of serving the next matching request."""

    status: int
    message: str | None = None
    error_type: str | None = None  # vendor error type; a per-status default when None
    code: str | None = None  # OpenAI ``error.code``
    retry_after: float | None = None  # sent as the ``retry-after`` header
    path: str | None = None  # only requests to this path consume it; None matches any
    mid_stream: bool = False  # streaming requests get HTTP 200 and the error inside the stream
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class JsonReply:
    """A complete JSON response."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class StreamReply:
    """A ``text/event-stream`` response, sent with chunked transfer encoding."""

    events: Iterable[bytes]
    headers: Mapping[str, str] = field(default_factory=dict)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a client that hangs up mid-stream must not block stop()
    owner: FakeServer
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.ssl_context is not None:
            # No handshake here, in the accept loop: the connection's thread does it (see _Handler).
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None and isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            return  # a TLS client that hung up uncleanly: expected in TLS tests, not worth a traceback
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs; lets tests see reuse
    server: _HTTPServer

    def setup(self) -> None:
        self.server.owner._note_connection()  # one handler instance per TCP connection
        self.tls_failed = isinstance(self.request, ssl.SSLSocket) and not self.server.owner._handshake(self.request, self.client_address)
        super().setup()

    def handle(self) -> None:
        if not self.tls_failed:  # a failed handshake leaves nothing to read or answer
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep pytest output clean

    def do_GET(self) -> None:
        self.server.owner._handle(self)

    def do_POST(self) -> None:
        self.server.owner._handle(self)


class FakeServer:
    """Base of the fake API servers: lifecycle, request log, error queue, response writing.

    Subclasses implement :meth:`route` (a recorded request in, a reply out) and
    :meth:`error_reply` (the vendor's error body for a status).
    """

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        reply: ReplySource = "Hello from the fake server.",
        chunk_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        url_host: str | None = None,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.api_key = api_key  # None: accept requests without credentials
        self.reply = reply
        self.chunk_delay = chunk_delay  # seconds the server waits before each streamed event
        self._address = (host, port)
        self.tls = tls  # a server-side SSLContext: serve HTTPS instead of HTTP
        self.url_host = url_host or host  # the host named in base_url (e.g. "localhost" for a cert's DNS name)
        self.handshake_timeout = handshake_timeout
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._errors: deque[QueuedError] = deque()
        self._connections = 0
        self._handshakes: list[Handshake] = []
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> str:
        """Bind and serve in a background thread; return :attr:`base_url`."""
        if self._server is None:
            server = _HTTPServer(self._address, _Handler)
            server.owner = self
            self._server = server
            if self.tls is not None:
                self.set_tls(self.tls)
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.02},  # how long stop() waits for the loop to notice
                name=type(self).__name__,
                daemon=True,
            )
            self._thread.start()
        return self.base_url

    def set_tls(self, context: ssl.SSLContext) -> None:
        """Serve connections accepted from now on with ``context`` (TLS mode only).

        Same port, same base_url: a test can fail a client on one certificate, then
        present another to the same client. Open connections keep their certificate.
        """
        if self.tls is None:
            raise RuntimeError(f"{type(self).__name__} was started without tls=; its base_url is http://")
        if context.sni_callback is None:
            context.sni_callback = _note_server_name
        self.tls = context
        if self._server is not None:
            self._server.ssl_context = context

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful for sandbox network grants)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https://`` in TLS mode, ``url_host`` when given);
        subclasses append their API prefix where clients expect one."""
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.url_host}:{self.port}"

    # -- scripting and inspection ----------------------------------------------------

    def queue_error(self, status: int, n: int = 1, **options: Any) -> None:
        """Answer the next ``n`` matching requests with ``status``; options as in :class:`QueuedError`."""
        with self._lock:
            self._errors.extend(QueuedError(status, **options) for _ in range(n))

    def clear_errors(self) -> None:
        """Drop every queued error not yet served."""
        with self._lock:
            self._errors.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The recorded requests whose path is exactly ``path``."""
        return [request for request in self.requests if request.path == path]

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def connection_count(self) -> int:
        """TCP connections accepted so far (keep-alive reuse keeps this below request_count)."""
        with self._lock:
            return self._connections

    @property
    def handshakes(self) -> list[Handshake]:
        """A snapshot of the TLS handshakes so far, successful or not, oldest first (TLS mode)."""
        with self._lock:
            return list(self._handshakes)

    def wait_for_handshakes(self, n: int, timeout: float) -> list[Handshake]:
        """Wait until at least ``n`` handshakes have finished, then return them all.

        A client that rejects the server's certificate reports its error as soon as it has
        sent its alert, so the server may record the failure a moment after the client's
        call returned: wait for it here rather than read :attr:`handshakes` at once.
        Raises ``TimeoutError`` if fewer than ``n`` have finished within ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._handshakes) >= n, timeout):
                raise TimeoutError(f"{type(self).__name__}: {len(self._handshakes)} TLS handshakes within {timeout} s, wanted {n}")
            return list(self._handshakes)

    def reply_text(self, body: Mapping[str, Any]) -> str:
        """The reply for a parsed request body: :attr:`reply`, called when it is a function."""
        return self.reply(body) if callable(self.reply) else self.reply

    # -- subclass hooks --------------------------------------------------------------

    def route(self, request: RecordedRequest) -> JsonReply | StreamReply:
        raise NotImplementedError

    def error_reply(self, error: QueuedError, request: RecordedRequest) -> JsonReply | StreamReply:
        raise NotImplementedError

    # -- request handling ------------------------------------------------------------

    def _note_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _handshake(self, sock: ssl.SSLSocket, peer: tuple[str, int]) -> bool:
        """Run the server side of the TLS handshake on ``sock`` and record how it went."""
        sock.settimeout(self.handshake_timeout)  # a client that never speaks must not pin the thread
        try:
            sock.do_handshake()
        except (ssl.SSLError, OSError) as exc:  # OSError: reset, timeout, EOF before any TLS
            record = Handshake(
                peer=peer[:2], ok=False, server_name=getattr(sock, "sni", None),
                error=getattr(exc, "reason", None) or type(exc).__name__, detail=str(exc),
            )  # fmt: skip
        else:
            sock.settimeout(None)
            cipher = sock.cipher()
            record = Handshake(
                peer=peer[:2], ok=True, version=sock.version(), cipher=cipher[0] if cipher else None,
                server_name=getattr(sock, "sni", None),
            )  # fmt: skip
        with self._changed:
            self._handshakes.append(record)
            self._changed.notify_all()
        return record.ok

    def _take_error(self, path: str) -> QueuedError | None:
        with self._lock:
            for error in self._errors:
                if error.path is None or error.path == path:
                    self._errors.remove(error)
                    return error
        return None

    def _record(self, handler: _Handler) -> RecordedRequest:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        parts = urlsplit(handler.path)
        request = RecordedRequest(
            method=handler.command,
            path=parts.path,
            query=parts.query,
            headers={name.lower(): value for name, value in handler.headers.items()},
            raw=raw,
            body=body,
        )
        with self._lock:
            self._requests.append(request)
        return request

    def _handle(self, handler: _Handler) -> None:
        request = self._record(handler)
        error = self._take_error(request.path)
        reply = self.error_reply(error, request) if error else self.route(request)
        try:
            if isinstance(reply, StreamReply):
                self._write_stream(handler, reply)
            else:
                self._write_json(handler, reply)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            handler.close_connection = True  # the client hung up: nothing left to do

    def _write_json(self, handler: _Handler, reply: JsonReply) -> None:
        data = json.dumps(reply.body).encode()
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _write_stream(self, handler: _Handler, reply: StreamReply) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream; charset=utf-8")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        for event in reply.events:
            if self.chunk_delay:
                time.sleep(self.chunk_delay)  # server-side pacing, to exercise client timeouts
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()


def _note_server_name(sock: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
    """``SSLContext.sni_callback``: keep the client's SNI on the socket, for its Handshake record."""
    sock.sni = server_name  # type: ignore[union-attr]


def sse_events(pairs: Iterable[tuple[str | None, str]]) -> Iterator[bytes]:
    """Encode ``(event name or None, data)`` pairs as Server-Sent Events."""
    for name, data in pairs:
        head = f"event: {name}\n" if name else ""
        yield f"{head}data: {data}\n\n".encode()


# Imported last: the servers subclass FakeServer, defined above.
from .anthropic_server import FakeAnthropicServer  # noqa: E402
from .openai_server import FakeOpenAIServer  # noqa: E402
