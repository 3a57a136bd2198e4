"""Agent wire format: length-prefixed, bounded JSON frames, and the hello that opens a connection.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON, one object.
JSON, not msgpack: ``runner.protocol`` alone knows msgpack, and the agent's traffic (a
launch decision, a request, reply chunks) is small text; read and written by
``app.agent.leanjson``, which a warm command's client imports without ``re``. Frames are bounded so a broken or
hostile peer cannot make the other side allocate without limit.

The first frame each way is a hello naming the sandchat build (``app.version.build``: the code
running, so an edited or upgraded tree never talks to an agent still running the old one) and
the agent protocol; any difference is a ``VersionMismatch`` and the client runs the plugin itself.
"""

from __future__ import annotations

import struct

from app.agent import leanjson
from app.agent.errors import VersionMismatch, WireError

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing: see app/__init__.py
if TYPE_CHECKING:
    import _socket  # socket.socket is one; the handoff client uses it bare
    from typing import Any

PROTOCOL = 2  # 2: "waiting" beats during a call, "forget", chunks in pieces
MAX_FRAME = 8 * 1024 * 1024
BEAT_EVERY = 1.0  # the agent sends {"type": "waiting"} this often while a call queues or runs
SILENCE = 10.0  # seconds without a frame after which a client takes the agent for hung (ten beats missed)
_HEADER = struct.Struct(">I")


def encode(document: dict[str, Any]) -> bytes:
    """One frame: the header and the JSON body; raises ``WireError`` if it would exceed ``MAX_FRAME``."""
    try:
        body = leanjson.dumps(document).encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate (bytes that were not UTF-8 on standard input)
        raise WireError(f"frame is not UTF-8 text: {error.reason}") from None
    if len(body) > MAX_FRAME:
        raise WireError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict[str, Any]:
    """A frame's body as a JSON object; raises ``WireError`` on anything else."""
    try:
        document = leanjson.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise WireError(f"frame is not JSON: {error}") from error
    except RecursionError:  # "[[[[..." a few thousand deep: the parser's own bound, not a crash of ours
        raise WireError("frame nests deeper than a JSON parser follows") from None
    if not isinstance(document, dict):
        raise WireError(f"frame is a {type(document).__name__}, not an object")
    return document


def send(sock: _socket.socket, document: dict[str, Any]) -> None:
    """Write one frame; a closed or broken peer is a ``WireError``."""
    try:
        sock.sendall(encode(document))
    except OSError as error:
        raise WireError(f"cannot send: {error}") from error


def receive(sock: _socket.socket) -> dict[str, Any]:
    """Read one frame (under the socket's own timeout); end of stream or a bad length is a ``WireError``."""
    (length,) = _HEADER.unpack(_exactly(sock, _HEADER.size))
    if length > MAX_FRAME:
        raise WireError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return decode(_exactly(sock, length))


def _exactly(sock: _socket.socket, count: int) -> bytes:
    parts: list[bytes] = []
    wanted = count
    while wanted:
        try:
            part = sock.recv(min(wanted, 1 << 16))
        except OSError as error:  # socket.timeout included
            raise WireError(f"cannot receive: {error}") from error
        if not part:
            raise WireError("the peer closed the connection mid-frame" if parts else "the peer closed the connection")
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def hello(version: str) -> dict[str, Any]:
    """The first frame either side sends."""
    return {"type": "hello", "version": version, "protocol": PROTOCOL}


def check_hello(document: dict[str, Any], version: str) -> None:
    """Raise ``VersionMismatch`` unless ``document`` is a hello of this version and protocol."""
    if document.get("type") != "hello":
        raise VersionMismatch(f"expected a hello, got {document.get('type')!r}")
    theirs = (document.get("version"), document.get("protocol"))
    if theirs != (version, PROTOCOL):
        raise VersionMismatch(f"agent runs sandchat build {theirs[0]} protocol {theirs[1]}, this is {version} protocol {PROTOCOL}")
