"""A real terminal for tests: a private tmux server, keys in, screen text out."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from typing import Mapping

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
        """Kill the tmux server and reap what it leaves behind.

        The tmux server daemonizes; when the test process is a child subreaper (a
        PluginManager made it one), the server and its panes' processes become our
        children when they exit, so they are reaped here.
        """
        try:
            server = int(self._tmux("display", "-p", "#{pid}").strip())
        except (RuntimeError, ValueError):
            server = None
        doomed = ([server] + _descendants(server)) if server else []
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)
        deadline = time.monotonic() + 10
        for pid in doomed:
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    if not os.path.exists(f"/proc/{pid}") or _parent(pid) not in (None, os.getpid()):
                        break  # gone, or someone else's to reap
                    done = 0
                if done:
                    break
                time.sleep(0.02)
        _reap_orphaned_plugins(deadline)


def _reap_orphaned_plugins(deadline: float) -> None:
    """Reap plugin processes the chat left to us when it exited before reaping them.

    A plugin the chat killed on its way out (say, one still starting) is reparented to
    the nearest subreaper, this test process, outside the tmux server's tree; init
    would reap it on a real machine. Wait (bounded) for it to die, then reap it.
    """
    from tests.conftest import plugin_processes

    while time.monotonic() < deadline:
        strays = [pid for pid, _ in plugin_processes() if _parent(pid) == os.getpid()]
        if not strays:
            return
        for pid in strays:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.02)


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            parent = _parent(int(entry.name))
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
