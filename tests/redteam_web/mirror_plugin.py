# /// plugin
# description = "Red team: replies with exactly the last message it was sent, so a test chooses the reply's Markdown."
# ///
"""Mirrors the user's last message back as the reply (the test writes the hostile Markdown)."""
from llm_utils import LLMClient


class Mirror(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return user_message

    def stream_chat(self, system, messages, max_tokens=4096, temperature=0.8):
        text = messages[-1]["content"]
        if text.startswith("SPLIT:"):
            text = text.removeprefix("SPLIT:")
            yield text[: len(text) // 2]
            yield text[len(text) // 2 :]
        else:
            yield text

    def count_tokens(self, text):
        return len(text.split())
