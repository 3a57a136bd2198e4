"""What the agent tests share: the CLI with the agent on, the agent's status read in-process, and cleanup.

Every agent a test starts lives in its own home (``SANDCHAT_HOME``, no ``XDG_RUNTIME_DIR``:
the socket is ``HOME/agent/agent.sock``), and :func:`cleanup` ends it, its plugins and any
zombie it leaves us (the test process may be a child subreaper: ``runner.harden_host``).
"""

from __future__ import annotations

import os
import select
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.agent.client import AgentClient
from app.agent.paths import AgentPaths
from app.version import build
from tests.helpers import SANDCHAT, cli_env, gone, live_plugin_processes, parent_of, processes, sandchat, wait_until

ON = {"SANDCHAT_AGENT_IDLE": "600"}

#: A plugin that streams 30 numbered words, 10 ms apart: two replies mixed would show.
PACED = '''"""Paced: streams 30 numbered words of the message, 10 ms apart."""
import time

from llm_utils import LLMClient


class Paced(LLMClient):
    context_window = 1000

    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "".join(self.stream_response(system, user_message, max_tokens, temperature))

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        for i in range(30):
            yield f"{user_message}{i} "
            time.sleep(0.01)

    def count_tokens(self, text):
        return len(text.split())
'''


def paced_answer(word: str) -> str:
    return "".join(f"{word}{i} " for i in range(30)) + "\n"


def run(home: Path, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``sandchat ARGS`` with the agent on (unless ``env`` says otherwise)."""
    return sandchat(home, *args, stdin=stdin, **{**ON, **env})


def popen(home: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*SANDCHAT, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli_env(home, **{**ON, **env}))  # fmt: skip


def client(home: Path) -> AgentClient:
    return AgentClient(AgentPaths(home / "agent"), build())


def status(home: Path) -> dict[str, Any] | None:
    reply = client(home).ask({"op": "status"})
    return reply if reply is not None and reply.get("type") == "status" else None


def warm(home: Path, name: str) -> dict[str, Any] | None:
    """The agent's entry for plugin ``name`` when it has a live process, else None."""
    found = status(home)
    for entry in found["plugins"] if found else ():
        if entry["name"] == name and entry.get("pid") and entry["state"] in ("ready", "busy"):
            return dict(entry)
    return None


def wait_warm(home: Path, name: str, unless: Callable[[dict[str, Any]], bool] = lambda entry: False) -> dict[str, Any]:
    return wait_until(lambda: (entry := warm(home, name)) and not unless(entry) and entry, 40, f"{name} warm in the agent")  # type: ignore[no-any-return]


def first_bytes(proc: subprocess.Popen[bytes], seconds: float = 40) -> bytes:
    """What the process printed first, waited for on its pipe (never a sleep)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], seconds)
    assert ready, "no output in time"
    return os.read(proc.stdout.fileno(), 4096)


def reap(pid: int, seconds: float = 20) -> None:
    """Wait for ``pid`` to end, reaping it if it became our child."""

    def ended() -> bool:
        if parent_of(pid) == os.getpid():
            try:
                return os.waitpid(pid, os.WNOHANG)[0] == pid
            except ChildProcessError:
                return True
        return gone(pid)

    wait_until(ended, seconds, f"pid {pid} to end")


def our_zombies() -> set[int]:
    me = str(os.getpid()).encode()
    return {pid for pid, fields, _ in processes() if fields[0] == b"Z" and fields[1] == me}


def cleanup(home: Path, zombies_before: set[int]) -> None:
    """Stop the home's agent (never this process, which a fake agent may be), then reap what it leaves."""
    marker = f"--dir {home}"

    def no_agent_left() -> bool:  # one still starting (spawned by the test's last command) is stopped once it listens
        pid = client(home).pid()
        if pid is not None and pid != os.getpid():
            sandchat(home, "agent", "stop", **ON)
            reap(pid)
        return not any(marker in cmd for _, _, cmd in processes())

    wait_until(no_agent_left, 30, "every agent of this home to end")
    wait_until(lambda: not live_plugin_processes(str(home)), 20, "the agent's plugins to end")
    for zombie in our_zombies() - zombies_before:
        try:
            os.waitpid(zombie, os.WNOHANG)
        except ChildProcessError:
            pass
