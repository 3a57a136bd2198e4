"""Agent server: the per-user process that holds warm plugin processes and serves commands over a unix socket.

``sandchat agent serve`` runs :class:`Agent`. It takes ``agent.lock`` (flock) for its whole
life, so two starters never both listen: the second exits at once. Under the lock a stale
socket (of an agent that died) is removed and a new one bound, mode 0600 in the 0700
directory. Each connection is checked (peer uid, then hellos of the same build and
protocol) and carries one request (see ``app.agent.client``); each runs on a thread.

One :class:`~app.agent.slots.Slot` per plugin name holds its ``runner.Plugin`` and the
digest of the launch decision it was started with; ``app.agent.slots`` serves the calls.
No request for ``idle`` seconds (and none running): every plugin is closed, the socket
removed, and the process exits.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import runner
from app.agent import decision, wire
from app.agent.errordata import error_data
from app.agent.errors import AgentError, VersionMismatch
from app.agent.paths import AgentPaths, ensure_private
from app.agent.peer import ForeignPeer, confinement_difference, require_same_reach
from app.agent.slots import Slots
from app.version import build

if TYPE_CHECKING:
    import subprocess

#: How long a connected client may take to say hello and send its request.
REQUEST_SECONDS = 5.0
#: How long a new agent waits for the lock of one that is leaving (it closes its plugins first).
HANDOVER_SECONDS = 15.0
#: How long the forker has to leave once its standard input closes (then SIGTERM, then SIGKILL).
FORKER_GRACE = 2.0


class AlreadyRunning(AgentError):
    """Another agent holds the lock of this directory."""


class Agent:
    """One user's agent: the listening socket, the warm plugins, the idle clock."""

    def __init__(self, paths: AgentPaths, build: str, idle: float) -> None:
        self.paths = paths
        self.build = build
        self.idle = idle
        self.slots = Slots()
        self.began = time.monotonic()
        self._lock_fd: int | None = None
        self._listener: socket.socket | None = None
        self._busy = 0
        self._last = time.monotonic()  # the end of the last request (or the start)
        self._changed = threading.Condition()
        self._stopping = False
        self._wake: tuple[int, int] | None = None  # a pipe: stop() writes, serve()'s wait returns
        self._forker: subprocess.Popen[bytes] | None = None

    @contextmanager
    def listening(self) -> Iterator[None]:
        """Hold the lock and the socket for the duration; remove the socket (then unlock) on the way out."""
        ensure_private(self.paths)
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._lock(fd)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self._bind()
            self._forker = _start_forker(self.paths)
            try:
                yield
            finally:
                forker, self._forker = self._forker, None
                if forker is not None:
                    runner.stop_companion(forker, FORKER_GRACE)
        finally:
            self._unbind()
            wake, self._wake = self._wake, None
            for end in wake:
                os.close(end)
            self._lock_fd = None
            os.close(fd)  # releases the flock: the next starter may bind

    def _lock(self, fd: int) -> None:
        """Take the lock; if an agent of this build holds it, raise AlreadyRunning; if another build's
        does, wait for it to leave (it does when a client of the build on disk reaches it)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        from app.agent.client import AgentClient

        holder = AgentClient(self.paths, self.build)
        if holder.ask({"op": "status"}) is not None:
            raise AlreadyRunning(f"another agent holds {self.paths.lock}")
        pid = holder.pid()
        if pid is not None and confinement_difference(pid):  # it refused us, and will not leave for us: no handover
            raise AlreadyRunning(f"an agent confined otherwise than this one holds {self.paths.lock}")
        end = time.monotonic() + HANDOVER_SECONDS
        while True:  # a lock held across processes has no wake-up to wait on: look again, briefly
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= end:
                    raise AlreadyRunning(f"another agent holds {self.paths.lock} and did not leave") from None
                time.sleep(0.05)

    def _bind(self) -> None:
        try:
            os.unlink(self.paths.socket)  # under the lock: whatever is there is a dead agent's
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # born 0600: no moment where the socket is open to others
        try:
            listener.bind(os.fspath(self.paths.socket))
        finally:
            os.umask(old)
        listener.listen(16)
        listener.setblocking(False)  # serve() waits in select, never in accept
        self._listener = listener

    def _unbind(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        try:
            os.unlink(self.paths.socket)
        except FileNotFoundError:
            pass
        listener.close()

    def serve(self) -> None:
        """Accept connections until stopped or idle, then close every plugin."""
        listener, wake = self._listener, self._wake
        assert listener is not None and wake is not None, "serve() runs inside listening()"
        try:
            while not self._idle_over():
                # A wait on the listener and the wake pipe, not accept() with a timeout: on Linux a
                # listener shut down under a timed accept() makes it spin until the timeout (minutes).
                ready, _, _ = select.select([listener.fileno(), wake[0]], [], [], self._until_idle())
                if listener.fileno() not in ready:
                    continue  # the idle clock, or stop(): the loop's test says which
                try:
                    sock, _ = listener.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    continue  # no connection after all, or one its client dropped before the accept
                except OSError:
                    break  # the listener failed (no file descriptors left): leave; the next command starts another
                sock.setblocking(True)
                with self._changed:
                    self._busy += 1
                threading.Thread(target=self._connection, args=(sock,), name="agent-connection", daemon=True).start()
        finally:
            self.slots.close()

    def _until_idle(self) -> float:
        with self._changed:
            return max(0.05, self.idle - (time.monotonic() - self._last)) if not self._busy else min(self.idle, 1.0)

    def _idle_over(self) -> bool:
        with self._changed:
            return self._stopping or (not self._busy and time.monotonic() - self._last >= self.idle)

    def stop(self) -> None:
        """End ``serve``: its wait returns at once (safe from a signal handler, and twice)."""
        with self._changed:
            self._stopping = True
        wake = self._wake
        if wake is not None:
            try:
                os.write(wake[1], b"x")
            except OSError:
                pass  # full (already woken) or closed (already out of serve)

    def warm(self, request: dict[str, Any]) -> None:
        """Start a plugin for a launch decision handed over at spawn (by the command that ran it itself)."""
        with self._changed:
            self._busy += 1
        try:
            self.slots.call(request, lambda _frame: None, None)
        except (AgentError, ValueError, runner.PluginError) as exc:
            print(f"agent: could not warm {request.get('name')!r}: {exc}", flush=True)
        finally:
            self._done()

    def _done(self) -> None:
        with self._changed:
            self._busy -= 1
            self._last = time.monotonic()

    def _connection(self, sock: socket.socket) -> None:
        try:
            with sock:
                request = self._greet(sock)
                if request is not None:
                    self._answer(sock, request)
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes this call's cancel watcher: close() alone would not
                except OSError:
                    pass
        finally:
            self._done()

    def _greet(self, sock: socket.socket) -> dict[str, Any] | None:
        """The peer's one request, once it proved to be this user and this build; None otherwise."""
        try:
            require_same_reach(sock)
            sock.settimeout(REQUEST_SECONDS)
            theirs = wire.receive(sock)
            wire.send(sock, wire.hello(self.build))  # ours either way: a client of another build learns why
            wire.check_hello(theirs, self.build)
            request = wire.receive(sock)
            sock.settimeout(None)  # the call's own deadlines bound it from here
            return request
        except (ForeignPeer, VersionMismatch) as exc:
            print(f"agent: refused a connection: {exc}", flush=True)
            if isinstance(exc, VersionMismatch) and build() != self.build:
                print("agent: sandchat's code changed since this agent started: leaving, for an agent of the new code", flush=True)
                self.stop()
            return None
        except AgentError:
            return None  # a peer that left before its request (``agent stop`` reading the pid): nothing to say

    def _answer(self, sock: socket.socket, request: dict[str, Any]) -> None:
        op = request.get("op")
        try:
            if op == "status":
                wire.send(sock, {"type": "status", **self.status()})
            elif op == "forget":
                names = request.get("names")
                closed = self.slots.forget([str(n) for n in names] if isinstance(names, list) else None)
                wire.send(sock, {"type": "done", "closed": closed})
            elif op == "stop":
                wire.send(sock, {"type": "done", "pid": os.getpid()})
                self.stop()
            else:
                self.slots.call(request, lambda frame: wire.send(sock, frame), sock)
        except runner.PluginError as exc:
            _send_quietly(sock, {"type": "error", "error": error_data(exc)})
        except (ValueError, TypeError) as exc:  # a request this agent cannot read: the client's bug, said once
            _send_quietly(sock, {"type": "error", "error": error_data(runner.PluginProtocolError(str(request.get("name")), str(exc)))})
        except AgentError:
            pass  # the client went away: its call was cancelled

    def status(self) -> dict[str, Any]:
        from app.version import version  # ~40 ms, for a person asking

        return {"pid": os.getpid(), "version": version(), "build": self.build, "uptime": round(time.monotonic() - self.began, 3),
                "idle": self.idle, "forker": self._forker_status(), "plugins": self.slots.status()}  # fmt: skip

    def _forker_status(self) -> dict[str, Any] | None:
        """The forker's pid and whether it listens (it does once its modules are loaded), or None."""
        forker = self._forker
        if forker is None or forker.poll() is not None:
            return None
        from app.agent.handoff import SOCKET_NAME

        return {"pid": forker.pid, "ready": (self.paths.directory / SOCKET_NAME).exists()}


def _start_forker(paths: AgentPaths) -> subprocess.Popen[bytes] | None:
    """The forker beside this agent (``app.agent.forker``), or None: commands then run themselves, as before."""
    argv = [sys.executable, "-m", "app.agent.forker", "--dir", os.path.abspath(paths.directory)]
    # From the folder holding app/, whatever this agent's own directory: `-m` puts the working
    # directory first on the module path, and every worker would inherit what it found there.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        return runner.spawn_companion(argv, os.environ, root, os.fspath(paths.log))
    except OSError as exc:
        print(f"agent: cannot start the forker: {exc}", flush=True)
        return None


def _send_quietly(sock: socket.socket, frame: dict[str, Any]) -> None:
    try:
        wire.send(sock, frame)
    except AgentError:
        pass


def read_warm_file(path: Path) -> dict[str, Any] | None:
    """The launch decision a starter left for the agent (then deleted: it holds keys), or None."""
    try:
        with open(path, "rb") as f:
            body = f.read(wire.MAX_FRAME + 1)
    except OSError:
        return None
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    try:
        request = wire.decode(body)
        decision.from_plain(request.get("config"))  # checked here, so a bad file is one line in the log
        return request
    except (AgentError, ValueError) as exc:
        print(f"agent: ignored the warm-up file {path}: {exc}", flush=True)
        return None
