"""The egress channel's wire format: length-prefixed JSON objects between child and host.

A network-profile child asks the host to resolve names and open connections for it over
a private AF_UNIX stream pair (``runner/egress.py`` answers, ``runner/child/netshim.py`` asks).
Standard library only: the child speaks it before ``site`` has put msgpack on its path.

Each frame is a 4-byte big-endian length, then a UTF-8 JSON object. Requests (child to
host, hostile: at most :data:`MAX_REQUEST` bytes, flat, fields checked here)::

    {"op": "resolve", "host": str, "port": int|str|null, "family": int, "flags": int}
    {"op": "connect", "host": str, "port": int, "family": int, "timeout": float|null}

Replies (host to child; a ``connect`` that worked carries the socket as SCM_RIGHTS)::

    {"ok": true, "addrs": [[family, host, port], ...]}     resolve
    {"ok": true}                                           connect, with one fd
    {"ok": false, "refused": "HOST:PORT"}                  not granted
    {"ok": false, "errno": int, "message": str}            OSError the connect met
    {"ok": false, "gai": int, "message": str}              socket.gaierror
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["MAX_REPLY", "MAX_REQUEST", "WireError", "check_request", "decode", "encode"]

MAX_REQUEST = 1024  # a host name is at most 253 bytes: no honest request comes near this
MAX_REPLY = 64 * 1024  # 64 addresses of a name, with room to spare
_LENGTH = 4
_MAX_HOST = 300
_OPS = ("resolve", "connect")


class WireError(ValueError):
    """Raised when a frame is malformed, oversized, or a request's fields are wrong."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return len(body).to_bytes(_LENGTH, "big") + body


def decode(data: bytes, limit: int) -> tuple[dict[str, Any] | None, int]:
    """The first whole frame in ``data`` and the bytes it used, or (None, 0) when incomplete."""
    if len(data) < _LENGTH:
        return None, 0
    size = int.from_bytes(data[:_LENGTH], "big")
    if size > limit:
        raise WireError(f"a {size}-byte frame (the limit is {limit})")
    if len(data) < _LENGTH + size:
        return None, 0
    try:
        message = json.loads(data[_LENGTH : _LENGTH + size].decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise WireError(f"not a JSON frame ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise WireError("a frame that is not an object")
    return message, _LENGTH + size


def check_request(message: dict[str, Any]) -> dict[str, Any]:
    """The request's fields, type-checked; anything else in it is refused."""
    op = message.get("op")
    if op not in _OPS:
        raise WireError(f"unknown op {str(op)[:40]!r}")
    allowed = {"op", "host", "port", "family", "flags"} if op == "resolve" else {"op", "host", "port", "family", "timeout"}
    if set(message) - allowed:
        raise WireError(f"unexpected fields in a {op} request")
    host, port, family = message.get("host"), message.get("port"), message.get("family", 0)
    if not isinstance(host, str) or not 0 < len(host) <= _MAX_HOST:
        raise WireError("a host that is not a short string")
    if type(family) is not int:
        raise WireError("a family that is not an integer")
    if op == "connect":
        timeout = message.get("timeout")
        if type(port) is not int or not 0 < port < 65536:
            raise WireError("a connect port outside 1-65535")
        if timeout is not None and (type(timeout) not in (int, float) or not _finite(timeout) or timeout < 0):
            raise WireError("a timeout that is not a number of seconds")
        return {"op": op, "host": host, "port": port, "family": family, "timeout": timeout}
    flags = message.get("flags", 0)
    if (
        port is not None
        and not (type(port) is int and 0 <= port < 65536)
        and not (isinstance(port, str) and len(port) <= 32 and port.isascii())
    ):
        raise WireError("a resolve port that is neither a number nor a short service name")
    if type(flags) is not int or not -(2**31) <= flags < 2**31 or not -(2**31) <= family < 2**31:
        raise WireError("flags or a family that are not a C int")
    return {"op": op, "host": host, "port": port, "family": family, "flags": flags}


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number) and number < 1e9  # a 400-digit int overflows isfinite
    except OverflowError:
        return False
