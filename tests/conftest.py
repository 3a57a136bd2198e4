"""Shared fixtures: a temporary sandchat home, a PluginManager over tests/plugins, leak checks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import PluginManager
from runner import Deadlines

pytest_plugins = ["tests.attackkit"]  # the attack suites' fixtures: host, attacks, fake_home

TESTS = Path(__file__).resolve().parent
TEST_PLUGINS = TESTS / "plugins"

#: Short deadlines so failure tests finish fast; start stays generous (imports on a busy CI box).
FAST = Deadlines(start=20, first_chunk=3, idle=3, total=5, count_tokens=3, ping=3, cancel_grace=1, stop_grace=1)


def plugin_processes(marker: str = "") -> list[tuple[int, str]]:
    """Processes (zombies included) running sandchat's child entry point with ``marker`` in argv."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0].decode()
        except OSError:
            continue
        if ("runner/child/entry.py" in cmdline and marker in cmdline) or state == "Z" and _is_our_zombie(int(entry.name)):
            found.append((int(entry.name), cmdline or "<zombie>"))
    return found


def _is_our_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[1] == str(os.getpid()).encode()
    except OSError:
        return False


@pytest.fixture(autouse=True)
def no_leftover_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test must leave no plugin process (or unreaped child) behind.

    Only processes whose command line names this session's temporary folder count, so
    plugin processes of anything else running on the machine are not blamed on a test.
    """
    marker = str(tmp_path_factory.getbasetemp())
    before = {pid for pid, _ in plugin_processes(marker)}
    yield
    left = [p for p in plugin_processes(marker) if p[0] not in before]
    assert not left, f"processes left behind: {left}"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def manager(home: Path) -> Iterator[PluginManager]:
    with PluginManager(plugin_dirs=[TEST_PLUGINS], home=home, deadlines=FAST) as m:
        yield m
