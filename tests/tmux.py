"""A real terminal for tests: a private tmux server, keys in, screen text out."""

from __future__ import annotations

import contextlib
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping

from tests.helpers import parent_of, plugin_processes

__all__ = ["Tmux", "have_tmux"]


def have_tmux() -> bool:
    return shutil.which("tmux") is not None


class Tmux:
    """One tmux session on its own server socket, running one command."""

    def __init__(self, command: list[str], env: Mapping[str, str], *, width: int = 110, height: int = 35) -> None:
        self.socket = f"sandchat-test-{uuid.uuid4().hex[:8]}"
        self.channel = f"done-{self.socket}"
        inner = " ".join(["env", "-i", *(f"{k}={shlex.quote(v)}" for k, v in env.items()), *map(shlex.quote, command)])
        script = f"{inner}; tmux -L {self.socket} wait-for -S {self.channel}; sleep 30"
        self._tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), script)

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        if result.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "t", "-l", text)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t", "-S", "-200")

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait until ``pattern`` (a regex) appears on the screen; fail with the screen."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.M)
        while True:
            screen = self.screen()
            match = regex.search(screen)
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on screen after {timeout}s:\n{screen}")
            time.sleep(0.05)  # screen polling: tmux has no change notification

    def wait_exit(self, timeout: float = 20.0) -> None:
        """Wait for the command to finish (it signals a tmux channel when it does)."""
        subprocess.run(["tmux", "-L", self.socket, "wait-for", self.channel], timeout=timeout, check=True)

    def close(self) -> None:
        """Kill the tmux server, wait for everything it ran to end, and reap what is ours.

        The tmux server daemonizes; when the test process is a child subreaper (a
        PluginManager made it one), the server and its panes' processes become our
        children when they exit, so they are reaped here. A test that failed mid-chat
        leaves the chat running when the server goes: it is waited for (its plugins go
        with it), and killed if it hangs on its way out, so that neither it nor a zombie
        of its plugins turns up in a later test's process listing.
        """
        try:
            server = int(self._tmux("display", "-p", "#{pid}").strip())
        except (RuntimeError, ValueError):
            server = None
        doomed = _pidfds(([server] + _descendants(server)) if server else [])
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
        deadline = time.monotonic() + 10
        try:
            for fd in _wait_ended(doomed, deadline):
                with contextlib.suppress(ProcessLookupError):  # still there after the hang-up: a chat stuck on its way out
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            _wait_ended(doomed, time.monotonic() + 5)
            for fd in doomed:  # all ended: whatever was reparented to us is a zombie by now
                with contextlib.suppress(ChildProcessError):  # someone else's to reap
                    os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
        finally:
            for fd in doomed:
                os.close(fd)
        _reap_orphaned_plugins(deadline)


def _pidfds(pids: list[int]) -> list[int]:
    """A pidfd for each of ``pids`` still there: it names that process even once its pid is reused."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            pass  # ended and reaped already
    return fds


def _wait_ended(pidfds: list[int], deadline: float) -> list[int]:
    """Wait until every process in ``pidfds`` has ended (its pidfd turns readable), or ``deadline``; the fds of those left."""
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    left = set(pidfds)
    while left:
        wait = deadline - time.monotonic()
        events = poller.poll(wait * 1000) if wait > 0 else []
        if not events:
            break
        for fd, _ in events:
            poller.unregister(fd)
            left.discard(fd)
    return sorted(left)


def _reap_orphaned_plugins(deadline: float) -> None:
    """Reap plugin processes the chat left to us when it exited before reaping them.

    A plugin the chat killed on its way out (say, one still starting) is reparented to
    the nearest subreaper, this test process, outside the tmux server's tree; init
    would reap it on a real machine. Wait (bounded) for it to die, then reap it.
    """
    while time.monotonic() < deadline:
        strays = [pid for pid, _ in plugin_processes() if parent_of(pid) == os.getpid()]
        if not strays:
            return
        for pid in strays:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.02)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def chat_env(home: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SANDCHAT_HOME": home,
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "HOME": home,
    }
