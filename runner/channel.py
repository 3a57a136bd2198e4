"""Channel: the two pipes to one plugin child, with their fds, poll objects and buffers.

Requests are written without blocking (a child that stops reading must not hang the
host) under one lock; the child's output is read by one thread at a time through a
:class:`~runner.reader.Reader`. The request ids are the channel's too: which one a
cancel may name (the call being read), and which replies nobody waits for.

The fds outlive no thread that may use them: they are closed only once the channel is
closed *and* no thread is inside ``poll()`` or ``read()`` on them (the reading thread
frees them on its way out), or a reused fd number could be read in someone else's file.
A thread about to read says so under the lock (:meth:`begin_reading`, :meth:`request`),
so the closer sees either the reader or its own ``closed`` first.

The channel raises only foreign signals: OSError (a write failed), :class:`Stalled`,
:class:`Shut` and the reader's TimedOut, Closed and ProtocolViolation. Its Connection
turns them into the runner's errors (runner/failures.py).
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from runner.protocol import MAX_MSGID, Encoder
from runner.reader import Reader

__all__ = ["Channel", "Shut", "Stalled", "close_quietly"]


class Stalled(Exception):
    """Raised when the child's input stayed full until a write's deadline: it stopped reading."""


class Shut(Exception):
    """Raised when the channel is closed (its process is being stopped) before a write or a read begins.

    Its text, when it has one, is the whole complaint ("process was stopped").
    """


class Channel:
    """The pipes to one child: requests in, messages out; writers from any thread, one reader at a time."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes], max_message: int, on_release: Callable[[], None] | None = None) -> None:
        self.lock = threading.RLock()  # writers, cancel and close hold it; it also guards the reader's wake pipe
        self.closed = False  # nothing more is written; the fds go as soon as no thread reads
        self.reading = False  # a thread is in, or on its way into, a read: the fds stay until it is out
        self._released = False
        self._on_release = on_release
        self._stdin, self._stdout = stdin, stdout
        self._write_fd = stdin.fileno()
        os.set_blocking(self._write_fd, False)  # a child that stops reading must not hang us
        self._poll_out = select.poll()  # used only when the child's input pipe is full
        self._poll_out.register(self._write_fd, select.POLLOUT)
        self.reader = Reader(stdout.fileno(), max_message)
        #: The next message from the child (``Reader.next``), bound once for the per-call path.
        self.next = self.reader.next
        self._encode = Encoder().request  # one reused Packer; requests are packed under the lock
        self.last_id = 0
        self.ignored: set[int] = set()  # ids whose responses nobody waits for (cancel, shutdown)
        self.running: int | None = None  # the id of the call being read: the only one a cancel may name

    # -- writing -------------------------------------------------------------------------

    def request(self, method: str, params: dict[str, Any], seconds: float) -> int:
        """Send a request whose reply this thread will read next; its id.

        The thread is then a reader: it ends its reading with :meth:`done_reading`. A full
        pipe is waited on for at most ``seconds`` (then Stalled).
        """
        with self.lock:
            if self.closed:
                raise Shut("process was stopped")
            self.last_id = msgid = (self.last_id + 1) & MAX_MSGID
            self.running, self.reading = msgid, True
            self.reader.hurried_to = math.inf
            data = self._encode(msgid, method, params)
            try:
                written = os.write(self._write_fd, data)
            except BlockingIOError:
                written = 0
            if written < len(data):  # the pipe is full: wait for room, under the write deadline
                self._write_rest(data, written, seconds)
            return msgid

    def send(self, method: str, params: dict[str, Any], seconds: float) -> int:
        """Send a request nobody waits on (cancel, shutdown): its reply is dropped when read."""
        with self.lock:
            if self.closed:
                raise Shut("process was stopped")
            self.last_id = msgid = (self.last_id + 1) & MAX_MSGID
            self.ignored.add(msgid)  # before writing: the reply may be read at once
            self._write_rest(self._encode(msgid, method, params), 0, seconds)
            return msgid

    def write(self, data: bytes, seconds: float) -> None:
        """Write ``data`` (a frame, not a message) whole, waiting at most ``seconds`` for room."""
        with self.lock:
            if self.closed:  # its fd numbers may belong to someone else's files by now
                raise Shut
            self._write_rest(data, 0, seconds)

    def cancel(self, msgid: int, grace: float) -> bool:
        """Ask the child to cancel ``msgid`` if it is still the call being read, and hurry its reader.

        The reading thread's wait then ends ``grace`` seconds from now at the latest. A
        cancel of a call that has ended does nothing, and returns False.
        """
        with self.lock:  # request() takes it too: a new call cannot slip in between
            if self.closed or msgid != self.running:
                return False
            hurry_to = time.monotonic() + grace
            self.send("cancel", {"id": msgid}, grace)
            self.reader.hurry(hurry_to)  # the reading thread re-reads the now earlier deadline
        return True

    def drop_ignored(self, answered: int | None) -> bool:
        """Whether a response to ``answered`` is one nobody waits for (it is then forgotten)."""
        if answered is not None and answered in self.ignored:
            self.ignored.discard(answered)
            return True
        return False

    def _write_rest(self, data: bytes, written: int, seconds: float) -> None:
        """Write ``data[written:]``, waiting at most ``seconds`` for room in the pipe (the lock held)."""
        view = memoryview(data)[written:]
        deadline = time.monotonic() + seconds
        while view:
            try:
                view = view[os.write(self._write_fd, view) :]
            except BlockingIOError:
                if not self._poll_out.poll(max(0.0, deadline - time.monotonic()) * 1000):
                    raise Stalled from None

    # -- reading and the fds' lifetime -------------------------------------------------------

    def begin_reading(self) -> None:
        """Become the reading thread (without a request: the handshake); Shut if closed."""
        with self.lock:  # close() takes it too: either it sees us reading, or we see it closed
            if self.closed:
                raise Shut
            self.reading = True

    def done_reading(self) -> None:
        """The reading thread is out of poll() and read(): if the channel closed meanwhile, free its fds.

        Inlined on the per-call path (Connection.call); the order matters: ``reading`` is
        cleared before ``closed`` is read, and close() sets ``closed`` before it reads ``reading``.
        """
        self.reading = False
        if self.closed:
            self.release()

    def close(self) -> None:
        """Close the child's input (it sees EOF) and refuse every later write; safe to call twice."""
        with self.lock:
            self.closed = True
            close_quietly(self._stdin)  # no writer is inside: they all hold the lock and look at closed

    def release_if_idle(self) -> None:
        """After :meth:`close`: free the fds now, unless a thread is reading (then it does, on its way out)."""
        if not self.reading:  # once closed, nobody sets it again
            self.release()

    def release(self) -> None:
        """Close the child's output, the reader's wake pipe, and then whatever ``on_release`` closes; once."""
        with self.lock:  # cancel() writes to the wake pipe under this lock
            if self._released:
                return
            self._released = True
            close_quietly(self._stdout)
            self.reader.close()
        if self._on_release is not None:
            self._on_release()


def close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except OSError:
        pass
