"""Reader: the child's output, one message at a time, under a deadline a cancel can bring forward.

Reads never block: only poll() waits, and only until the deadline. Another thread may
bring the deadline forward (``hurry``, for a cancel's grace) and wake the reading thread
through a private pipe. Every byte is hostile: the hostile :class:`~runner.protocol.Decoder`
caps and checks each message. The reader raises only its own two signals (and the
decoder's ProtocolViolation); its Connection turns them into the runner's errors.
"""

from __future__ import annotations

import math
import os
import select
import time
import weakref
from collections import deque
from typing import Any

from runner.constants import READ_SIZE as _READ_SIZE
from runner.constants import SPIN_SECONDS
from runner.protocol import Decoder

__all__ = ["Closed", "Reader", "TimedOut"]

_EVENTS = select.POLLIN | select.POLLHUP | select.POLLERR


class TimedOut(Exception):
    """Raised when the deadline, or the earlier one a cancel set, passed with no message."""


class Closed(Exception):
    """Raised when the child's output ended (EOF, or a read error)."""


class Reader:
    """Messages from one child's output pipe; used by one thread at a time, hurried from any."""

    def __init__(self, fd: int, max_message: int) -> None:
        self._fd = fd
        os.set_blocking(fd, False)
        self._read_first = True  # see _read_ready()
        self._probe = 0
        self._spin = SPIN_SECONDS if len(os.sched_getaffinity(0)) > 1 else 0.0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.close = weakref.finalize(self, _close_all, self._wake_r, self._wake_w)  # idempotent
        self._poll = select.poll()
        self._poll.register(fd, _EVENTS)
        self._poll.register(self._wake_r, select.POLLIN)
        self._decoder = Decoder(max_message, hostile=True)
        self._inbox: deque[list[Any]] = deque()
        self.hurried_to = math.inf  # set by hurry(): the current wait ends by then at the latest

    def hurry(self, at: float) -> None:
        """Bring the current wait's end forward to ``at`` and wake the reading thread; any thread.

        The caller keeps the reader open meanwhile (it holds the Connection's write lock).
        """
        self.hurried_to = min(self.hurried_to, at)
        os.write(self._wake_w, b"!")

    def next(self, deadline: float, fresh: bool = False) -> list[Any]:
        """The next message, waiting until ``deadline`` (or an earlier hurry).

        The clock is read before every read, so a child that floods messages cannot outrun
        the deadline; ``fresh`` (a deadline set microseconds ago) skips it for the first.
        """
        if self._inbox:
            return self._inbox.popleft()
        while True:
            if not fresh and min(deadline, self.hurried_to) <= time.monotonic():
                raise TimedOut
            fresh = False
            data = None
            if self._read_first or not self._probe:  # see _read_ready(), inlined here (hot path)
                try:
                    data = os.read(self._fd, _READ_SIZE)
                except BlockingIOError:
                    self._read_first = False
                except OSError:
                    data = b""
                else:
                    self._read_first = True
            self._probe = (self._probe + 1) & 15
            if data is None:  # nothing there yet: wait for it under the deadline
                data = self.wait_and_read(min(deadline, self.hurried_to))
                if data is None:
                    continue
            if not data:
                raise Closed
            message = self._decoder.single(data)  # the usual read: one whole message
            if message is None:
                message = self._decode_stream(data)
            if message is not None:
                return message

    def wait_and_read(self, until: float) -> bytes | None:
        """Wait for output until ``until``: its bytes, b"" at EOF, None if woken by a hurry."""
        events = self._wait(until)
        if not events:
            raise TimedOut
        if len(events) == 1 and events[0][0] == self._wake_r:  # only woken by hurry()
            _drain(self._wake_r)
            return None
        return self._read_ready()

    def feed(self, data: bytes) -> None:
        """Decode bytes read outside next() (after the sandbox report); their messages come next."""
        self._inbox.extend(self._decoder.feed(data))

    def _decode_stream(self, data: bytes) -> list[Any] | None:
        """The first message completed by a read that was not one whole message; the rest wait in the inbox."""
        messages = list(self._decoder.feed(data))
        if not messages:
            return None
        if len(messages) > 1:
            self._inbox.extend(messages[1:])
        return messages[0]

    def _wait(self, until: float) -> list[tuple[int, int]]:
        """poll() for the child's output (or a hurry) until the monotonic time ``until``."""
        poll = self._poll.poll
        if self._spin:
            spin_until = min(until, time.monotonic() + self._spin)
            while True:
                events = poll(0)
                if events:
                    return events
                if time.monotonic() >= spin_until:
                    break
                os.sched_yield()
        return poll(max(0.0, until - time.monotonic()) * 1000)

    def _read_ready(self) -> bytes | None:
        """Read what the child has sent without blocking: the bytes, b"" at EOF, None if nothing yet.

        On one CPU the child usually runs (and replies) inside our write() that woke it,
        so its reply is already here: reading first then saves the poll() syscall. When
        it is not (the child runs on another CPU), later calls poll first, and try
        reading first again on every 16th read to notice when it pays again.
        """
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            self._read_first = False
            return None
        except OSError:
            return b""
        self._read_first = True
        return data


def _close_all(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 64):
            pass
    except BlockingIOError:
        pass
