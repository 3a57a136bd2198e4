"""The hostile-peer budget: where a msgpack message ends, and whether it fits, before it is decoded.

Used by ``runner.protocol.Decoder(..., hostile=True)``, the host's decoder of what a
plugin sends. It reads msgpack's type bytes (the format table of the msgpack spec) and
never decodes: a message is judged by its shape, its object count and its depth before
msgpack builds a single object of it. Standard library only.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_DEPTH", "MAX_OBJECTS", "BudgetExceeded", "flat_reply", "scan"]

_RESPONSE, _NOTIFICATION = 1, 2  # runner/protocol.py's message kinds


class BudgetExceeded(ValueError):
    """Raised when a message breaks the budget (objects, depth, size, ext types); says which."""


#: What one message from a hostile peer may hold (``Decoder(..., hostile=True)``): the
#: protocol's own messages hold a few dozen objects at most (a hello, an error map), so a
#: budget this size bounds what decoding can allocate (about 100 bytes an object) while an
#: answer of any length is still one str.
MAX_OBJECTS = 4096
MAX_DEPTH = 16

# msgpack type bytes (the spec's format table): fixed-size scalars and their sizes.
_FIXED = {0xC0: 1, 0xC2: 1, 0xC3: 1, 0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9, 0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9}
_SIZED = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}  # str8/16/32, bin8/16/32: bytes of length
_COUNTED = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}  # array16/32, map16/32: (bytes of count, items per)


def scan(data: bytes | bytearray | memoryview, start: int, max_message: int, resume: list[Any] | None = None) -> int | None:
    """Where the message at ``data[start:]`` ends, without decoding it; None if it is not all there.

    Raises BudgetExceeded, before anything is allocated, for ext types, the unused
    0xc1 byte, a str or bin over ``max_message``, more than MAX_OBJECTS objects or more
    than MAX_DEPTH nested containers: a hostile peer's 16 MiB of empty arrays would
    otherwise cost the host a gigabyte of list objects. Work is bounded by MAX_OBJECTS.

    ``resume`` (a list, empty at first) keeps the scan's place between calls on a
    growing ``data`` whose message still starts at ``start``: a message trickled in a
    byte at a time is then scanned once, not once per byte.
    """
    if resume:
        offset, open_counts, remaining, objects = resume
        pos = start + offset
    else:
        pos, open_counts, remaining, objects = start, [], 1, 0
    end = len(data)
    if not remaining and not open_counts:  # resumed after its last object: only its bytes were missing
        return pos if pos <= end else None

    def stalled(at: int, counted: int) -> None:
        if resume is not None:
            resume[:] = [at - start, open_counts, remaining, counted]

    while True:
        if pos >= end:
            stalled(pos, objects)
            return None
        objects += 1
        if objects > MAX_OBJECTS:
            raise BudgetExceeded(f"message with more than {MAX_OBJECTS} objects")
        b, count = data[pos], 0
        if b <= 0x7F or b >= 0xE0:
            pos += 1
        elif b >= 0xA0 and b <= 0xBF:
            pos += 1 + (b & 0x1F)
        elif b >= 0x80 and b <= 0x9F:
            count = (b & 0x0F) * (2 if b <= 0x8F else 1)
            pos += 1
        elif b in _FIXED:
            pos += _FIXED[b]
        elif b in _SIZED:
            width = _SIZED[b]
            if pos + 1 + width > end:
                stalled(pos, objects - 1)  # this object's header is read again next time
                return None
            size = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
            if size > max_message:
                raise BudgetExceeded(f"message larger than the {max_message}-byte cap")
            pos += 1 + width + size
        elif b in _COUNTED:
            width, per = _COUNTED[b]
            if pos + 1 + width > end:
                stalled(pos, objects - 1)
                return None
            count = int.from_bytes(data[pos + 1 : pos + 1 + width], "big") * per
            pos += 1 + width
        else:
            raise BudgetExceeded(f"type byte {b:#04x} is not allowed (no ext types)")
        if count:
            if len(open_counts) >= MAX_DEPTH:
                raise BudgetExceeded(f"message nested more than {MAX_DEPTH} deep")
            open_counts.append(remaining - 1)
            remaining = count
            continue
        remaining -= 1
        while not remaining:
            if not open_counts:
                if pos <= end:
                    return pos
                stalled(pos, objects)
                return None
            remaining = open_counts.pop()


def flat_reply(data: bytes | memoryview) -> bool:
    """Whether ``data`` starts like the two hot messages, which hold no container to budget.

    ``[1, msgid, nil, scalar]`` (a plain response) and ``[2, "chunk", [msgid, str]]``:
    a few byte compares instead of a scan, on the path every count and chunk takes.
    """
    if len(data) < 4:
        return False
    head = data[0]
    if head == 0x94 and data[1] == _RESPONSE and (data[2] <= 0x7F or data[2] in _INT_WIDTH):
        i = 3 + _INT_WIDTH.get(data[2], 0)  # the error's type byte
        return len(data) > i + 1 and data[i] == 0xC0 and not _is_container_or_ext(data[i + 1])
    if head == 0x93 and data[1] == _NOTIFICATION and data[2:9] == b"\xa5chunk\x92" and len(data) > 10:
        if data[9] <= 0x7F or data[9] in _INT_WIDTH:
            i = 10 + _INT_WIDTH.get(data[9], 0)  # the text's type byte
            return i < len(data) and (0xA0 <= data[i] <= 0xBF or data[i] in (0xD9, 0xDA, 0xDB))
    return False


_INT_WIDTH = {0xCC: 1, 0xCD: 2, 0xCE: 4}  # a msgid past 127: its bytes after the type byte


def _is_container_or_ext(b: int) -> bool:
    return 0x80 <= b <= 0x9F or b in _COUNTED or b == 0xC1 or 0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8
