"""Which plugin answers when none is named: configured default, Claude, local, echo; said once.

The rules are checked in-process with the question "is llama_cpp importable?" answered
by the test, so every branch runs whether or not the local extra is installed. The CLI
tests run ``python -m app`` as a user would, with ``SANDCHAT_HOME``; where they need
llama_cpp to look absent they put a ``sitecustomize`` on ``PYTHONPATH`` that hides it
from ``importlib.util.find_spec`` (the sandboxed plugin children run ``python -I -S``
and never see it).
"""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import SimpleNamespace

import pytest

import app.choice
from app.choice import choose_default, explain_once
from app.grants import file_sha256
from app.manager import SHIPPED_DIR, PluginManager
from app.settings import Paths, Settings
from tests import helpers
from tests.fakeapi import FakeAnthropicServer

pytestmark = pytest.mark.timeout(60)

LLAMA_INSTALLED = importlib.util.find_spec("llama_cpp") is not None
HIDE_LLAMA = """\
import importlib.util as _util
_real_find_spec = _util.find_spec
def _find_spec(name, package=None):
    if name == "llama_cpp" or name.startswith("llama_cpp."):
        return None  # the test wants the local extra to look uninstalled
    return _real_find_spec(name, package)
_util.find_spec = _find_spec
"""


@pytest.fixture
def llama(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """``llama(True)`` / ``llama(False)``: what app.choice sees when it looks for llama_cpp."""

    def set_installed(installed: bool) -> None:
        real = importlib.util.find_spec

        def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
            if name == "llama_cpp":
                return ModuleSpec("llama_cpp", None) if installed else None
            return real(name, package)

        monkeypatch.setattr(app.choice, "importlib", SimpleNamespace(util=SimpleNamespace(find_spec=find_spec)))

    return set_installed


def manager_for(home: Path, environ: dict[str, str] | None = None, **settings: object) -> PluginManager:
    return PluginManager([], settings=Settings(paths=Paths.from_home(home), environ=environ or {}, **settings))  # type: ignore[arg-type]


# -- the rules ---------------------------------------------------------------------------


def test_the_configured_default_wins_over_everything(home: Path, llama: Callable[[bool], None]) -> None:
    llama(True)
    with manager_for(home, {"ANTHROPIC_API_KEY": "sk-ant"}, default_plugin="echo") as manager:
        assert choose_default(manager) == ("echo", "it is your configured default")


def test_claude_when_the_key_is_in_the_environment(home: Path, llama: Callable[[bool], None]) -> None:
    llama(True)
    with manager_for(home, {"ANTHROPIC_API_KEY": "sk-ant"}) as manager:
        assert choose_default(manager) == ("claude", "an Anthropic API key is set")


def test_claude_when_the_key_is_in_the_keys_file(home: Path, llama: Callable[[bool], None]) -> None:
    llama(False)
    with manager_for(home) as manager:
        manager.keys.set("ANTHROPIC_API_KEY", "sk-ant")
        assert choose_default(manager)[0] == "claude"


def test_an_empty_key_or_another_vendors_key_is_not_a_key(home: Path, llama: Callable[[bool], None]) -> None:
    llama(False)
    with manager_for(home, {"ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": "sk-openai"}) as manager:
        assert choose_default(manager)[0] == "echo"


def test_local_when_llama_cpp_is_importable_and_no_key(home: Path, llama: Callable[[bool], None]) -> None:
    llama(True)
    with manager_for(home) as manager:
        assert choose_default(manager) == ("local", "the local model is installed and no API key is set")


def test_echo_when_neither_key_nor_local_model(home: Path, llama: Callable[[bool], None]) -> None:
    llama(False)
    with manager_for(home) as manager:
        assert choose_default(manager) == ("echo", "no API key is set and the local model is not installed")


def test_disabled_plugins_are_passed_over(home: Path, llama: Callable[[bool], None]) -> None:
    llama(True)
    with manager_for(home, {"ANTHROPIC_API_KEY": "sk-ant"}, disabled=frozenset({"claude"})) as manager:
        assert choose_default(manager)[0] == "local"
        manager.switches.set_enabled("local", False)  # `sandchat plugins disable local`
        assert choose_default(manager) == ("echo", "no API key is set and the local model is disabled")


def test_the_notice_is_given_once_per_choice(home: Path) -> None:
    with manager_for(home) as manager:
        notice = explain_once(manager, "echo", "no API key is set")
        assert notice == "using plugin 'echo' because no API key is set (choose another with -p NAME)"
        assert explain_once(manager, "echo", "no API key is set") is None
        assert explain_once(manager, "local", "the local model is installed") is not None  # a new choice is explained
        assert explain_once(manager, "local", "the local model is installed") is None


# -- the CLI -----------------------------------------------------------------------------


def sandchat(home: Path, *args: str, hide_llama: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    if hide_llama:
        shim = home.parent / "hide_llama"
        shim.mkdir(exist_ok=True)
        (shim / "sitecustomize.py").write_text(HIDE_LLAMA)
        env["PYTHONPATH"] = str(shim)
    return helpers.sandchat(home, *args, **env)


def test_cli_falls_back_to_echo_and_says_so_once(home: Path) -> None:
    first = sandchat(home, "prompt", "hello", hide_llama=True)
    assert (first.returncode, first.stdout) == (0, "echo: hello\n"), first.stderr
    assert first.stderr == (
        "sandchat: using plugin 'echo' because no API key is set and the local model is not installed (choose another with -p NAME)\n"
    )
    again = sandchat(home, "prompt", "hello", hide_llama=True)
    assert (again.returncode, again.stdout, again.stderr) == (0, "echo: hello\n", "")


def test_cli_configured_default_wins_over_a_key(home: Path) -> None:
    (home / "config.toml").write_text('default_plugin = "echo"\n')
    result = sandchat(home, "tokens", "hello world", ANTHROPIC_API_KEY="sk-ant-unused")
    assert (result.returncode, result.stdout) == (0, "2\n"), result.stderr
    assert "using plugin 'echo' because it is your configured default" in result.stderr
    assert sandchat(home, "tokens", "hello world", ANTHROPIC_API_KEY="sk-ant-unused").stderr == ""


def test_cli_picks_claude_when_a_key_is_set(home: Path, anthropic_server: FakeAnthropicServer) -> None:
    anthropic_server.reply = "Bonjour."
    with manager_for(home) as manager:  # let the sandboxed plugin reach the fake API
        sha = file_sha256(SHIPPED_DIR / "claude_plugin.py")
        manager.grants.grant("claude", sha, network=(f"127.0.0.1:{anthropic_server.port}",),
                             env=("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"))  # fmt: skip
    env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": anthropic_server.base_url}
    first = sandchat(home, "prompt", "hello", **env)
    assert (first.returncode, first.stdout) == (0, "Bonjour.\n"), first.stderr
    assert first.stderr.startswith("sandchat: using plugin 'claude' because an Anthropic API key is set")
    again = sandchat(home, "prompt", "hello", **env)
    assert (again.returncode, again.stdout, again.stderr) == (0, "Bonjour.\n", "")
    assert len(anthropic_server.requests_to("/v1/messages")) == 2


@pytest.mark.skipif(not LLAMA_INSTALLED, reason="llama-cpp-python is not installed (pip install -e '.[local]')")
@pytest.mark.timeout(120)
def test_cli_picks_the_local_model_when_installed(home: Path) -> None:
    first = sandchat(home, "prompt", "--temperature", "0", "--max-tokens", "24", "What is the capital of France?")
    assert first.returncode == 0, first.stderr
    assert first.stderr.startswith("sandchat: using plugin 'local' because the local model is installed")
    assert "Paris" in first.stdout
    again = sandchat(home, "tokens", "hello world")
    assert (again.returncode, again.stderr) == (0, "") and int(again.stdout) > 0
