"""The gate of the browser chat: every request proves it comes from the user's own page, or is refused.

An ASGI middleware, so nothing of the application runs for a refused request:

* **Token.** Each run makes a secret (``secrets.token_urlsafe(32)``) that only the printed
  URL carries (as Jupyter does). ``GET /?token=T`` trades it for an ``HttpOnly;
  SameSite=Strict`` cookie named for the port (two servers on one host keep apart) and
  sends the browser on to ``/``, so the secret leaves the address bar. Every other request
  needs the cookie; the comparison takes constant time.
* **Host.** Only ``127.0.0.1:PORT``, ``localhost:PORT``, ``[::1]:PORT`` (or the ``--host``
  given): a DNS-rebinding page reaches the port under its own name and is refused.
* **Origin.** A request that changes anything (any method but GET and HEAD) must carry
  the page's own ``Origin``; a missing, ``null`` or foreign one is refused, and so is
  any request a browser marks ``Sec-Fetch-Site: cross-site``. There are no CORS headers.
* **Headers.** Every response, refusals included, carries a strict Content-Security-Policy
  (scripts and styles from this origin only, no inline code, no ``eval``, nothing remote),
  ``nosniff``, no referrer, no framing, no caching.

* **Size.** A request's headers are bounded (at most 100 of them, 32 KiB in all: 431) and
  so is its body (1 MiB: 413), whatever it claims.

A refusal is one line of text with status 403 (or 413, 431 for sizes).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

__all__ = ["CSP", "MAX_BODY", "MAX_HEADERS", "MAX_HEADER_BYTES", "Gate", "GateConfig", "new_token"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
MAX_BODY = 1 << 20  # 1 MiB: a message, a system prompt; nothing the page sends is larger
MAX_HEADERS = 100
MAX_HEADER_BYTES = 32 << 10  # a browser's own are under 2 KiB; the rest is room for localhost cookies of other tools
_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_SAFE_METHODS = ("GET", "HEAD")


def new_token() -> str:
    """A fresh secret for one run of the server."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class GateConfig:
    """What the gate lets in: the run's token, the port it serves, and the host names it answers to."""

    token: str
    port: int
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")

    @property
    def cookie(self) -> str:
        return f"sandchat_{self.port}"

    @property
    def authorities(self) -> frozenset[str]:
        """The exact ``Host`` header values accepted."""
        return frozenset(f"{host}:{self.port}" for host in self.hosts)

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{authority}" for authority in self.authorities)


def _header(scope: Scope, name: bytes) -> str | None:
    """The one value of header ``name``; None when it is absent; "" marks it given twice (never accepted)."""
    values = [value for key, value in scope.get("headers", ()) if key == name]
    if not values:
        return None
    return values[0].decode("latin-1") if len(values) == 1 else ""


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", ()):
        if key != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key_, _, val = part.strip().partition("=")
            if key_ == name:
                return val
    return None


class Gate:
    """The ASGI middleware in front of the application: refuses what is not the user's page."""

    def __init__(self, app: ASGIApp, config: GateConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets: the page streams over plain HTTP, and an unanswered handshake is refused
        refusal = self.refusal(scope)
        if refusal is not None:
            status, line = refusal
            await _plain(send, status, line)
            return
        if self._is_login(scope):
            await _redirect_home(send, self.config.cookie, self.config.token)
            return

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if not k.startswith(b"access-control-")]
                message["headers"] = [*headers, *_HEADERS]
            await send(message)

        await self.app(scope, receive, guarded_send)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """Why this request is refused (status, one line), or None to let it in."""
        headers = scope.get("headers", ())
        if len(headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in headers) > MAX_HEADER_BYTES:
            return 431, f"refused: request headers over {MAX_HEADERS} or {MAX_HEADER_BYTES // 1024} KiB (large cookies for this host?)"
        host = _header(scope, b"host")
        if host is None or host not in self.config.authorities:
            return 403, "refused: this server answers only to its own address (Host)"
        if _header(scope, b"sec-fetch-site") == "cross-site":
            return 403, "refused: a cross-site request"
        origin = _header(scope, b"origin")
        if origin is not None and origin not in self.config.origins:
            return 403, "refused: a request from another origin"
        if scope["method"] not in _SAFE_METHODS and origin is None:
            return 403, "refused: a request that changes something must come from the page (Origin)"
        if self._is_login(scope):
            return None
        given = _cookie(scope, self.config.cookie)
        if given is None or not hmac.compare_digest(given.encode(), self.config.token.encode()):
            return 403, "refused: open the address sandchat web printed (it carries the token)"
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return 413, f"refused: a request body over {MAX_BODY} bytes"
        return None

    def _is_login(self, scope: Scope) -> bool:
        """``GET /?token=T`` with this run's token: trades the token for the cookie."""
        if scope["method"] != "GET" or scope["path"] != "/":
            return False
        tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        return len(tokens) == 1 and hmac.compare_digest(tokens[0].encode(), self.config.token.encode())


async def _plain(send: Send, status: int, line: str) -> None:
    body = (line + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()), *_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redirect_home(send: Send, cookie: str, token: str) -> None:
    cookie_line = f"{cookie}={token}; HttpOnly; SameSite=Strict; Path=/".encode()
    headers = [(b"location", b"/"), (b"set-cookie", cookie_line), (b"content-length", b"0"), *_HEADERS]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
