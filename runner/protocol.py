"""The sandchat wire protocol: msgpack-RPC message shapes, framing and validation.

This is the only module that knows msgpack. Both sides use it: the host to talk to a
plugin child, the child (after its sandbox is on) to answer. ``docs/protocol.md`` is
the normative description; this module is its implementation.

Before any message, the host sends the plugin's code (:func:`source_frame`: an 8-byte
big-endian length, then the bytes); the child reads it with the standard library alone.

Messages are msgpack arrays written back to back on a byte stream (no extra framing)::

    request       [0, msgid, method, params]
    response      [1, msgid, error, result]      error is nil or an error map
    notification  [2, method, params]

An error map is ``{"kind", "type", "message", "traceback"}`` with string values. No other
module reads a message by position or builds one: they use the accessors here
(:func:`reply_to`, :func:`request_of`, :meth:`Decoder.single_request`, ...) and an :class:`Encoder`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack

from runner import budget
from runner.budget import MAX_DEPTH, MAX_OBJECTS, BudgetExceeded, flat_reply
from runner.constants import (
    DEFAULT_MAX_MESSAGE,
    ERROR_KINDS,
    MAX_SOURCE,
    METHODS,
    NOTIFICATION,
    PROTOCOL_VERSION,
    REQUEST,
    RESPONSE,
    SOURCE_LENGTH_BYTES,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE", "ERROR_KINDS", "MAX_DEPTH", "MAX_MSGID", "MAX_OBJECTS", "MAX_SOURCE", "METHODS", "NOTIFICATION",
    "NO_REPLY", "PROTOCOL_VERSION", "REQUEST", "RESPONSE", "Decoder", "Encoder", "Message", "ProtocolViolation", "WrongReply",
    "check_response", "chunk_of", "error_map", "is_notification", "notification_params", "reply_to", "request_of",
    "response_id", "scan", "source_frame",
]  # fmt: skip

#: Request ids are msgpack uint32s; a sender wraps to 0 after this one.
MAX_MSGID = 2**32 - 1

_unpackb = msgpack.unpackb
_READ_SLACK = 256 * 1024  # the most either side reads at once


class ProtocolViolation(ValueError):
    """Raised when bytes or a decoded message do not follow the protocol."""


class WrongReply(ProtocolViolation):
    """Raised when a well-formed message is not the one expected (another id, a request, a bad chunk)."""


# -- the message layout: plain functions over msgpack's own list (a view object would cost more than a call's Python)

#: A decoded message whose shape was checked (a list laid out as in the module docstring).
Message = list[Any]

#: What :func:`reply_to` returns for any message but the error-free response it looks for.
NO_REPLY: Any = object()


def request_of(message: Message) -> tuple[int, str, Any] | None:
    """``(msgid, method, params)`` of a request; None for a response or a notification."""
    return (message[1], message[2], message[3]) if message[0] == REQUEST else None


def reply_to(message: Message, msgid: int) -> Any:
    """The result of ``message`` if it is the error-free response to ``msgid``, else NO_REPLY."""
    if message[1] == msgid and message[0] == RESPONSE and message[2] is None:
        return message[3]
    return NO_REPLY


def response_id(message: Message) -> int | None:
    """The request id a response answers; None for a request or a notification."""
    return message[1] if message[0] == RESPONSE else None


def is_notification(message: Message) -> bool:
    return message[0] == NOTIFICATION


def notification_params(message: Message, method: str) -> Any:
    """The params of a ``method`` notification; None for any other message."""
    return message[2] if message[0] == NOTIFICATION and message[1] == method else None


def chunk_of(message: Message, msgid: int) -> str | None:
    """The text of a ``chunk`` notification for ``msgid``; None for any other message; WrongReply if not ``[msgid, text]``."""
    if message[0] != NOTIFICATION or message[1] != "chunk":
        return None
    params = message[2]
    if type(params) is list and len(params) == 2 and type(params[0]) is int and params[0] == msgid and type(params[1]) is str:
        return params[1]
    raise WrongReply(f"sent a malformed chunk for request {msgid}")


class Encoder:
    """Packs messages to bytes; not thread-safe (callers hold their write lock)."""

    def __init__(self) -> None:
        #: Pack any value (the Packer's own method): for tests and tools that build raw messages.
        self.pack = msgpack.Packer(use_bin_type=True, datetime=False).pack

    def request(self, msgid: int, method: str, params: Any) -> bytes:
        return self.pack([REQUEST, msgid, method, params])

    def response(self, msgid: int, error: dict[str, str] | None, result: Any) -> bytes:
        return self.pack([RESPONSE, msgid, error, result])

    def notification(self, method: str, params: Any) -> bytes:
        return self.pack([NOTIFICATION, method, params])


def scan(data: bytes | bytearray | memoryview, start: int, max_message: int, resume: list[Any] | None = None) -> int | None:
    """``runner.budget.scan``, with its refusals as ProtocolViolation: where a message ends, or None."""
    try:
        return budget.scan(data, start, max_message, resume)
    except BudgetExceeded as exc:
        raise ProtocolViolation(str(exc)) from None


class Decoder:
    """Turns a byte stream into messages, refusing anything over ``max_message`` bytes.

    ``hostile=True`` (the host reading a plugin) also refuses, before decoding, what
    :func:`scan` refuses; the child reads its trusted host without the budget (a long
    chat history is one large array).
    """

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE, hostile: bool = False) -> None:
        self.max_message = max_message
        self.hostile = hostile
        self._pending = bytearray()  # hostile: bytes of a message not yet whole
        self._resume: list[Any] = []  # hostile: where the scan of that message stopped
        # The buffer may hold one read beyond a whole message; each string, binary, array
        # and map is capped at max_message on its own, so no one message can exceed it.
        self._unpacker = msgpack.Unpacker(
            max_buffer_size=max_message + _READ_SLACK,
            max_str_len=max_message,
            max_bin_len=max_message,
            raw=False,
            strict_map_key=True,
            use_list=True,
        )
        self._fed = 0  # bytes fed to the streaming unpacker
        self._start = 0  # stream offset where the message being received began
        self._partial = False  # it holds the start of a message: the next read must go there too

    def single(self, data: bytes | memoryview) -> Message | None:
        """The message ``data`` (one read) holds when it is exactly one whole message, else None.

        The fast path: one ``unpackb`` call decodes it as it was read (no copy into the
        streaming buffer, no generator). On None (several messages, a partial one, bad bytes)
        the caller passes the same ``data`` to :meth:`feed`, which enforces the same caps and
        raises for bad bytes. A message of the wrong shape raises ProtocolViolation here as there.
        """
        if self._partial or len(data) > self.max_message:
            return None
        # Only the two flat shapes skip the scan: everything else is checked for depth and
        # ext types, whatever its length, so this path and feed() judge alike.
        if self.hostile and not flat_reply(data):
            try:
                if scan(data, 0, self.max_message) != len(data):
                    return None  # several messages or a partial one: feed() decides
            except ProtocolViolation:
                return None  # feed() scans the same bytes and raises
        try:
            # msgpack>=1.0 defaults: raw=False, strict_map_key=True, use_list=True; nesting
            # past 1,024 is msgpack's own StackError, and no ext type gets through.
            message = _unpackb(data, ext_hook=_refuse_ext) if self.hostile else _unpackb(data)
        except Exception:  # ExtraData, incomplete input or bad bytes: feed() decides
            return None
        # _check_shape's test for the two shapes of a call, inlined (a Python call is ~0.1 us here)
        if type(message) is list and len(message) == 4:
            msgid, kind = message[1], message[0]
            if (
                type(msgid) is int
                and 0 <= msgid <= MAX_MSGID
                and type(kind) is int
                and ((kind == RESPONSE and message[2] is None) or (kind == REQUEST and type(message[2]) is str))
            ):
                return message
        return _check_shape(message)

    def single_request(self, data: bytes | memoryview) -> tuple[int, str, Any] | None:
        """:meth:`single` for the child (its trusted host sends requests only): ``(msgid, method, params)``.

        None when ``data`` is not exactly one whole request (then feed() reads the same bytes).
        single()'s trusted path, copied: the child's per-request path costs no Python call more.
        """
        if self.hostile:
            message = self.single(data)
            return None if message is None else request_of(message)
        if self._partial or len(data) > self.max_message:
            return None
        try:
            message = _unpackb(data)
        except Exception:  # ExtraData, incomplete input or bad bytes: feed() decides
            return None
        if type(message) is list and len(message) == 4 and type(message[0]) is int and message[0] == REQUEST:
            msgid, method = message[1], message[2]
            if type(msgid) is int and 0 <= msgid <= MAX_MSGID and type(method) is str:
                return msgid, method, message[3]
        _check_shape(message)  # a malformed message raises here as in single()
        return None

    def feed(self, data: bytes | memoryview) -> Iterator[Message]:
        """Yield every complete message in the stream so far, each checked for shape."""
        if self.hostile:
            yield from self._feed_scanned(data)
            return
        unpacker = self._unpacker
        try:
            self._partial = True
            unpacker.feed(data)
            self._fed += len(data)
            for message in unpacker:
                self._start = unpacker.tell()
                yield _check_shape(message)
            pending = self._fed - self._start  # bytes of a message not yet complete
            if pending > self.max_message:
                # The unpacker parses as bytes arrive and keeps no copy of the parsed part,
                # so its buffer limit alone does not bound one message made of many pieces.
                raise ProtocolViolation(f"message larger than the {self.max_message}-byte cap")
            self._partial = pending != 0
        except msgpack.BufferFull:
            raise ProtocolViolation(f"message larger than the {self.max_message}-byte cap") from None
        except ProtocolViolation:
            raise
        except Exception as exc:  # msgpack raises several unrelated types for bad bytes
            if "exceeds max_" in str(exc):
                raise ProtocolViolation(f"message larger than the {self.max_message}-byte cap") from None
            raise ProtocolViolation(f"undecodable bytes ({type(exc).__name__}: {exc})") from None

    def _feed_scanned(self, data: bytes | memoryview) -> Iterator[Message]:
        """feed() for a hostile peer: nothing is decoded unless it is known to fit the budget.

        Runs of flat messages are decoded at C speed (:meth:`_flat_run`); a message longer
        than a window of MAX_OBJECTS bytes is scanned whole first.
        """
        pending = self._pending
        pending += data
        pos, messages = 0, []  # type: tuple[int, list[Any]]
        try:
            while pos < len(pending):
                # A run of the two flat shapes (a stream's chunks) is decoded at C speed; a
                # message whose scan stalled last time is scanned on from there (a trickle of
                # single bytes costs O(1) each); any other message is scanned first.
                taken = 0 if self._resume and pos == 0 else self._flat_run(pending, pos, messages)
                if taken:
                    pos += taken
                    continue
                # The next message is longer than a window: scan it, from where the last read left off.
                end = scan(pending, pos, self.max_message, self._resume)
                if end is None:
                    break
                self._resume = []
                messages.append(_check_shape(_unpackb(bytes(pending[pos:end]), ext_hook=_refuse_ext)))
                pos = end
        except ProtocolViolation:
            raise
        except Exception as exc:  # msgpack raises several unrelated types for bad bytes
            raise ProtocolViolation(f"undecodable bytes ({type(exc).__name__}: {_first_line(exc)})") from None
        finally:
            del pending[:pos]
        if len(pending) > self.max_message:
            raise ProtocolViolation(f"message larger than the {self.max_message}-byte cap")
        self._partial = bool(pending)
        yield from messages

    def _flat_run(self, pending: bytearray, pos: int, messages: list[Message]) -> int:
        """Decode the run of whole flat messages at ``pending[pos:]``; the bytes they took.

        A window of MAX_OBJECTS bytes cannot hold more objects than bytes, so it is safe to
        decode whatever it holds; the first message not flat ends the run and goes to the scan.
        """
        unpacker = msgpack.Unpacker(
            raw=False, strict_map_key=True, use_list=True, ext_hook=_refuse_ext,
            max_str_len=self.max_message, max_bin_len=self.max_message,
        )  # fmt: skip
        unpacker.feed(bytes(pending[pos : pos + MAX_OBJECTS]))
        taken = 0
        try:
            for message in unpacker:
                if not _is_flat(message):
                    break
                messages.append(message)
                taken = unpacker.tell()  # the end of this message (after the loop it may be mid-message)
        except (ProtocolViolation, ValueError, msgpack.UnpackException):
            pass  # the message there is judged by the scan (and refused there); BudgetExceeded is a ValueError
        return taken


def _is_flat(message: Any) -> bool:
    """Whether a decoded message is one of the two flat shapes (see _flat_reply)."""
    if type(message) is not list:
        return False
    if len(message) == 4:
        return (
            message[0] == RESPONSE and type(message[0]) is int and type(message[1]) is int and 0 <= message[1] <= MAX_MSGID
            and message[2] is None and type(message[3]) in _SCALARS
        )  # fmt: skip
    params = message[2] if len(message) == 3 else None
    return (
        message[0] == NOTIFICATION and type(message[0]) is int and message[1] == "chunk" and type(params) is list
        and len(params) == 2 and type(params[0]) is int and 0 <= params[0] <= MAX_MSGID and type(params[1]) is str
    )  # fmt: skip


_SCALARS = (str, int, float, bool, bytes, type(None))


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolViolation(f"ext type {code} is not allowed")


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()
    return text[0][:120] if text else ""


def _check_shape(message: Any) -> Message:
    if type(message) is list:  # the common well-formed shapes first; anything else takes the full check
        if len(message) == 4:
            msgid = message[1]
            kind = message[0]
            if type(msgid) is int and 0 <= msgid <= MAX_MSGID and type(kind) is int:
                if kind == RESPONSE and message[2] is None:
                    return message
                if kind == REQUEST and type(message[2]) is str:
                    return message
        elif len(message) == 3 and type(message[0]) is int and message[0] == NOTIFICATION and type(message[1]) is str:
            return message
    return _check_shape_fully(message)


def _check_shape_fully(message: Any) -> Message:
    if not isinstance(message, list) or not message:
        raise ProtocolViolation(f"expected a message array, got {_describe(message)}")
    kind = message[0]
    if type(kind) is not int:  # true == 1 and 1.0 == 1 in Python, not on the wire
        raise ProtocolViolation(f"malformed message {_describe(message)}")
    if kind == REQUEST and len(message) == 4:
        if _is_msgid(message[1]) and isinstance(message[2], str):
            return message
    elif kind == RESPONSE and len(message) == 4:
        if _is_msgid(message[1]) and (message[2] is None or _is_error(message[2])):
            return message
    elif kind == NOTIFICATION and len(message) == 3:
        if isinstance(message[1], str):
            return message
    raise ProtocolViolation(f"malformed message {_describe(message)}")


def _is_msgid(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_MSGID


def _is_error(value: Any) -> bool:
    return (  # unknown kinds are read as "plugin"
        isinstance(value, dict) and isinstance(value.get("type"), str) and isinstance(value.get("message"), str)
        and isinstance(value.get("traceback", ""), str) and isinstance(value.get("kind", "plugin"), str)
    )  # fmt: skip


def check_response(message: Message, expected_id: int) -> tuple[dict[str, str] | None, Any]:
    """Return ``(error, result)`` of a response to ``expected_id`` or raise WrongReply."""
    if message[0] != RESPONSE:
        raise WrongReply(f"expected a response, got {_describe(message)}")
    if message[1] != expected_id:
        raise WrongReply(f"response to unknown request id {message[1]} (expected {expected_id})")
    return message[2], message[3]


def error_map(kind: str, type_: str, message: str, traceback: str = "") -> dict[str, str]:
    """Build the error map that crosses the process boundary as plain data."""
    return {"kind": kind, "type": type_, "message": message, "traceback": traceback}


def _describe(value: Any) -> str:
    """A short, safe description: a container's type and size, never its repr (it may be deep)."""
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__} of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, (str, bytes)):
        return f"a {type(value).__name__} of {len(value)} {'characters' if isinstance(value, str) else 'bytes'}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def source_frame(code: bytes) -> bytes:
    """The code frame that opens the host's side of the stream: length, then the bytes."""
    if len(code) > MAX_SOURCE:
        raise ValueError(f"plugin code is larger than {MAX_SOURCE} bytes")
    return len(code).to_bytes(SOURCE_LENGTH_BYTES, "big") + code
