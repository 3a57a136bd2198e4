# /// plugin
# description = "Answers with the whole history it was sent, so a test sees what the plugin saw."
# ///
"""Repeats the history it received, in two pieces."""
from llm_utils import LLMClient


class Recall(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return f"recall: {user_message}"

    def stream_chat(self, system, messages, max_tokens=4096, temperature=0.8):
        yield "recall saw "
        yield " | ".join(m["content"] for m in messages)

    def count_tokens(self, text):
        return len(text.split())
