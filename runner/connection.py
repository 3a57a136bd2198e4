"""One live plugin process: the handshake, requests with deadlines, streams and cancel.

Every byte from the child is untrusted: messages are size-capped, shape-checked and
matched to the request that is waiting for them. Foreign exceptions (OSError, the
channel's and the protocol's signals) are caught at one boundary, the except clause of
each public method, and translated by the one table in runner/failures.py.

A connection ends one way, :meth:`Connection.kill` (the poison path): the process group
and cage are killed, the connection is marked dead, the child's input is closed, the
channel's fds are freed once no thread reads them, and the owner is told (once). A polite
:meth:`~Connection.close` asks first and ends the same way. A dead connection stays dead:
the owner starts a new one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runner import process
from runner.calls import CancelToken
from runner.channel import Channel, Shut, Stalled, close_quietly
from runner.config import PluginConfig
from runner.constants import REPORT_LENGTH_BYTES
from runner.egress import EgressUse
from runner.errors import PluginCancelled, PluginError, PluginLoadError, PluginProtocolError, PluginStartError
from runner.failures import CAUGHT, Step, remote_error, translate
from runner.handshake import MAX_REPORT, check_hello, parse_report
from runner.launch import Emit, launch
from runner.protocol import NO_REPLY, Message, check_response, chunk_of, is_notification, reply_to, response_id, source_frame
from runner.reader import Closed
from runner.stderr import StderrCapture

__all__ = ["Connection"]


class Connection:
    """A started plugin child and the protocol spoken with it; one caller at a time."""

    def __init__(
        self, config: PluginConfig, root: Path, emit: Emit | None = None, on_end: Callable[[Connection], None] | None = None
    ) -> None:
        """Spawn the child (PluginStartError if it cannot be); ``on_end`` is told, once, when it stops being usable."""
        self.config = config
        self.name = config.name
        self.hello: dict[str, Any] = {}
        self.report: dict[str, Any] | None = None  # the child's sandbox report, once read
        self.started_at = time.monotonic()
        launched = launch(config, root, emit)
        self._proc, self.cage, self.cage_missing, self.egress = launched
        self.pid = self._proc.pid
        try:
            self._stderr = StderrCapture(self.name, self._proc.stderr, config.log_path)  # type: ignore[arg-type]
            egress = self.egress
            self._channel = Channel(self._proc.stdin, self._proc.stdout, config.max_message, egress.close if egress else None)  # type: ignore[arg-type]
        except BaseException:  # a Ctrl-C between the spawn and a usable connection: nobody would own the process
            process.kill(self._proc, self.cage)
            if self.egress:
                self.egress.close()
            raise
        self._on_end = on_end
        self._told = False
        self.stopping = False  # a stop or kill began: an EOF from now on is no crash
        self.dead = False  # the process is gone: killed or stopped, and reaped
        self._call_began = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """True until a stop or kill begins: a dying process takes no new request."""
        return not (self.dead or self.stopping)

    def handshake(self, code: bytes) -> dict[str, Any]:
        """Send the plugin's ``code``, wait for the child's hello and check it.

        Raises a PluginStartError on any problem.
        """
        seconds = self.config.deadlines.start
        step = Step("start", "start", seconds, time.monotonic() + seconds)
        channel = self._channel
        try:
            channel.begin_reading()
            try:
                channel.write(source_frame(code), seconds)
                self.report = self._read_report(step.deadline)
                message = channel.next(step.deadline)
            finally:
                channel.done_reading()
        except CAUGHT as exc:
            raise translate(self, exc, step) from None
        try:
            hello = check_hello(self.name, message, self.stderr_tail())
        except PluginLoadError:
            self.close()  # it reported its own failure and is exiting: let it
            raise
        except PluginStartError:
            self.kill()
            raise
        # The host's own facts replace whatever the hello claimed: plugin code may have sent it.
        self.hello = {**hello, "pid": self.pid, "sandbox": self.report}
        return self.hello

    def _read_report(self, deadline: float) -> dict[str, Any]:
        """Read the child's first frame, its sandbox report; what follows it goes to the decoder."""
        reader = self._channel.reader
        head, buffered, size = REPORT_LENGTH_BYTES, b"", MAX_REPORT  # the size is known once its head is in
        while len(buffered) < head + size:
            data = reader.wait_and_read(deadline)
            if data == b"":
                raise Closed
            buffered += data or b""
            if len(buffered) >= head:
                size = int.from_bytes(buffered[:head], "big")
                if size > MAX_REPORT:
                    self.kill()
                    raise PluginStartError(self.name, "sent an oversized sandbox report")
        try:
            report = parse_report(self.name, buffered[head : head + size], self.config.sandbox.profile)
        except PluginStartError:
            self.kill()
            raise
        reader.feed(buffered[head + size :])
        return report

    def close(self) -> int | None:
        """Stop politely: shutdown request, then SIGTERM, then SIGKILL, each bounded; safe to call twice."""
        if self.dead:
            return self._proc.returncode
        self._stop_begins()
        grace = self.config.deadlines.stop_grace
        try:
            self._channel.send("shutdown", {}, grace)
        except Shut:
            pass  # killed meanwhile
        except (OSError, Stalled):
            self.kill()  # it cannot even be asked: force
        self._channel.close()  # EOF: a child between requests exits at once
        code = process.stop(self._proc, grace, self.cage)
        self._finish()
        return code

    def kill(self, *, stopped: bool = True) -> None:
        """The poison path, the one way a connection ends by force; safe to call twice and from any thread.

        The connection stops being usable and its owner is told (once), the process group
        (and cage) is killed, and :meth:`_finish` marks it dead, closes the channel and frees
        the fds once no thread reads them. ``stopped``: the host ends it on purpose (a stop,
        or a failure already decided), so an EOF read after this is "stopped", not a crash;
        False when it failed by itself.
        """
        if stopped:
            self._stop_begins()
        else:
            self._tell_owner()
        if not self.dead:
            process.kill(self._proc, self.cage)
            self._finish()

    def reap(self) -> tuple[int | None, int | None, bool]:
        """After its output ended: give the process a moment to exit by itself, then end it.

        Returns (exit code, signal, whether the kernel killed it for its memory limit).
        """
        try:
            self._proc.wait(timeout=self.config.deadlines.stop_grace)
        except Exception:
            pass
        code = self._proc.returncode
        over_memory = self.cage is not None and self.cage.oom_killed()  # read before the cage goes
        self.kill(stopped=False)  # its descendants, and the leader if it closed stdout but lives
        code = self._proc.returncode if code is None else code
        exit_code, sig = (None, -code) if code is not None and code < 0 else (code, None)
        return exit_code, sig, over_memory

    def _stop_begins(self) -> None:
        self.stopping = True
        self._tell_owner()

    def _tell_owner(self) -> None:
        """The connection just stopped being usable: its owner hears it once, from whichever thread ended it."""
        with self._channel.lock:
            told, self._told = self._told, True
        if not told and self._on_end is not None:
            self._on_end(self)

    def _finish(self) -> None:
        """Mark it dead and close the channel (the process is gone); the fds go once no thread reads them."""
        channel = self._channel
        with channel.lock:
            if self.dead:
                return
            self.dead = True
            channel.close()
        self._tell_owner()
        self._stderr.join(0.5)
        close_quietly(self._proc.stderr)  # the capture thread reads a duplicate of its own
        channel.release_if_idle()

    # -- what the host knows about it ----------------------------------------------------

    def network_use(self, flush: bool = False) -> EgressUse:
        """What this process did with the network (nothing, outside the network profile).

        ``flush``: first wait (briefly) until its events have reached the listener.
        """
        if self.egress is None:
            return EgressUse()
        if flush:
            self.egress.flush(10.0)  # at most 200 events a process, each a commit: seconds on a slow disk
        return self.egress.use()

    def refused_during_call(self) -> str:
        """The endpoint the host refused this process during the current call, as the host saw it; or ""."""
        use = self.network_use()
        return use.last_refused if use.last_refused and use.last_refused_at >= self._call_began else ""

    def stderr_tail(self, lines: int = 5) -> tuple[str, ...]:
        return self._stderr.tail(lines)

    def cancel_hurried(self, deadline: float) -> bool:
        """Whether a cancel brought the end of a wait for ``deadline`` forward (its grace ran out first)."""
        return self._channel.reader.hurried_to <= deadline

    # -- calls -------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        params: dict[str, Any],
        seconds: float,
        phase: str,
        deadline: float | None = None,
        cancel: CancelToken | None = None,
    ) -> Any:
        """Send one request and return its result, or raise the matching PluginError.

        The call must end by the monotonic time ``deadline`` (default: ``seconds`` from
        now); ``seconds`` is the deadline's length, for the error. ``cancel`` cancels it.
        """
        channel = self._channel
        key = 0
        try:
            if self.egress is not None:
                self._call_began = time.monotonic()  # refusals after this belong to this call
            msgid = channel.request(method, params, self.config.deadlines.first_chunk)
            if cancel is not None:
                key = cancel._watch(lambda: self.cancel(msgid))
            fresh = deadline is None  # the deadline is set just now: the first read skips the clock
            if deadline is None:
                deadline = time.monotonic() + seconds
            while True:
                message = channel.next(deadline, fresh)
                fresh = False
                result = reply_to(message, msgid)
                if result is not NO_REPLY and msgid not in channel.ignored:
                    channel.running = None
                    return result  # the common case: our own reply, no error
                if is_notification(message) or channel.drop_ignored(response_id(message)):
                    continue  # a chunk of a cancelled stream, or the reply to a cancel
                channel.running = None
                return self._result(message, msgid)
        except CAUGHT as exc:
            raise translate(self, exc, Step(method, phase, seconds, math.inf if deadline is None else deadline)) from None
        finally:
            if key:
                cancel._unwatch(key)  # type: ignore[union-attr]
            channel.reading = False  # Channel.done_reading(), inlined on the per-call path
            if channel.closed:
                channel.release()

    def stream(
        self, method: str, params: dict[str, Any], total_at: float | None = None, cancel: CancelToken | None = None
    ) -> Iterator[str]:
        """Send a streaming request and yield its text under the three generation deadlines.

        First chunk counts from the request, idle from the last chunk with text, total
        from ``total_at`` (the call's start; default: the request). Nothing else that
        arrives (an unknown notification, the reply to a cancel) moves any of them.
        """
        d, channel = self.config.deadlines, self._channel
        key = received = 0  # characters so far: the caller keeps the text, the runner only counts it
        cap = self.config.max_reply
        finished = False
        phase, seconds, until = "first_chunk", d.first_chunk, math.inf
        try:
            try:
                if self.egress is not None:
                    self._call_began = time.monotonic()
                msgid = channel.request(method, params, d.first_chunk)
                if cancel is not None:
                    key = cancel._watch(lambda: self.cancel(msgid))
                now = time.monotonic()
                total_at = now + d.total if total_at is None else total_at
                wait_at = now + d.first_chunk
                while True:
                    if wait_at < total_at:
                        until = wait_at
                    else:
                        until, phase, seconds = total_at, "total", d.total
                    message = channel.next(until)
                    text = chunk_of(message, msgid)
                    if text is not None:
                        if text:
                            received += len(text)
                            if received > cap:
                                finished = True
                                raise self._too_long(cap)
                            wait_at, phase, seconds = time.monotonic() + d.idle, "idle", d.idle
                            yield text
                        continue
                    if is_notification(message) or channel.drop_ignored(response_id(message)):
                        continue  # an unknown notification, or the reply to a cancel
                    finished = True
                    channel.running = None
                    self._result(message, msgid)
                    return
            except CAUGHT as exc:
                finished = True
                raise translate(self, exc, Step(method, phase, seconds, until)) from None
        except PluginCancelled as exc:
            finished = True
            exc.chars = received
            raise
        finally:
            if key:
                cancel._unwatch(key)  # type: ignore[union-attr]
            if not finished and not self.dead and channel.running is not None:
                self._abandon(channel.running)  # the consumer stopped early (Ctrl-C, break): cancel it
            channel.running = None
            channel.done_reading()

    def cancel(self, msgid: int) -> bool:
        """Ask the child to cancel request ``msgid`` if it is still the call being read; any thread.

        That call must then end within ``cancel_grace`` seconds, or the process is killed.
        A cancel of a call that has ended does nothing, and returns False.
        """
        grace = self.config.deadlines.cancel_grace
        try:
            return self._channel.cancel(msgid, grace)
        except CAUGHT as exc:  # it could not be told: it goes, and the reading thread finds out by itself
            translate(self, exc, Step("cancel", "cancel", grace, math.inf))
            return True

    def _abandon(self, msgid: int) -> None:
        """Cancel the stream its consumer left, and drain it until its reply (within the grace)."""
        self.cancel(msgid)
        channel = self._channel
        deadline = time.monotonic() + self.config.deadlines.cancel_grace
        try:
            while True:
                answered = response_id(channel.next(deadline))
                if not channel.drop_ignored(answered) and answered == msgid:
                    return
        except CAUGHT:
            self.kill()  # it ignored the cancel: the process goes, the next call starts a fresh one
        except BaseException:
            self.kill()  # a second Ctrl-C while draining: the stream is in doubt, so start afresh
            raise

    def _too_long(self, cap: int) -> PluginError:
        self.kill()  # the rest of the reply is still coming: the stream is in doubt
        return PluginProtocolError(self.name, f"sent a reply longer than its limit of {cap:,} characters (max_reply)")

    def _result(self, message: Message, msgid: int) -> Any:
        """The result of a response to ``msgid``; the child's own error raised; WrongReply for any other message."""
        error, result = check_response(message, msgid)
        if error is not None:
            raise remote_error(self, error)
        return result
