"""Shared fixtures: a temporary sandchat home, a PluginManager over tests/plugins, plugin handles
built without the app, the fake API servers, leak checks. The helpers behind them: tests/helpers.py."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app import PluginManager
from runner import Deadlines, Plugin, PluginConfig, SandboxPolicy
from tests.fakeapi import FakeAnthropicServer, FakeOpenAIServer
from tests.fakeapi.canned import REPLY
from tests.helpers import FAST, TEST_PLUGINS, TESTS, DirectPlugins, plugin_processes

pytest_plugins = ["tests.attackkit"]  # the attack suites' fixtures: host, attacks, fake_home

__all__ = ["FAST", "TEST_PLUGINS", "TESTS", "plugin_processes"]  # for the modules that import them from here


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


@pytest.fixture
def plugins(home: Path) -> Iterator[DirectPlugins]:
    """``plugins.handle(NAME)``: a ``runner.Plugin`` for tests/plugins (or the shipped folder), FAST deadlines, no manager."""
    with DirectPlugins(home) as made:
        yield made


# -- raw children: written from docs/protocol.md alone --------------------------------------

# An executable that speaks the protocol itself, started through PluginConfig.python like a
# child in another language; ``{handler}`` defines handle(m) for each request m.
RAW_CHILD = """#!{python}
import os, sys, msgpack
def w(data):
    while data:
        data = data[os.write(1, data):]
def pack(value):
    return msgpack.packb(value, use_bin_type=True)
body = b"sandchat-sandbox-report 1\\nprofile none\\nlandlock_abi 0\\nlayer rlimits\\nlimit core 0"
w(len(body).to_bytes(4, "big") + body)
size = b""
while len(size) < 8:
    size += os.read(0, 8 - len(size))
size, code = int.from_bytes(size, "big"), b""
while len(code) < size:
    code += os.read(0, size - len(code))
w(pack([2, "hello", {{"protocol": 2, "pid": 1, "plugin": "raw", "class": "Raw", "doc": "", "context_window": 100,
                     "methods": [], "python": "raw", "error": None}}]))
pending = []
{handler}
unpacker = msgpack.Unpacker(raw=False)
while data := os.read(0, 65536):
    unpacker.feed(data)
    for m in unpacker:
        if m[0] == 0:
            handle(m)
"""

RAW_DEADLINES = Deadlines(start=20, first_chunk=3, idle=3, total=3, count_tokens=3, ping=3, cancel_grace=2, stop_grace=1)


@pytest.fixture
def raw_plugin(tmp_path: Path) -> Iterator[Callable[..., Plugin]]:
    """``raw_plugin(HANDLER, deadlines, **config)``: a Plugin whose child is :data:`RAW_CHILD` with that handler."""
    made: list[Plugin] = []

    def make(handler: str, deadlines: Deadlines = RAW_DEADLINES, **config: Any) -> Plugin:
        path = tmp_path / f"raw{len(made)}"
        path.write_text(RAW_CHILD.format(python=sys.executable, handler=textwrap.dedent(handler)))
        path.chmod(0o755)
        config = PluginConfig(
            name="raw", path=tmp_path / "raw.py", scratch_dir=tmp_path / "scratch", python=str(path), source=b"# raw\n",
            sandbox=SandboxPolicy(profile="none"), deadlines=deadlines, **config,
        )  # fmt: skip
        made.append(Plugin(config))
        return made[-1]

    yield make
    for plugin in made:
        plugin.close()


# -- the fake API servers (tests/fakeapi) ---------------------------------------------------


@pytest.fixture
def anthropic_server() -> Iterator[FakeAnthropicServer]:
    """A fake Anthropic Messages API on a loopback port, answering ``REPLY`` to the key ``test-key``."""
    with FakeAnthropicServer(reply=REPLY) as server:
        yield server


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """A fake OpenAI chat-completions API on a loopback port, answering ``REPLY`` to the key ``test-key``."""
    with FakeOpenAIServer(reply=REPLY) as server:
        yield server
