"""Capture of a plugin's stderr: drained under a budget, kept as a bounded tail, logged to a file.

Plugin output is hostile input. The capture keeps it raw but bounded (lines of at most
4096 bytes, the newest 40 in the tail); it is made safe for a terminal where it is read,
with the one sanitiser (runner/cleantext.py): :meth:`StderrCapture.tail` cleans what it
returns, and the log file (runner/logfile.py) cleans each line it writes.

It is hostile in volume too, so the reader drains the pipe under a budget: a token
bucket, 64 KiB/s sustained and a burst of 256 KiB by default. Past it the reader stops
reading until the bucket refills; the pipe (64 KiB) fills and the plugin's next write
blocks, so the back pressure falls on the plugin, whose thread then sleeps in write(2),
and not on the host's CPU. What is read is not thrown away; the log says, in a summary
line, how long reading was paused (and how much was dropped, see below).

The budget counts what the host spends (runner/linecost.py): a line costs its bytes
plus 32, so a flood of empty lines costs no less than one of long lines; and reads are
at least 10 ms apart, so a plugin writing a byte at a time is read in blocks, not a byte
at a time. Lines are split a block at a time, and a block is logged with one write.

While reading is paused the tail is as current as what has been read: a pipe's worth
(64 KiB) behind the plugin at most. When the last writer is gone (the plugin exited,
crashed or was killed) the rest of the pipe is read at once, since it can no longer
grow: the tail gets all of it, so a crashed plugin's tail shows its last lines; the log
gets its newest lines up to a burst's worth (256 KiB of cost), and the older ones beyond
that (only a pipe full of very short lines goes over) count as dropped. So do bytes
still unread when the host closes the stream under a paused reader.
"""

from __future__ import annotations

import collections
import fcntl
import math
import os
import select
import struct
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from runner import linecost
from runner.cleantext import clean_lines
from runner.constants import LOG_HOST
from runner.constants import READ_SIZE as _READ
from runner.linecost import LINE_COST, whole_line
from runner.logfile import LogFile, stamp

__all__ = ["BURST", "RATE", "StderrCapture"]

_TAIL_LINES = 40

#: The default budget: bytes per second sustained, and the burst read at once after a quiet spell.
RATE = 64 * 1024
BURST = 256 * 1024
_GAP = 0.01  # under a budget, the least time between two reads: at most 100 reads a second
_MIN_BURST = 4096  # a burst covers at least one line of the longest
_SLICE = 0.25  # the longest a paused reader sleeps before it looks again (a closed stream, the clock)
_REPORT_EVERY = 10.0  # while a flood lasts, a summary line in the log at most this often
_REPORT_PAUSE = 0.1  # pauses shorter than this in all are not worth a line in the log
_LAST_WORDS = 256 * 1024  # what the log takes at once (or a burst, if larger) of a pipe nobody writes to
_DRAIN_MAX = 4 << 20  # reading a pipe nobody writes to at once stops here (a pipe holds 1 MiB at most, by default)
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


def _size(n: float) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n:.0f} B"


class StderrCapture:
    """Reads one plugin's stderr on a daemon thread until EOF, within a budget.

    ``rate`` (bytes per second, sustained; None: no budget) and ``burst`` (bytes read at
    once after a quiet spell) set the budget. Lines longer than 4096 bytes are split.
    Counters are read with :meth:`stats`, and waited for with :meth:`wait_for`.
    """

    def __init__(self, name: str, stream: IO[bytes], log_path: Path | None, *, rate: float | None = RATE, burst: int = BURST) -> None:
        if rate is not None and not rate > 0:
            raise ValueError(f"rate must be positive or None, not {rate!r}")
        if burst < _MIN_BURST:
            raise ValueError(f"burst must be at least {_MIN_BURST} bytes, not {burst!r}")
        self.name = name
        self._stream = stream
        self._log = LogFile(log_path)  # opened by the reader thread
        self._rate = math.inf if rate is None else float(rate)
        self._burst = float(burst)
        # a paused reader resumes once it may read this much: at most 4 wake-ups a second
        self._resume = min(self._burst, max(float(_MIN_BURST), self._rate * _SLICE))
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)  # raw lines, bounded
        self._changed = threading.Condition(threading.Lock())  # guards the tail and the counters
        self._read = self._lines = self._dropped = 0
        self._paused_seconds = self._cpu = 0.0
        self._paused = self._done = False
        self._reported_paused = 0.0  # paused seconds the log has told of
        self._reported_at = -math.inf
        self._last_read = -math.inf
        # The reader reads its own duplicate of the pipe's fd: the host may close its stream
        # at any time (it does after a kill) without the fd number being reused under a read.
        try:
            self._fd: int | None = os.dup(stream.fileno())
        except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both of the first two
            self._fd = None  # not a pipe (a test's BytesIO): read the stream; pauses are sleeps
        # Who closes the duplicate: the reader once it has claimed it, else the constructor.
        # A Ctrl-C can interrupt start() after the thread began (start waits for it): then
        # both would close it, and the second close could hit a reused fd number (the
        # chat's epoll fd, once: "Bad file descriptor" ended the chat).
        self._claimed = self._abandoned = False
        self._thread = threading.Thread(target=self._run, name=f"stderr-{name}", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            with self._changed:
                if not self._claimed and self._fd is not None:
                    os.close(self._fd)
                self._abandoned = True
            raise

    # -- for the host -----------------------------------------------------------------------

    def tail(self, lines: int = 5) -> tuple[str, ...]:
        """The newest ``lines`` lines, made safe to show (each cleaned on its own)."""
        with self._changed:
            raw = tuple(self._tail)[-lines:]
        return clean_lines(raw)

    def join(self, timeout: float) -> None:
        """Wait for EOF (every writer gone) up to ``timeout`` seconds."""
        self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        """Counters so far: bytes and lines read, bytes dropped, seconds reading was paused.

        ``paused`` is true while the reader waits for its budget; ``cpu_seconds`` is the
        reader thread's own CPU time (as of its last wake-up); ``done`` once it has ended;
        ``rate`` (None: no budget) and ``burst`` are the budget it reads under.
        """
        with self._changed:
            return self._stats_locked()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> bool:
        """Wait until ``predicate(self.stats())`` holds, at most ``timeout`` seconds; whether it does."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                stats = self._stats_locked()
                left = deadline - time.monotonic()
                if predicate(stats) or left <= 0 or stats["done"]:
                    return predicate(stats)
                self._changed.wait(left)

    def _stats_locked(self) -> dict[str, Any]:
        return {
            "bytes_read": self._read, "lines": self._lines, "bytes_dropped": self._dropped,
            "seconds_paused": self._paused_seconds, "paused": self._paused, "cpu_seconds": self._cpu,
            "done": self._done, "rate": None if self._rate == math.inf else self._rate, "burst": int(self._burst),
        }  # fmt: skip

    # -- the reader thread ------------------------------------------------------------------

    def _claim(self) -> tuple[Callable[[int], bytes], Any] | None:
        """The reader thread takes the pipe: how to read it and a poller for its writers' end; None if abandoned."""
        with self._changed:
            if self._abandoned:
                return None  # the constructor was interrupted and closed the fd itself
            self._claimed = True
        self._log.open()
        fd = self._fd
        read = (lambda n: os.read(fd, n)) if fd is not None else getattr(self._stream, "read1", None) or self._stream.read
        poller = None
        if fd is not None:
            poller = select.poll()
            poller.register(fd, 0)  # no events asked for: poll() reports only that the writers are gone
        return read, poller

    def _run(self) -> None:
        claimed = self._claim()
        if claimed is None:
            return
        read, poller = claimed
        limited = self._rate != math.inf
        last_words = max(self._burst, _LAST_WORDS)
        tokens, last = self._burst, time.monotonic()
        buf = b""  # read, not yet taken: whole lines the budget did not cover yet, then an unfinished line
        try:
            while True:
                gone: bool | None = False
                if limited:
                    now = time.monotonic()
                    tokens, last = min(self._burst, tokens + (now - last) * self._rate), now
                    if tokens < self._resume:
                        gone = self._pause((self._resume - tokens) / self._rate, poller)
                        if gone is None:
                            return  # the host closed its stream while we waited
                        if not gone:
                            continue
                    elif not whole_line(buf):
                        gone = self._rest(poller)
                if gone:  # no writer left: the pipe cannot grow, so read the rest at once
                    if self._drain(buf, read, last_words):
                        buf = b""
                        return
                    buf, tokens = b"", min(tokens, 0.0)  # a writer after all: back under the budget, spent
                    continue
                if not whole_line(buf):
                    try:
                        data = read(min(_READ, int(tokens)) if limited else _READ)
                    except BlockingIOError:
                        data = None
                    if data is None:  # a non-blocking pipe with nothing in it
                        if self._pause(_SLICE, poller, readable=True) is None:
                            return
                        continue
                    if not data:  # EOF: every writer is gone and the pipe is empty
                        self._take(buf)  # a last line with no newline
                        buf = b""
                        return
                    with self._changed:
                        self._read += len(data)
                    buf += data
                    if not whole_line(buf):
                        continue
                cut = linecost.cut(buf, tokens if limited else math.inf)
                lines = self._take(buf[:cut])
                tokens -= cut + LINE_COST * lines
                buf = buf[cut:]
        except (OSError, ValueError):
            return  # the pipe failed under us
        finally:
            self._finish(len(buf))

    def _pause(self, seconds: float, poller: Any, *, readable: bool = False) -> bool | None:
        """Wait up to ``seconds`` (at most a slice) without reading.

        True if every writer is gone, False if not, None if the host closed its stream (what
        was left unread in the pipe then counts as dropped). ``readable``: wait for data
        instead (a non-blocking pipe); that wait is not a pause of the budget's.
        """
        with self._changed:
            self._paused = not readable
            self._changed.notify_all()
        began = time.monotonic()
        wait = min(seconds, _SLICE)
        gone = False
        if poller is None:
            time.sleep(wait)
        else:
            if readable:
                poller.modify(self._fd, select.POLLIN)
            events = poller.poll(wait * 1000)
            if readable:
                poller.modify(self._fd, 0)
            gone = any(ev & _GONE for _, ev in events)
        now = time.monotonic()
        closed = self._stream.closed
        with self._changed:
            if not readable:
                self._paused_seconds += now - began
            if closed:
                self._dropped += self._unread()
            self._cpu = time.thread_time()
            self._paused = False
            self._changed.notify_all()
        if closed:
            return None
        if not readable and now - self._reported_at >= _REPORT_EVERY:
            self._report(now)
        return gone

    def _rest(self, poller: Any) -> bool:
        """Keep reads 10 ms apart, so many small writes are read as one; whether the writers are gone."""
        now = time.monotonic()
        wait = self._last_read + _GAP - now
        if wait > 0:
            if poller is None:
                time.sleep(wait)
            elif any(ev & _GONE for _, ev in poller.poll(wait * 1000)):
                return True
            now = time.monotonic()
        self._last_read = now
        return False

    def _unread(self) -> int:
        """Bytes waiting in the pipe: what is dropped if reading ends now."""
        if self._fd is not None:
            try:
                return int(struct.unpack("i", fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0"))[0])
            except OSError:
                pass
        return 0

    def _drain(self, buf: bytes, read: Callable[[int], bytes], allowance: float) -> bool:
        """Read what is left in a pipe nobody writes to any more, and take it (and ``buf``); whether EOF came.

        All of it reaches the tail; the log gets the newest lines ``allowance`` covers (a
        crash's last words come last), and the older ones count as dropped.
        """
        chunks, size, eof = [buf], 0, False
        while size < _DRAIN_MAX:
            data = read(_READ)
            if not data:
                eof = True
                break
            size += len(data)
            with self._changed:
                self._read += len(data)
            chunks.append(data)
        data = b"".join(chunks)
        start = linecost.cut_from_end(data, allowance)
        if start:
            with self._changed:
                self._dropped += start
            self._tail_only(data[:start])
        self._take(data[start:])
        return eof

    def _tail_only(self, data: bytes) -> None:
        """Lines the log will not get: only the last 40 of them can reach the tail."""
        end = len(data)
        for _ in range(_TAIL_LINES):
            end = data.rfind(b"\n", 0, end - 1) if end > 0 else -1
            if end < 0:
                break
        self._take(data[end + 1 :], log=False)

    def _take(self, chunk: bytes, *, log: bool = True) -> int:
        """Keep the lines of ``chunk`` (whole lines, or a last one) in the tail and log them; how many."""
        if not chunk:
            return 0
        lines = linecost.split(chunk)
        with self._changed:
            self._tail.extend(lines[-_TAIL_LINES:])
            self._lines += len(lines)
            self._cpu = time.thread_time()
            self._changed.notify_all()
        if log:
            self._log.write_lines(self.name, lines)
        return len(lines)

    def _finish(self, left: int) -> None:
        """The reader's end: what it read but did not take counts as dropped; the log is told."""
        if self._fd is not None:
            os.close(self._fd)
        with self._changed:
            self._dropped += left
        self._report(time.monotonic(), final=True)
        self._log.close()
        with self._changed:
            self._cpu = time.thread_time()
            self._done = True
            self._changed.notify_all()

    # -- the log ----------------------------------------------------------------------------

    def _report(self, now: float, *, final: bool = False) -> None:
        """One summary line in the log if reading was paused since the last (or, at the end, bytes dropped)."""
        with self._changed:
            total, dropped = self._paused_seconds, self._dropped
        paused = total - self._reported_paused
        if paused < _REPORT_PAUSE and not (final and dropped):
            return
        self._reported_paused, self._reported_at = total, now
        head = f"{stamp(LOG_HOST)}{self.name}: stderr"
        lost = f"{_size(dropped)} dropped" if dropped else "nothing dropped"
        if self._rate == math.inf:  # no budget, so no pauses: only what the host closed the stream on
            self._log.write(f"{head}: {lost}\n")
            return
        in_all = f" ({total:.1f} s in all)" if total - paused >= 0.05 else ""
        self._log.write(
            f"{head} over budget ({_size(self._rate)}/s, burst {_size(self._burst)}): reading paused {paused:.1f} s{in_all}; {lost}\n"
        )
