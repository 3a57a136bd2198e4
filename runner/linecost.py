"""The stderr budget's arithmetic: what a block of a plugin's lines costs the host, and where to cut it.

The budget (runner/stderr.py) counts what the host spends: a line costs its bytes plus
:data:`LINE_COST` (about the stamp and name it gets in the log), so a flood of empty
lines costs no less than one of long lines. Lines are at most :data:`MAX_LINE` bytes: a
longer one is split. :func:`split` turns a block of whole lines into text, raw (not
cleaned: that is the readers' business) but bounded. Pure functions, no I/O.
"""

from __future__ import annotations

__all__ = ["LINE_COST", "MAX_LINE", "cost", "cut", "cut_from_end", "split", "whole_line"]

MAX_LINE = 4096
LINE_COST = 32  # what a line costs beyond its bytes: about the stamp and name it gets in the log


def whole_line(buf: bytes) -> bool:
    """Whether ``buf`` holds a line to take: a whole one, or 4096 bytes of a longer one."""
    return len(buf) >= MAX_LINE or b"\n" in buf


def cost(buf: bytes, start: int, end: int) -> int:
    return end - start + LINE_COST * buf.count(b"\n", start, end)


def cut(buf: bytes, allowance: float) -> int:
    """Where to cut ``buf`` to take the whole lines ``allowance`` covers; at least one line."""
    end = buf.rfind(b"\n") + 1
    if not end:
        return len(buf) - len(buf) % MAX_LINE  # no line ends: whole 4096-byte pieces of a long one
    if cost(buf, 0, end) <= allowance:
        return end
    lo, hi = 0, end  # the cost of buf[:i] grows with i: find the last i it fits in
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(buf, 0, mid) <= allowance:
            lo = mid
        else:
            hi = mid - 1
    return buf.rfind(b"\n", 0, lo) + 1 or min(buf.find(b"\n") + 1, MAX_LINE)


def cut_from_end(buf: bytes, allowance: float) -> int:
    """Where the newest lines of ``buf`` that ``allowance`` covers begin (0: all of it); the last line always."""
    if cost(buf, 0, len(buf)) <= allowance:
        return 0
    lo, hi = 0, len(buf)  # the cost of buf[i:] shrinks as i grows: find the first i it fits from
    while lo < hi:
        mid = (lo + hi) // 2
        if cost(buf, mid, len(buf)) <= allowance:
            hi = mid
        else:
            lo = mid + 1
    if lo and buf[lo - 1 : lo] != b"\n":  # not at a line's start: from the next line on
        lo = buf.find(b"\n", lo) + 1 or len(buf)
    if lo >= len(buf):  # the last line alone is over: keep it all the same
        lo = buf.rfind(b"\n", 0, len(buf) - 1) + 1
    return lo


def split(chunk: bytes) -> list[str]:
    """The lines of ``chunk`` (whole lines, or a last one without its newline), each at most 4096 bytes, decoded."""
    pieces = chunk.split(b"\n")
    if chunk.endswith(b"\n"):
        pieces.pop()
    if max(map(len, pieces)) > MAX_LINE:  # lines over 4096 bytes become several
        pieces = [p[i : i + MAX_LINE] for p in pieces for i in range(0, len(p) or 1, MAX_LINE)]
    return [piece.decode("utf-8", "replace") for piece in pieces]
