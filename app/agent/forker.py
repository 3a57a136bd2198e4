"""Agent forker: a process that keeps sandchat's modules loaded and forks one worker per handed-over command.

The agent starts it (``python -m app.agent.forker --dir DIR``) beside its own socket and ends it when it
leaves; the forker also leaves when its standard input (a pipe from the agent) ends, so a
killed agent never leaves one behind. It is single-threaded, so ``fork`` is safe.

A client (``app.agent.handoff``) connects, the forker checks the peer's uid and forks; the
worker then does everything else, so no client can hold the forker up. The worker reads
the one request (argv, environment, working directory, umask, the client's standard
streams as file descriptors), and runs it only if it would run the same code the client
would: the same interpreter, module path, flags and locale, and sandchat's build unchanged
since the forker loaded it. Otherwise it says why and exits, and the client runs the
command itself. A worker that runs becomes the command: ``app.cli.main`` with the client's
argv, environment and streams, in a session of its own; the client relays its signals and
gets its exit status. The request-level protocol is in ``app.agent.handoff``.
"""

from __future__ import annotations

import importlib
import os
import select
import signal
import socket
import sys
from pathlib import Path

import runner
from app.agent import handoff, worker
from app.agent.peer import ForeignPeer, require_same_reach
from app.version import build

#: What a ``prompt`` or ``tokens`` command imports after it starts: loaded once here, shared by every fork.
PRELOAD = ("app.cli", "app.commands.oneshot", "app.commands.chat", "app.chatlog", "app.history", "app.tokencache",
           "app.hints", "app.pluginlog", "app.manager", "app.policy", "app.discovery", "app.access", "app.grants",
           "app.keys", "app.switches", "app.companions", "app.files", "app.sqlitefile", "runner.config",
           "runner.endpoints", "runner.cleantext", "runner.errors", "sqlite3", "uuid", "tomllib")  # fmt: skip
MAX_WORKERS = 32  # a flood of connections costs the user this many processes at most; the rest run themselves
REAP_SECONDS = 1.0


def main(directory: str) -> int:
    """``python -m app.agent.forker --dir DIR``: serve until the agent closes standard input (or SIGTERM)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the agent ends it: a Ctrl-C meant for a terminal's group is not for it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        Forker(Path(directory).absolute()).serve()
    except OSError as exc:
        print(f"forker: {exc}", flush=True)
        return 1
    return 0


class Forker:
    """The listening socket and the live workers."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / handoff.SOCKET_NAME
        self.build = build()
        self.workers: set[int] = set()

    def serve(self) -> None:
        """Fork a worker per connection until standard input ends (the agent left)."""
        for name in PRELOAD:
            importlib.import_module(name)
        if build() != self.build:
            return  # the code changed while it loaded: leave, clients run commands themselves
        listener = self._bind()
        try:
            while True:
                ready, _, _ = select.select([listener, sys.stdin.fileno()], [], [], REAP_SECONDS)
                self._reap()
                if sys.stdin.fileno() in ready and not os.read(sys.stdin.fileno(), 1 << 12):
                    return
                if listener in ready:
                    self._accept(listener)
        finally:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            listener.close()

    def _bind(self) -> socket.socket:
        try:
            os.unlink(self.path)  # the agent's lock is held: whatever is here is a dead forker's
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            listener.bind(os.fspath(self.path))
        finally:
            os.umask(old)
        listener.listen(16)
        listener.setblocking(False)
        return listener

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        with sock:
            try:
                require_same_reach(sock)
            except ForeignPeer as exc:
                print(f"forker: refused a connection: {exc}", flush=True)
                return
            if len(self.workers) >= MAX_WORKERS:
                return  # closed unanswered: that client runs its command itself
            pid = runner.fork_session()
            if pid == 0:
                code = 1
                try:
                    listener.close()
                    code = worker.work(sock, self.build)
                finally:
                    os._exit(code)  # a worker never returns into this loop, whatever it raised
            self.workers.add(pid)

    def _reap(self) -> None:
        for pid in list(self.workers):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.workers.discard(pid)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--dir"] or len(sys.argv) != 3:
        sys.exit("usage: python -m app.agent.forker --dir DIRECTORY (the agent starts it)")
    sys.exit(main(sys.argv[2]))
