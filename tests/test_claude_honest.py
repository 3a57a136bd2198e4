"""The Claude plugin never fails silently (issue 15): cut streams, empty answers, error
events, readiness, how tokens are counted, sandbox refusals, timeouts and temperature.

Everything runs the real ``anthropic`` SDK over HTTP/SSE against the fake Messages API
on 127.0.0.1: in-process (the plugin file loaded as the runner loads it) and, where the
sandbox is the point, through ``PluginManager`` exactly as the CLI starts it. Retry waits
are recorded instead of slept; nothing waits for state.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import runner
from runner.config import Deadlines
from tests.fakeapi import FakeAnthropicServer, split_words
from tests.fakeapi.anthropic_server import SAMPLING_DEPRECATED
from tests.fakeapi.canned import COUNT_PATH, MESSAGES_PATH, REPLY
from tests.test_shipped_plugins_inprocess import assert_one_line, cl100k_estimate, closed_port_url, load_plugin, make_claude
from tests.test_shipped_plugins_sandboxed import CLAUDE_ENV, KEY, grant_port, make_manager

MODELS_PATH = "/v1/models"
CUT = "Anthropic API: the reply was cut off: the stream ended before message_stop"
WORDS = split_words(REPLY)


@pytest.fixture(scope="module")
def module() -> ModuleType:
    return load_plugin("claude_plugin.py")[0]


@pytest.fixture
def server(anthropic_server: FakeAnthropicServer) -> FakeAnthropicServer:
    """The fake Anthropic API (tests/conftest.py), accepting ``KEY``."""
    return anthropic_server


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, server: FakeAnthropicServer) -> pytest.MonkeyPatch:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
    monkeypatch.delenv("SANDCHAT_CLAUDE_MODEL", raising=False)
    return monkeypatch


@pytest.fixture
def claude(env: pytest.MonkeyPatch, module: ModuleType) -> Any:
    return make_claude(module)


def stream_until_error(chunks: Iterator[str]) -> tuple[list[str], BaseException]:
    """Read a stream to its end; return what arrived and the error it ended with."""
    received: list[str] = []
    with pytest.raises(Exception) as exc:
        for chunk in chunks:
            received.append(chunk)
    return received, exc.value


# -- a stream cut before message_stop ------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_stream_cut_before_message_stop_delivers_the_text_then_fails(claude: Any, server: FakeAnthropicServer) -> None:
    server.queue_stream_ending("cut", after_chunks=3)
    received, error = stream_until_error(claude.stream_response("", "hi", 64))
    assert received == WORDS[:3]  # the partial text reached the caller first
    assert isinstance(error, RuntimeError) and str(error) == CUT
    assert len(server.requests_to(MESSAGES_PATH)) == 1 and claude.waits == []  # not retried: text was out


@pytest.mark.timeout(30)
def test_a_stream_cut_before_any_text_is_an_error_too(claude: Any, server: FakeAnthropicServer) -> None:
    server.queue_stream_ending("cut", after_chunks=0)
    received, error = stream_until_error(claude.stream_chat("", [{"role": "user", "content": "hi"}], 64))
    assert received == [] and str(error) == CUT


@pytest.mark.timeout(30)
def test_a_connection_dropped_mid_stream_says_the_reply_was_cut_off(claude: Any, server: FakeAnthropicServer) -> None:
    server.queue_stream_ending("hangup", after_chunks=2)
    received, error = stream_until_error(claude.stream_response("", "hi", 64))
    assert received == WORDS[:2]
    message = str(error)
    assert message.startswith("Anthropic API: the reply was cut off: the connection closed before message_stop (")
    assert "\n" not in message and "cannot connect" not in message


@pytest.mark.timeout(30)
def test_a_whole_stream_still_succeeds(claude: Any, server: FakeAnthropicServer) -> None:
    assert list(claude.stream_response("", "hi", 64)) == WORDS  # the check for message_stop costs nothing


# -- empty answers and error events ---------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["generate", "stream"])
@pytest.mark.parametrize("stop_reason", ["end_turn", "max_tokens"])
def test_an_empty_answer_is_an_error_not_an_empty_string(claude: Any, server: FakeAnthropicServer, mode: str, stop_reason: str) -> None:
    server.reply, server.stop_reason = "", stop_reason
    with pytest.raises(RuntimeError) as exc:
        if mode == "stream":
            list(claude.stream_response("", "hi", 64))
        else:
            claude.generate_response("", "hi", 64)
    assert assert_one_line(exc) == f"Anthropic API: the model returned no text (stop_reason: {stop_reason})"


@pytest.mark.timeout(30)
def test_an_error_event_after_text_ends_the_reply_with_that_error(claude: Any, server: FakeAnthropicServer) -> None:
    server.queue_stream_ending("error", after_chunks=2, error_type="overloaded_error", message="Overloaded")
    received, error = stream_until_error(claude.stream_response("", "hi", 64))
    assert received == WORDS[:2]
    assert str(error) == ("Anthropic API: the reply was cut off: overloaded (529): Anthropic is temporarily overloaded; try again shortly")
    assert len(server.requests_to(MESSAGES_PATH)) == 1


@pytest.mark.timeout(30)
def test_an_error_event_before_any_text_is_raised(claude: Any, server: FakeAnthropicServer) -> None:
    server.queue_stream_ending("error", after_chunks=0, error_type="invalid_request_error", message="prompt is too long")
    received, error = stream_until_error(claude.stream_response("", "hi", 64))
    assert received == [] and str(error) == "Anthropic API: bad request (400): prompt is too long"
    assert len(server.requests_to(MESSAGES_PATH)) == 1  # a bad request is not retried


# -- check(): readiness without spending tokens ---------------------------------------------


@pytest.mark.timeout(30)
def test_check_without_a_key_names_the_command(env: pytest.MonkeyPatch, module: ModuleType, server: FakeAnthropicServer) -> None:
    env.delenv("ANTHROPIC_API_KEY")
    assert make_claude(module).check() == "ANTHROPIC_API_KEY is not set; run: sandchat keys set ANTHROPIC_API_KEY"
    assert server.request_count == 0


@pytest.mark.timeout(30)
def test_check_when_ready_lists_one_model_and_spends_no_tokens(claude: Any, server: FakeAnthropicServer) -> None:
    assert claude.check() is None
    (request,) = server.requests
    assert (request.method, request.path, request.query) == ("GET", MODELS_PATH, "limit=1")
    assert request.headers["authorization"] == f"Bearer {KEY}"  # authenticated: the key is what is checked


@pytest.mark.timeout(30)
def test_check_with_a_rejected_key_says_so_after_one_request(claude: Any, server: FakeAnthropicServer) -> None:
    server.api_key = "another-key"
    assert claude.check() == "the API rejected ANTHROPIC_API_KEY (401 invalid x-api-key)"
    assert len(server.requests_to(MODELS_PATH)) == 1 and claude.waits == []


@pytest.mark.timeout(30)
def test_check_with_the_server_down_says_it_cannot_reach_it(env: pytest.MonkeyPatch, module: ModuleType) -> None:
    url = closed_port_url()
    env.setenv("ANTHROPIC_BASE_URL", url)
    assert make_claude(module).check() == f"cannot reach {url} (connection refused)"


@pytest.mark.timeout(30)
def test_check_with_a_server_that_never_answers_times_out_quickly(env: pytest.MonkeyPatch, module: ModuleType) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (in the backlog), never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        env.setenv("ANTHROPIC_BASE_URL", url)
        client = make_claude(module)
        client.check_timeout = 0.3
        began = time.monotonic()
        assert client.check() == f"cannot reach {url} (no data from {url} for 0.3 s (read timeout))"
        assert time.monotonic() - began < 3  # one attempt, no retries


# -- token_counting(): exact, or an estimate and why ------------------------------------------


@pytest.mark.timeout(30)
def test_token_counting_is_exact_then_an_estimate_after_a_fallback_then_exact_again(claude: Any, server: FakeAnthropicServer) -> None:
    assert claude.token_counting() == "exact: Anthropic's count_tokens API"
    server.token_count = 11
    assert claude.count_tokens("first text") == 11
    assert claude.token_counting() == "exact: Anthropic's count_tokens API"

    server.api_key = "rotated-key"
    assert claude.count_tokens("second text") == cl100k_estimate("second text")
    said, _, seconds = claude.token_counting().rpartition(" again in ")
    assert said == (
        "estimate: tiktoken cl100k_base x 1.5, rounded up, because Anthropic's count_tokens API failed "
        "(401 invalid x-api-key); texts counted before keep their exact counts; the API is tried"
    )
    assert seconds.endswith(" s") and 290 <= int(seconds[:-2]) <= 300, seconds  # counting down from 300 (a loaded machine is slow)
    assert claude.count_tokens("first text") == 11  # as it says: the cached exact count
    assert len(server.requests_to(COUNT_PATH)) == 2  # and the failed API is left alone

    server.api_key = KEY
    now = claude._clock()
    claude._clock = lambda: now + claude.endpoint_cooldown + 1
    assert "the API is tried again on the next new text" in claude.token_counting()
    assert claude.count_tokens("third text") == 11
    assert claude.token_counting() == "exact: Anthropic's count_tokens API"


@pytest.mark.timeout(30)
def test_token_counting_without_a_key_or_a_server_is_an_estimate(env: pytest.MonkeyPatch, module: ModuleType) -> None:
    url = closed_port_url()
    env.setenv("ANTHROPIC_BASE_URL", url)
    unreachable = make_claude(module)
    assert unreachable.count_tokens("hello world") == cl100k_estimate("hello world")
    assert f"failed (cannot reach {url}: connection refused)" in unreachable.token_counting()
    env.delenv("ANTHROPIC_API_KEY")
    keyless = make_claude(module)
    assert keyless.token_counting() == "estimate: tiktoken cl100k_base x 1.5, rounded up (ANTHROPIC_API_KEY is not set)"
    assert keyless.count_tokens("hello world") == cl100k_estimate("hello world")


# -- sandbox refusals: recognised, never retried ---------------------------------------------


@pytest.fixture
def refused_connects(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Make connect() fail as Landlock's TCP rule makes it fail; record each attempt."""
    attempts: list[object] = []

    def refuse(sock: socket.socket, address: object) -> None:
        attempts.append(address)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["generate", "stream"])
def test_a_refused_connection_raises_permission_error_once(
    claude: Any, server: FakeAnthropicServer, refused_connects: list[object], mode: str
) -> None:
    with pytest.raises(PermissionError) as exc:
        if mode == "stream":
            list(claude.stream_response("", "hi", 64))
        else:
            claude.generate_response("", "hi", 64)
    assert assert_one_line(exc) == f"the sandbox refused a connection to 127.0.0.1:{server.port}"
    assert len(refused_connects) == 1 and claude.waits == []  # no retries, no back-off


@pytest.mark.timeout(30)
def test_a_refused_connection_in_check_and_counting_names_the_endpoint(
    claude: Any, server: FakeAnthropicServer, refused_connects: list[object]
) -> None:
    refused = f"the sandbox refused a connection to 127.0.0.1:{server.port}"
    assert claude.check() == refused
    assert claude.count_tokens("hello world") == cl100k_estimate("hello world")
    assert f"failed ({refused})" in claude.token_counting()
    assert len(refused_connects) == 2


@pytest.mark.timeout(30)
def test_the_endpoint_of_a_default_https_url_includes_its_port(
    env: pytest.MonkeyPatch, module: ModuleType, refused_connects: list[object]
) -> None:
    env.setenv("ANTHROPIC_BASE_URL", "https://localhost")  # resolves offline, unlike api.anthropic.com
    with pytest.raises(PermissionError, match=r"^the sandbox refused a connection to localhost:443$"):
        make_claude(module).generate_response("", "hi", 16)


# -- timeouts ----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_the_plugin_times_out_before_the_host_does() -> None:
    module = load_plugin("claude_plugin.py")[0]
    host = Deadlines()
    client = module.ClaudeClient
    assert client.connect_timeout + client.read_timeout < min(host.first_chunk, host.idle)
    assert client.connect_timeout + client.reply_timeout < host.total
    assert client.count_timeout < host.count_tokens


@pytest.mark.timeout(30)
def test_a_stalled_stream_names_the_timeout_that_fired(claude: Any, server: FakeAnthropicServer) -> None:
    server.chunk_delay = 1.0
    claude.read_timeout = 0.2
    with pytest.raises(RuntimeError) as exc:
        list(claude.stream_response("", "hi", 64))
    assert assert_one_line(exc) == f"Anthropic API: request timed out: no data from {server.base_url} for 0.2 s (read timeout)"


# -- temperature -------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["generate", "stream"])
def test_temperature_reaches_a_model_that_accepts_it(
    env: pytest.MonkeyPatch, module: ModuleType, server: FakeAnthropicServer, mode: str
) -> None:
    env.setenv("SANDCHAT_CLAUDE_MODEL", "claude-sonnet-4-6")
    client = make_claude(module)
    if mode == "stream":
        assert "".join(client.stream_response("", "hi", 50, temperature=0.3)) == REPLY
    else:
        assert client.generate_response("", "hi", 50, temperature=0.3) == REPLY
    request = server.requests_to(MESSAGES_PATH)[-1]
    assert request.body["temperature"] == 0.3 and request.body["max_tokens"] == 50
    assert request.headers["anthropic-version"] == "2023-06-01"  # the version that still takes it
    assert server.requests_to(MESSAGES_PATH)[-1].headers.get("anthropic-version") != "2026-10-21"


@pytest.mark.timeout(30)
def test_temperature_is_not_sent_where_it_is_rejected_and_that_is_said_once(
    claude: Any, server: FakeAnthropicServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert claude.model in SAMPLING_DEPRECATED  # the default model rejects sampling parameters
    assert claude.generate_response("", "hi", 50, temperature=0.3) == REPLY
    assert "".join(claude.stream_response("", "hi", 50, temperature=0.3)) == REPLY
    for request in server.requests_to(MESSAGES_PATH):
        assert "temperature" not in request.body and request.headers["anthropic-version"] == "2026-10-21"
    notes = capsys.readouterr().err.splitlines()
    assert notes == ["claude: temperature 0.3 is not sent: claude-sonnet-5-5 rejects sampling parameters (Claude 4.7 and later do)"]


@pytest.mark.timeout(30)
def test_a_temperature_out_of_range_is_an_error_before_any_request(
    env: pytest.MonkeyPatch, module: ModuleType, server: FakeAnthropicServer
) -> None:
    env.setenv("SANDCHAT_CLAUDE_MODEL", "claude-haiku-4-5")
    with pytest.raises(RuntimeError) as exc:
        list(make_claude(module).stream_response("", "hi", 50, temperature=1.5))
    assert assert_one_line(exc) == "Anthropic API: temperature must be between 0 and 1 for Claude (got 1.5)"
    assert server.request_count == 0


@pytest.mark.timeout(30)
def test_the_fake_api_rejects_temperature_as_the_real_one_does(server: FakeAnthropicServer) -> None:
    """The premise of the two tests above, on the wire: why the plugin picks version and model."""
    import anthropic

    sdk = anthropic.Anthropic(api_key=KEY, base_url=server.base_url, max_retries=0)
    body = {"temperature": 0.3}
    with pytest.raises(anthropic.BadRequestError, match="not supported in API version 2026-10-21"):
        sdk.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}], extra_body=body)
    legacy = {"anthropic-version": "2023-06-01"}
    with pytest.raises(anthropic.BadRequestError, match="`temperature` is deprecated for this model"):
        sdk.messages.create(
            model="claude-sonnet-5-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}], extra_body=body, extra_headers=legacy
        )


# -- through the real sandbox ------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_sandboxed_without_a_grant_the_refusal_is_a_permission_error_at_once(home: Path, server: FakeAnthropicServer) -> None:
    environ = {"ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": KEY}
    with make_manager(home, environ) as manager:
        claude = manager.handle("claude")
        assert claude.start()["sandbox"]["profile"] == "network"  # started first: time only the call
        assert claude.config.sandbox.endpoints == (
            runner.parse_endpoint("api.anthropic.com:443"),
        )  # as shipped: no grant for the fake's port
        began = time.monotonic()
        with pytest.raises(runner.PluginRaised) as exc:
            "".join(claude.stream_response("", "hi", 16))
        elapsed = time.monotonic() - began
        assert exc.value.remote_type == "PermissionError"
        assert str(exc.value) == f"plugin 'claude' raised PermissionError: the sandbox refused a connection to 127.0.0.1:{server.port}"
        assert elapsed < 1.0  # no retries: two back-offs alone would take over 1.1 s
        assert claude.running  # the plugin is fine; only the grant is missing
    assert server.connection_count == 0 and server.requests == []


@pytest.fixture
def sandboxed(home: Path, server: FakeAnthropicServer) -> Iterator[runner.Plugin]:
    environ = {"ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": KEY, "SANDCHAT_CLAUDE_MODEL": "claude-sonnet-4-6"}
    with make_manager(home, environ) as manager:
        grant_port(manager, "claude", server.port, CLAUDE_ENV)
        yield manager.handle("claude")


@pytest.mark.timeout(60)
def test_sandboxed_a_cut_stream_delivers_the_text_then_fails(sandboxed: runner.Plugin, server: FakeAnthropicServer) -> None:
    server.queue_stream_ending("cut", after_chunks=3)
    received, error = stream_until_error(iter(sandboxed.stream_response("", "hi", 64)))
    assert received == WORDS[:3]
    assert isinstance(error, runner.PluginRaised) and error.remote_type == "RuntimeError"
    assert str(error) == f"plugin 'claude' raised RuntimeError: {CUT}"
    assert "".join(sandboxed.stream_response("", "hi", 64)) == REPLY  # the process carries on


@pytest.mark.timeout(60)
def test_sandboxed_an_empty_answer_fails(sandboxed: runner.Plugin, server: FakeAnthropicServer) -> None:
    server.reply = ""
    with pytest.raises(runner.PluginRaised, match=r"the model returned no text \(stop_reason: end_turn\)$"):
        sandboxed.generate_response("", "hi", 64)


@pytest.mark.timeout(60)
def test_sandboxed_temperature_reaches_the_server(sandboxed: runner.Plugin, server: FakeAnthropicServer) -> None:
    assert "".join(sandboxed.stream_response("", "hi", 40, temperature=0.25)) == REPLY
    request = server.requests_to(MESSAGES_PATH)[-1]
    assert request.body["temperature"] == 0.25 and request.body["max_tokens"] == 40
    assert request.headers["anthropic-version"] == "2023-06-01"
