"""An agent left running across an edit or upgrade of sandchat's code gives way to one of the new code.

The commands here run from a copy of the source tree (``python -m app`` from its folder
imports the copy first), so the test may change the code without touching the tree other
tests run from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.agent.client import AgentClient
from app.agent.paths import AgentPaths
from tests.agentkit import ON, our_zombies, reap
from tests.helpers import ROOT, cli_env, processes, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    copy = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("app", "runner", "llm_plugins"):
        shutil.copytree(ROOT / name, copy / name, ignore=ignore)
    for name in ("llm_utils.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, copy / name)
    return copy


@pytest.fixture
def home(tmp_path: Path, tree: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    path.mkdir()
    zombies = our_zombies()
    yield path
    for pid in {agent_pid(path, tree)} - {None}:
        subprocess.run(command(tree, "agent", "stop"), env=cli_env(path, **ON), cwd=tree, capture_output=True, timeout=60)
        reap(pid)  # type: ignore[arg-type]
    wait_until(lambda: not any(f"--dir {path}" in cmd for _, _, cmd in processes()), 30, "the home's agents to end")
    for zombie in our_zombies() - zombies:
        try:
            os.waitpid(zombie, os.WNOHANG)
        except ChildProcessError:
            pass


def command(tree: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "app", *args]


def prompt(home: Path, tree: Path, words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(tree, "prompt", "-p", "echo", words), env=cli_env(home, **ON), cwd=tree,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)  # fmt: skip


def agent_pid(home: Path, tree: Path) -> int | None:
    return AgentClient(AgentPaths(home / "agent"), "any").pid()


def warm_echo(home: Path, tree: Path) -> int | None:
    """The pid of the agent when it answers the tree's build as it is now with echo warm, else None."""
    found = subprocess.run(command(tree, "agent", "status", "--json"), env=cli_env(home, **ON), cwd=tree,
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    import json

    doc = json.loads(found.stdout)
    warm = doc.get("answering") and any(p["name"] == "echo" and p.get("pid") for p in doc.get("plugins", []))
    return doc["pid"] if warm else None


def test_an_agent_of_the_old_code_leaves_and_one_of_the_new_code_takes_over(home: Path, tree: Path) -> None:
    first = prompt(home, tree, "before")
    assert (first.returncode, first.stdout) == (0, "echo: before\n"), first.stderr
    old = wait_until(lambda: warm_echo(home, tree), 40, "echo warm in the first agent")
    changed = tree / "app" / "chat.py"
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # what an upgrade or a `git pull` does to a file

    after = prompt(home, tree, "after")
    assert (after.returncode, after.stdout, after.stderr) == (0, "echo: after\n", "")  # run directly: the old agent is passed over
    reap(old, 40)  # the old agent leaves (reaped here when this worker is its subreaper: a zombie is not gone)
    log = (home / "agent" / "agent.log").read_text()
    assert "code changed since this agent started" in log
    new = wait_until(lambda: warm_echo(home, tree), 40, "echo warm in an agent of the new code")
    assert new != old
    again = prompt(home, tree, "again")
    assert (again.returncode, again.stdout, again.stderr) == (0, "echo: again\n", "")
