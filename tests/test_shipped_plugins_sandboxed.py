"""Shipped network plugins run sandboxed, with their real SDK/HTTP stack, against fake APIs.

The Claude plugin (official ``anthropic`` SDK) and the OpenAI-compatible plugin are
started by ``PluginManager`` exactly as the CLI starts them: a child process under
Landlock + seccomp in the network profile. The fake servers listen on 127.0.0.1, a port
the shipped plugins do not request, so they are reachable only through a user grant
of that port; without one the sandbox denies the connection and the server sees none.
Errors cross the process boundary as ``runner.PluginRaised`` whose message is the
plugin's one-line ``RuntimeError``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import runner
from app.grants import file_sha256
from app.manager import SHIPPED_DIR, PluginManager
from app.settings import Paths, Settings
from tests.conftest import TEST_PLUGINS
from tests.fakeapi import FakeAnthropicServer, FakeOpenAIServer
from tests.fakeapi.anthropic_server import fake_token_count
from tests.fakeapi.canned import CHAT_PATH, COUNT_PATH, HISTORY, MESSAGES_PATH, REPLY

pytestmark = pytest.mark.timeout(60)

KEY = "test-key"  # the key the fake servers (tests/conftest.py) accept
CLAUDE_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "SANDCHAT_CLAUDE_MODEL")
OPENAI_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL")


def make_manager(home: Path, environ: dict[str, str], *dirs: Path) -> PluginManager:
    """A manager over the shipped plugins (plus ``dirs``) seeing ``environ`` as the host environment."""
    return PluginManager(list(dirs), settings=Settings(paths=Paths.from_home(home), environ=environ))


def grant_port(manager: PluginManager, name: str, port: int, env: tuple[str, ...]) -> None:
    sha = file_sha256(SHIPPED_DIR / f"{name}_plugin.py")
    manager.grants.grant(name, sha, network=(f"127.0.0.1:{port}",), env=env)


def one_line(exc: pytest.ExceptionInfo[runner.PluginError], plugin: str) -> str:
    """The error's message, checked to be one line naming the plugin and its RuntimeError."""
    assert isinstance(exc.value, runner.PluginRaised), type(exc.value)
    assert exc.value.remote_type == "RuntimeError"
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"plugin {plugin!r} raised RuntimeError: ")
    return message


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def claude_env(anthropic_server: FakeAnthropicServer) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": anthropic_server.base_url, "ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": "sk-other"}


@pytest.fixture
def openai_env(openai_server: FakeOpenAIServer) -> dict[str, str]:
    return {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": KEY, "ANTHROPIC_API_KEY": "sk-ant-other"}


@pytest.fixture
def claude(home: Path, claude_env: dict[str, str], anthropic_server: FakeAnthropicServer) -> Iterator[runner.Plugin]:
    """The sandboxed Claude plugin, granted the fake server's port and its three variables."""
    with make_manager(home, claude_env) as manager:
        grant_port(manager, "claude", anthropic_server.port, CLAUDE_ENV)
        yield manager.handle("claude")


@pytest.fixture
def openai(home: Path, openai_env: dict[str, str], openai_server: FakeOpenAIServer) -> Iterator[runner.Plugin]:
    """The sandboxed OpenAI-compatible plugin, granted the fake server's port and its variables."""
    with make_manager(home, openai_env) as manager:
        grant_port(manager, "openai_compatible", openai_server.port, OPENAI_ENV)
        yield manager.handle("openai_compatible")


# -- without a grant: the sandbox refuses the connection ---------------------------------


def test_claude_without_a_grant_cannot_reach_the_server(
    home: Path, claude_env: dict[str, str], anthropic_server: FakeAnthropicServer
) -> None:
    with make_manager(home, claude_env) as manager:
        config = manager.launch_config("claude")
        assert config.sandbox.profile == "network" and [str(e) for e in config.sandbox.endpoints] == ["api.anthropic.com:443"]  # as shipped
        with pytest.raises(runner.PluginRaised) as exc:
            "".join(manager.handle("claude").stream_response("", "hi", 16))
    # Landlock's EACCES on connect(), not a refusal by the server: named as such, not retried
    assert exc.value.remote_type == "PermissionError"
    assert (
        str(exc.value) == f"plugin 'claude' raised PermissionError: the sandbox refused a connection to 127.0.0.1:{anthropic_server.port}"
    )
    assert anthropic_server.connection_count == 0 and anthropic_server.requests == []


def test_openai_without_a_grant_cannot_reach_the_server(home: Path, openai_env: dict[str, str], openai_server: FakeOpenAIServer) -> None:
    with make_manager(home, openai_env) as manager:
        assert [str(e) for e in manager.launch_config("openai_compatible").sandbox.endpoints] == ["api.openai.com:443"]
        with pytest.raises(runner.PluginRaised) as exc:
            manager.handle("openai_compatible").generate_response("", "hi", 16)
    # The refusal is recognised (and not retried): the PermissionError the host turns into a grant hint.
    assert exc.value.remote_type == "PermissionError"
    assert (
        str(exc.value)
        == f"plugin 'openai_compatible' raised PermissionError: the sandbox refused a connection to 127.0.0.1:{openai_server.port}"
    )
    assert openai_server.connection_count == 0 and openai_server.requests == []


def test_a_grant_for_another_port_does_not_open_this_one(
    home: Path, claude_env: dict[str, str], anthropic_server: FakeAnthropicServer
) -> None:
    with FakeAnthropicServer(reply=REPLY, api_key=KEY) as other, make_manager(home, claude_env) as manager:
        grant_port(manager, "claude", other.port, CLAUDE_ENV)
        with pytest.raises(
            runner.PluginRaised, match=f"raised PermissionError: the sandbox refused a connection to 127.0.0.1:{anthropic_server.port}$"
        ):
            manager.handle("claude").generate_response("", "hi", 16)
        assert other.connection_count == 0
    assert anthropic_server.connection_count == 0


# -- Claude, granted ---------------------------------------------------------------------


def test_claude_granted_runs_sandboxed_in_the_network_profile(claude: runner.Plugin, anthropic_server: FakeAnthropicServer) -> None:
    hello = claude.start()
    assert hello["sandbox"]["profile"] == "network"
    assert {"landlock-fs", "landlock-net", "seccomp"} <= set(hello["sandbox"]["layers"])
    assert [str(e) for e in claude.config.sandbox.endpoints] == [f"127.0.0.1:{anthropic_server.port}"]
    assert claude.context_window == 200_000


def test_claude_streams_the_reply_in_pieces(claude: runner.Plugin, anthropic_server: FakeAnthropicServer) -> None:
    chunks = list(claude.stream_response("Be brief.", "Hello?", max_tokens=77))
    assert "".join(chunks) == REPLY and len(chunks) > 1
    request = anthropic_server.requests_to(MESSAGES_PATH)[-1]
    assert request.body["stream"] is True and request.body["max_tokens"] == 77
    assert request.body["system"] == "Be brief."
    assert request.headers["authorization"] == f"Bearer {KEY}"  # the granted key reached the SDK


def test_claude_generate_chat_passes_history_and_system(claude: runner.Plugin, anthropic_server: FakeAnthropicServer) -> None:
    assert claude.generate_chat("Address the user by name.", HISTORY, max_tokens=64) == REPLY
    request = anthropic_server.requests_to(MESSAGES_PATH)[-1]
    assert request.body["messages"] == HISTORY
    assert request.body["system"] == "Address the user by name."
    assert "stream" not in request.body


def test_claude_count_tokens_hits_the_endpoint_once_then_the_cache(claude: runner.Plugin, anthropic_server: FakeAnthropicServer) -> None:
    text = "How many tokens is this sentence?"
    expected = fake_token_count({"messages": [{"role": "user", "content": text}]})
    assert claude.count_tokens(text) == expected
    assert claude.count_tokens(text) == expected
    assert len(anthropic_server.requests_to(COUNT_PATH)) == 1
    assert claude.count_tokens(text + "!") > 0
    assert len(anthropic_server.requests_to(COUNT_PATH)) == 2


@pytest.mark.parametrize(
    ("status", "options", "expected"),
    [
        (401, {}, "Anthropic API: authentication failed (401): check ANTHROPIC_API_KEY (run `sandchat keys set ANTHROPIC_API_KEY`)"),
        (
            429,
            {"retry_after": 60},
            "Anthropic API: rate limited (429): Number of requests has exceeded your per-minute rate limit; retry after 60 s",
        ),
        (529, {"n": 3}, "Anthropic API: overloaded (529) after 3 attempts: Anthropic is temporarily overloaded; try again shortly"),
        (400, {"message": "messages: roles must alternate"}, "Anthropic API: bad request (400): messages: roles must alternate"),
    ],
)  # fmt: skip
def test_claude_errors_are_one_clear_line(
    claude: runner.Plugin, anthropic_server: FakeAnthropicServer, status: int, options: dict, expected: str
) -> None:
    anthropic_server.queue_error(status, path=MESSAGES_PATH, **options)
    with pytest.raises(runner.PluginRaised) as exc:
        "".join(claude.stream_response("", "hi", 16))
    assert one_line(exc, "claude") == f"plugin 'claude' raised RuntimeError: {expected}"
    assert len(anthropic_server.requests_to(MESSAGES_PATH)) == options.get("n", 1)
    assert claude.running  # a raised error leaves the plugin process healthy
    assert "".join(claude.stream_response("", "hi", 16)) == REPLY


def test_claude_waits_out_a_short_retry_after_then_succeeds(claude: runner.Plugin, anthropic_server: FakeAnthropicServer) -> None:
    claude.start()
    anthropic_server.queue_error(429, retry_after=1, path=MESSAGES_PATH)
    began = time.monotonic()
    assert "".join(claude.stream_response("", "hi", 16)) == REPLY
    assert time.monotonic() - began >= 0.9  # the server's retry-after was honoured
    assert len(anthropic_server.requests_to(MESSAGES_PATH)) == 2


def test_claude_key_from_the_keys_file(home: Path, anthropic_server: FakeAnthropicServer) -> None:
    with make_manager(home, {"ANTHROPIC_BASE_URL": anthropic_server.base_url}) as manager:
        manager.keys.set("ANTHROPIC_API_KEY", KEY)
        grant_port(manager, "claude", anthropic_server.port, CLAUDE_ENV)
        assert manager.handle("claude").generate_response("", "hi", 16) == REPLY
    assert anthropic_server.requests[-1].headers["authorization"] == f"Bearer {KEY}"


# -- OpenAI-compatible, granted ----------------------------------------------------------


def test_openai_streams_the_reply_in_pieces(openai: runner.Plugin, openai_server: FakeOpenAIServer) -> None:
    assert openai.start()["sandbox"]["profile"] == "network"
    chunks = list(openai.stream_response("Be brief.", "Hello?", max_tokens=77, temperature=0.2))
    assert "".join(chunks) == REPLY and len(chunks) > 1
    request = openai_server.requests_to(CHAT_PATH)[-1]
    assert request.body["stream"] is True and request.body["max_tokens"] == 77
    assert request.body["temperature"] == 0.2
    assert request.headers["authorization"] == f"Bearer {KEY}"


def test_openai_generate_chat_passes_history_and_system(openai: runner.Plugin, openai_server: FakeOpenAIServer) -> None:
    assert openai.generate_chat("Address the user by name.", HISTORY, max_tokens=64) == REPLY
    request = openai_server.requests_to(CHAT_PATH)[-1]
    assert request.body["messages"] == [{"role": "system", "content": "Address the user by name."}, *HISTORY]
    assert "stream" not in request.body


def test_openai_counts_tokens_locally(openai: runner.Plugin, openai_server: FakeOpenAIServer) -> None:
    assert openai.count_tokens("hello world") == 2  # cl100k_base
    asked = len(openai_server.requests)  # the first count asks for a tokenizer; this fake offers none
    assert openai.count_tokens("hello world") == 2
    assert openai.count_tokens("") == 0
    assert len(openai_server.requests) == asked and not openai_server.requests_to(CHAT_PATH)  # counted inside the sandbox


@pytest.mark.parametrize(
    ("status", "options", "expected"),
    [
        (
            401,
            {},
            "authentication failed (401): check OPENAI_API_KEY (run `sandchat keys set OPENAI_API_KEY`): Incorrect API key provided.",
        ),
        (
            429,
            {"retry_after": 60},
            "rate limited (429): Rate limit reached for requests per min (RPM). Please try again later.; retry after 60 s",
        ),
        (529, {"n": 3, "message": "Overloaded"}, "server error (529) after 3 attempts: Overloaded"),
        (400, {"message": "Invalid 'messages[1].role'."}, "bad request (400): Invalid 'messages[1].role'."),
    ],
)  # fmt: skip
def test_openai_errors_are_one_clear_line(
    openai: runner.Plugin, openai_server: FakeOpenAIServer, status: int, options: dict, expected: str
) -> None:
    openai_server.queue_error(status, path=CHAT_PATH, **options)
    with pytest.raises(runner.PluginRaised) as exc:
        "".join(openai.stream_response("", "hi", 16))
    label = f"OpenAI-compatible server 127.0.0.1:{openai_server.port}"
    assert one_line(exc, "openai_compatible") == f"plugin 'openai_compatible' raised RuntimeError: {label}: {expected}"
    assert len(openai_server.requests_to(CHAT_PATH)) == options.get("n", 1)
    assert "".join(openai.stream_response("", "hi", 16)) == REPLY


def test_openai_waits_out_a_short_retry_after_then_succeeds(openai: runner.Plugin, openai_server: FakeOpenAIServer) -> None:
    openai.start()
    openai_server.queue_error(429, retry_after=1, path=CHAT_PATH)
    began = time.monotonic()
    assert "".join(openai.stream_response("", "hi", 16)) == REPLY
    assert time.monotonic() - began >= 0.9
    assert len(openai_server.requests_to(CHAT_PATH)) == 2


# -- keys reach only the plugin they are granted to --------------------------------------


def test_keys_are_visible_only_to_the_granted_plugin(home: Path, anthropic_server: FakeAnthropicServer) -> None:
    environ = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": anthropic_server.base_url, "OPENAI_API_KEY": "sk-other"}
    with make_manager(home, environ, TEST_PLUGINS) as manager:
        grant_port(manager, "claude", anthropic_server.port, CLAUDE_ENV)
        assert manager.handle("claude").generate_response("", "hi", 16) == REPLY
        seen = set(manager.handle("envdump").generate_response("", "", 16).splitlines())
        assert seen and not seen & {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_API_KEY"}
        assert {"HOME", "PATH"} <= seen
        for name in ("echo", "envdump"):
            config = manager.launch_config(name)
            assert config.sandbox.profile == "untrusted"
            assert not {"ANTHROPIC_API_KEY", "OPENAI_API_KEY"} & set(config.env)
        # claude got its own key, and not the OpenAI one it was never granted
        claude_env = manager.launch_config("claude").env
        assert claude_env["ANTHROPIC_API_KEY"] == KEY and "OPENAI_API_KEY" not in claude_env
    assert anthropic_server.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_a_granted_variable_reaches_a_user_plugin(home: Path) -> None:
    environ = {"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": "sk-other"}
    with make_manager(home, environ, TEST_PLUGINS) as manager:
        manager.grants.grant("envdump", file_sha256(TEST_PLUGINS / "envdump_plugin.py"), network=(), env=("ANTHROPIC_API_KEY",))
        seen = set(manager.handle("envdump").generate_response("", "", 16).splitlines())
    assert "ANTHROPIC_API_KEY" in seen and "OPENAI_API_KEY" not in seen
