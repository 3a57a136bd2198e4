"""One live plugin process: the handshake, requests with deadlines, streams and cancel.

Every byte from the child is untrusted: messages are size-capped, shape-checked and
matched to the request that is waiting for them. Foreign exceptions (OSError,
ProtocolViolation) are translated into the runner's error tree here and nowhere else.
Any failure that leaves the stream in doubt kills the process: a Connection is then
dead for good, and the owner starts a new one.
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runner import process
from runner.calls import CancelToken
from runner.cgroup import Cage
from runner.config import PluginConfig
from runner.constants import REPORT_LENGTH_BYTES
from runner.egress import Egress, EgressPolicy, EgressUse
from runner.endpoints import Endpoint
from runner.errors import (
    PluginCancelled,
    PluginCrashed,
    PluginError,
    PluginLoadError,
    PluginProtocolError,
    PluginRaised,
    PluginResultError,
    PluginStartError,
    PluginStartTimeout,
    PluginTimeout,
    PluginUnavailable,
)  # fmt: skip
from runner.handshake import MAX_REPORT, check_hello, parse_report, start_failure
from runner.process import describe_exit
from runner.protocol import (
    MAX_MSGID,
    NO_REPLY,
    Encoder,
    Message,
    ProtocolViolation,
    WrongReply,
    check_response,
    chunk_of,
    is_notification,
    reply_to,
    response_id,
    source_frame,
)
from runner.reader import Closed, Reader, TimedOut
from runner.stderr import StderrCapture, last_line

__all__ = ["Connection"]

_NEVER = math.inf

#: Told about each network connection a plugin made or was refused: (event, details).
Emit = Callable[[str, dict[str, Any]], None]


def _broker(config: PluginConfig, emit: Emit | None) -> Egress | None:
    sandbox = config.sandbox
    if not sandbox.brokered:
        return None
    endpoints = tuple(e for e in sandbox.endpoints if isinstance(e, Endpoint))  # all of them: parsed at construction
    policy = EgressPolicy(endpoints, sandbox.proxies, sandbox.connect_timeout)
    return Egress(config.name, policy, emit)


class Connection:
    """A started plugin child and the protocol spoken with it; one caller at a time."""

    def __init__(self, config: PluginConfig, root: Path, emit: Emit | None = None) -> None:
        self.config = config
        self.name = config.name
        self.hello: dict[str, Any] = {}
        self.started_at = time.monotonic()
        try:
            config.scratch_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PluginStartError(self.name, f"cannot create its scratch directory {config.scratch_dir}: {exc.strerror}") from None
        limits = config.sandbox.limits
        cage = process.cage_for(self.name, limits.tasks, limits.memory)
        self.cage: Cage | None = cage if not isinstance(cage, str) else None
        self.cage_missing = cage if isinstance(cage, str) else ""  # why there is none, for health
        self.egress = _broker(config, emit)
        try:
            fds = (self.egress.child_fd,) if self.egress else ()
            argv = config.child_argv(root, caged=self.cage is not None, egress_fd=fds[0] if fds else None)
            self._proc = process.spawn(argv, config.env, os.fspath(config.scratch_dir), self.cage, pass_fds=fds)
        except OSError as exc:
            if self.cage is not None:
                self.cage.close()
            if self.egress:
                self.egress.close()
            raise PluginStartError(self.name, f"could not be started: {exc}") from exc
        self.pid = self._proc.pid
        try:
            self._wire(config)
        except BaseException:  # a Ctrl-C between the spawn and a usable connection: nobody would own the process
            process.kill(self._proc, self.cage)
            if self.egress:
                self.egress.close()
            raise
        self._encode_request = Encoder().request  # one reused Packer; requests are packed under the write lock
        self._write_lock = threading.RLock()  # also guards the reader's wake pipe against close
        self._next_id = 0
        self._ignored: set[int] = set()  # ids whose responses nobody waits for (cancel)
        self._stopping = False
        self._doing = "start"  # what the child is busy with, for error messages
        self._running: int | None = None  # the id of the call being read, the only one cancel() may hit
        # The thread reading the child's output may be inside poll() when another thread
        # kills the process: the fds that reader uses are closed only once it is out, or a
        # reused fd number could be read (or drained) in someone else's file.
        self._reading = False
        self._released = False
        self.dead = False
        self._call_began = 0.0

    def _wire(self, config: PluginConfig) -> None:
        """The host's ends of the new child: broker, stderr reader, request pipe, reply reader."""
        if self.egress:
            self.egress.close_child_end()  # the child has its own copy: EOF reaches the broker when it dies
            self.egress.start()
        self._stderr = StderrCapture(self.name, self._proc.stderr, config.log_path)  # type: ignore[arg-type]
        self._write_fd = self._proc.stdin.fileno()  # type: ignore[union-attr]
        os.set_blocking(self._write_fd, False)  # a child that stops reading must not hang us
        self._reader = Reader(self._proc.stdout.fileno(), config.max_message)  # type: ignore[union-attr]
        self._poll_out = select.poll()  # used only when the child's input pipe is full
        self._poll_out.register(self._write_fd, select.POLLOUT)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """True until a stop or kill begins: a dying process takes no new request."""
        return not (self.dead or self._stopping)

    def handshake(self, code: bytes) -> dict[str, Any]:
        """Send the plugin's ``code``, wait for the child's hello and check it.

        Raises a PluginStartError on any problem.
        """
        seconds = self.config.deadlines.start
        deadline = time.monotonic() + seconds
        report = None
        with self._write_lock:  # kill() takes it too: either it saw us reading, or we see it dead
            if self.dead:
                raise PluginUnavailable(self.name, "was stopped during start", reason="stopped")
            self._reading = True
        try:
            with self._write_lock:
                self._write_rest(source_frame(code), 0, "start", seconds)
            report = self._read_report(deadline, seconds)
            message = self._next_message(deadline, "start", seconds)
        except PluginTimeout:
            raise PluginStartTimeout(
                self.name, f"sent no hello within {seconds:g}s", seconds=seconds, stderr_tail=self.stderr_tail()
            ) from None
        except PluginCrashed as exc:
            raise start_failure(self.name, exc, reported=report is not None) from None
        except PluginProtocolError as exc:
            raise PluginStartError(self.name, f"sent a bad hello: {exc.message}", stderr_tail=self.stderr_tail()) from None
        finally:
            self._done_reading()
        try:
            hello = check_hello(self.name, message, self.stderr_tail())
        except PluginLoadError:
            self.close()  # it reported its own failure and is exiting: let it
            raise
        except PluginStartError:
            self.kill()
            raise
        # The host's own facts replace whatever the hello claimed: plugin code may have sent it.
        self.hello = {**hello, "pid": self.pid, "sandbox": report}
        return self.hello

    def _read_report(self, deadline: float, seconds: float) -> dict[str, Any]:
        """Read the child's first frame, its sandbox report; what follows it goes to the decoder."""
        head, buffered, size = REPORT_LENGTH_BYTES, b"", MAX_REPORT  # the size is known once its head is in
        while len(buffered) < head + size:
            try:
                data = self._reader.wait_and_read(deadline)
            except TimedOut:
                raise self._timed_out(deadline, "start", seconds) from None
            if data == b"":
                raise self._crashed("start")
            buffered += data or b""
            if len(buffered) >= head:
                size = int.from_bytes(buffered[:head], "big")
                if size > MAX_REPORT:
                    self.kill()
                    raise PluginStartError(self.name, "sent an oversized sandbox report")
        try:
            report = parse_report(self.name, buffered[head : head + size], self.config.sandbox.profile)
            self._reader.feed(buffered[head + size :])
        except PluginStartError:
            self.kill()
            raise
        except ProtocolViolation as exc:
            self.kill()
            raise PluginStartError(self.name, f"sent a bad hello: broke the protocol: {exc}") from None
        return report

    def close(self) -> int | None:
        """Stop politely: shutdown request, then SIGTERM, then SIGKILL, each bounded."""
        if self.dead:
            return self._proc.returncode
        self._stopping = True
        grace = self.config.deadlines.stop_grace
        try:
            self._send("shutdown", {}, grace)
            self._proc.stdin.close()  # type: ignore[union-attr]
        except (OSError, PluginError):
            pass
        code = process.stop(self._proc, grace, self.cage)
        self._finish()
        return code

    def kill(self) -> None:
        """Kill the process group at once; safe to call twice and from any thread."""
        self._stopping = True
        if not self.dead:
            process.kill(self._proc, self.cage)
            self._finish()

    def _finish(self) -> None:
        with self._write_lock:
            if self.dead:
                return
            self.dead = True
            reading = self._reading
            _close_quietly(self._proc.stdin)  # no writer is inside: they all hold this lock and look at dead
        self._stderr.join(0.5)
        _close_quietly(self._proc.stderr)  # the capture thread reads a duplicate of its own
        if not reading:
            self._release()

    def _done_reading(self) -> None:
        """The reading thread is out of poll() and read(): if the process died meanwhile, free its fds."""
        self._reading = False
        if self.dead:  # read after the write above; _finish reads them the other way round
            self._release()

    def _release(self) -> None:
        with self._write_lock:  # cancel() writes to the wake pipe under this lock
            if self._released:
                return
            self._released = True
            _close_quietly(self._proc.stdout)
            self._reader.close()
        if self.egress:
            self.egress.close()

    def network_use(self, flush: bool = False) -> EgressUse:
        """What this process did with the network (nothing, outside the network profile).

        ``flush``: first wait (briefly) until its events have reached the listener.
        """
        if self.egress is None:
            return EgressUse()
        if flush:
            self.egress.flush(10.0)  # at most 200 events a process, each a commit: seconds on a slow disk
        return self.egress.use()

    def stderr_tail(self, lines: int = 5) -> tuple[str, ...]:
        return self._stderr.tail(lines)

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
        key = 0
        try:
            msgid = self._request(method, params)
            if cancel is not None:
                key = cancel._watch(lambda: self.cancel(msgid))
            fresh = deadline is None  # the deadline is set just now: the first read skips the clock
            if deadline is None:
                deadline = time.monotonic() + seconds
            while True:
                message = self._next_message(deadline, phase, seconds, fresh)
                fresh = False
                result = reply_to(message, msgid)
                if result is not NO_REPLY and msgid not in self._ignored:
                    self._running = None
                    return result  # the common case: our own reply, no error
                if is_notification(message) or self._drop_ignored(message):
                    continue  # a chunk of a cancelled stream, or the reply to a cancel
                self._running = None
                return self._result(method, message, msgid)
        finally:
            if key:
                cancel._unwatch(key)  # type: ignore[union-attr]
            self._reading = False  # _done_reading(), inlined on the hot path
            if self.dead:
                self._release()

    def stream(
        self, method: str, params: dict[str, Any], total_at: float | None = None, cancel: CancelToken | None = None
    ) -> Iterator[str]:
        """Send a streaming request and yield its text under the three generation deadlines.

        First chunk counts from the request, idle from the last chunk with text, total
        from ``total_at`` (the call's start; default: the request). Nothing else that
        arrives (an unknown notification, the reply to a cancel) moves any of them.
        """
        d = self.config.deadlines
        key = 0
        received = 0  # characters so far: the caller keeps the text, the runner only counts it
        cap = self.config.max_reply
        finished = False
        try:
            msgid = self._request(method, params)
            if cancel is not None:
                key = cancel._watch(lambda: self.cancel(msgid))
            now = time.monotonic()
            total_at = now + d.total if total_at is None else total_at
            wait_at, phase, seconds = now + d.first_chunk, "first_chunk", d.first_chunk
            while True:
                if wait_at < total_at:
                    message = self._next_message(wait_at, phase, seconds)
                else:
                    message = self._next_message(total_at, "total", d.total)
                try:
                    text = chunk_of(message, msgid)
                except WrongReply as exc:
                    self.kill()
                    raise PluginProtocolError(self.name, str(exc)) from None
                if text is not None:
                    if text:
                        received += len(text)
                        if received > cap:
                            finished = True
                            self.kill()
                            raise PluginProtocolError(self.name, f"sent a reply longer than its limit of {cap:,} characters (max_reply)")
                        wait_at, phase, seconds = time.monotonic() + d.idle, "idle", d.idle
                        yield text
                    continue
                if is_notification(message) or self._drop_ignored(message):
                    continue  # an unknown notification, or the reply to a cancel
                finished = True
                self._running = None
                self._result(method, message, msgid)
                return
        except PluginCancelled as exc:
            finished = True
            exc.chars = received
            raise
        finally:
            if key:
                cancel._unwatch(key)  # type: ignore[union-attr]
            if not finished and not self.dead and self._running is not None:
                self._abandon(self._running)  # the consumer stopped early (Ctrl-C, break): cancel it
            self._running = None
            self._done_reading()

    def cancel(self, msgid: int) -> bool:
        """Ask the child to cancel request ``msgid`` if it is still the call being read; any thread.

        That call must then end within ``cancel_grace`` seconds, or the process is killed.
        A cancel of a call that has ended does nothing, and returns False.
        """
        grace = self.config.deadlines.cancel_grace
        with self._write_lock:  # _request() takes it too: a new call cannot slip in between
            if self.dead or msgid != self._running:
                return False
            hurry_to = time.monotonic() + grace
            try:
                self._send("cancel", {"id": msgid}, grace)
            except PluginError:
                pass  # the process is gone: the reader finds out by itself
            if not self.dead:
                self._reader.hurry(hurry_to)  # the reading thread re-reads the now earlier deadline
        return True

    def _abandon(self, msgid: int) -> None:
        self.cancel(msgid)
        grace = self.config.deadlines.cancel_grace
        deadline = time.monotonic() + grace
        try:
            while True:
                message = self._next_message(deadline, "cancel", grace)
                if not self._drop_ignored(message) and response_id(message) == msgid:
                    return
        except PluginError:
            self.kill()  # it ignored the cancel: the process goes, the next call starts a fresh one
        except BaseException:
            self.kill()  # a second Ctrl-C while draining: the stream is in doubt, so start afresh
            raise

    def _drop_ignored(self, message: Message) -> bool:
        answered = response_id(message)  # a request bearing that id is not a reply
        if answered is not None and answered in self._ignored:
            self._ignored.discard(answered)
            return True
        return False

    def _result(self, method: str, message: Message, msgid: int) -> Any:
        try:
            error, result = check_response(message, msgid)
        except ProtocolViolation as exc:
            self.kill()
            raise PluginProtocolError(self.name, str(exc)) from None
        if error is not None:
            raise self._remote_error(error)
        return result

    def _remote_error(self, error: dict[str, str]) -> PluginError:
        kind, type_, text = error.get("kind", "plugin"), error["type"], error["message"]
        if kind == "contract":
            return PluginResultError(self.name, text)
        if kind == "cancelled":
            return PluginCancelled(self.name, "reply was cancelled")
        if kind in ("request", "busy"):
            return PluginProtocolError(self.name, f"rejected the request: {type_}: {text}")
        use = self.network_use()  # the host's own record: which connection it refused during this call
        refused = use.last_refused if use.last_refused and use.last_refused_at >= self._call_began else ""
        return PluginRaised(self.name, f"raised {type_}: {text}" if text else f"raised {type_}", remote_type=type_,
                            remote_traceback=error.get("traceback", ""), refused=refused)  # fmt: skip

    # -- the wire --------------------------------------------------------------------------

    def _request(self, method: str, params: dict[str, Any]) -> int:
        """Send a request whose reply the caller will wait for; return its id."""
        with self._write_lock:
            if self.dead:
                raise PluginUnavailable(self.name, "process was stopped", reason="stopped")
            self._next_id = msgid = (self._next_id + 1) & MAX_MSGID
            self._doing, self._running, self._reading = method, msgid, True
            if self.egress is not None:
                self._call_began = time.monotonic()  # refusals after this belong to this call
            self._reader.hurried_to = _NEVER
            data = self._encode_request(msgid, method, params)
            try:
                written = os.write(self._write_fd, data)
            except BlockingIOError:
                written = 0
            except OSError:
                self._fail_locked(self._crashed(method))
            if written < len(data):  # the pipe is full: wait for room, under the write deadline
                self._write_rest(data, written, method, self.config.deadlines.first_chunk)
            return msgid

    def _send(self, method: str, params: dict[str, Any], seconds: float) -> int:
        """Send a request nobody waits on (cancel, shutdown): its reply is dropped when read."""
        with self._write_lock:
            if self.dead:
                raise PluginUnavailable(self.name, "process was stopped", reason="stopped")
            self._next_id = msgid = (self._next_id + 1) & MAX_MSGID
            self._ignored.add(msgid)  # before writing: the reply may be read at once
            self._write_rest(self._encode_request(msgid, method, params), 0, method, seconds)
            return msgid

    def _write_rest(self, data: bytes, written: int, method: str, seconds: float) -> None:
        """Write ``data[written:]``, waiting at most ``seconds`` for room in the pipe."""
        view = memoryview(data)[written:]
        deadline = time.monotonic() + seconds
        if self.dead:  # its fd numbers may belong to someone else's files by now
            raise PluginUnavailable(self.name, f"was stopped during {method}", reason="stopped")
        while view:
            try:
                view = view[os.write(self._write_fd, view) :]
            except BlockingIOError:
                if not self._poll_out.poll(max(0.0, deadline - time.monotonic()) * 1000):
                    self._fail_locked(PluginTimeout(self.name, f"stopped reading its input during {method}", phase="write"))
            except OSError:
                self._fail_locked(self._crashed(method))

    def _fail_locked(self, error: PluginError) -> None:
        process.kill(self._proc, self.cage)
        self._finish()
        raise error

    def _next_message(self, deadline: float, phase: str, seconds: float, fresh: bool = False) -> Message:
        """The next message from the child, under ``deadline`` (and a cancel's grace); see Reader.next."""
        try:
            return self._reader.next(deadline, fresh)
        except TimedOut:
            raise self._timed_out(deadline, phase, seconds) from None
        except Closed:
            raise self._crashed(self._doing) from None
        except ProtocolViolation as exc:
            self.kill()
            raise PluginProtocolError(self.name, f"broke the protocol: {exc}", stderr_tail=self.stderr_tail()) from None

    def _timed_out(self, deadline: float, phase: str, seconds: float) -> PluginError:
        self.kill()
        if self._reader.hurried_to <= deadline:
            grace = self.config.deadlines.cancel_grace
            return PluginCancelled(self.name, f"ignored a cancel for {grace:g}s and was stopped")
        what = {"start": "starting", "cancel": "ending a cancelled call"}.get(phase, f"the {phase.replace('_', ' ')} deadline")
        return PluginTimeout(
            self.name, f"timed out after {seconds:g}s ({what})", phase=phase, seconds=seconds, stderr_tail=self.stderr_tail()
        )

    def _crashed(self, during: str) -> PluginError:
        if self._stopping:
            return PluginUnavailable(self.name, f"was stopped during {during}", reason="stopped")
        try:
            self._proc.wait(timeout=self.config.deadlines.stop_grace)
        except Exception:
            pass
        code = self._proc.returncode
        over_memory = self.cage is not None and self.cage.oom_killed()  # read before the cage goes
        process.kill(self._proc, self.cage)  # its descendants, and the leader if it closed stdout but lives
        self._finish()
        code = self._proc.returncode if code is None else code
        exit_code, sig = (None, -code) if code is not None and code < 0 else (code, None)
        tail = self.stderr_tail()
        how = describe_exit(exit_code, sig)
        if over_memory:
            how = f"was killed by the kernel for going over its memory limit ({self.config.sandbox.limits.memory // 2**20} MiB)"
        return PluginCrashed(self.name, f"{how} during {during}{last_line(tail)}", exit_code=exit_code, signal=sig, stderr_tail=tail)


def _close_quietly(stream: Any) -> None:
    try:
        stream.close()
    except OSError:
        pass
