# /// plugin
# description = "Red team: the reply a test asks for (CHUNKS:<json list>, BIG:<bytes>, DEEP:<char>:<count>, MANY:<count>:<size>)."
# ///
"""Replies a test chooses byte by byte: chunk boundaries, sizes and nesting the page's textarea cannot express."""

import json

from llm_utils import LLMClient


def _pieces(text):
    if text.startswith("CHUNKS:"):
        return list(json.loads(text.removeprefix("CHUNKS:")))
    if text.startswith("BIG:"):
        size = int(text.removeprefix("BIG:"))
        unit = "**bold** `code` [l](https://example.com/) &#106;avascript:x <img src=x onerror=window.__pwned=1>\n"
        body = (unit * (size // len(unit) + 1))[:size]
        return [body[i : i + 65536] for i in range(0, len(body), 65536)]
    if text.startswith("MANY:"):
        _, count, size = text.split(":", 2)
        return ["x" * (int(size) - 1) + " " for _ in range(int(count))]
    if text.startswith("DEEP:"):
        _, char, count = text.split(":", 2)
        return [char * int(count) + " deep <img src=x onerror=window.__pwned=1>"]
    return [text]


class Gen(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "".join(_pieces(user_message))

    def stream_chat(self, system, messages, max_tokens=4096, temperature=0.8):
        yield from _pieces(messages[-1]["content"])

    def count_tokens(self, text):
        return len(text) // 4
