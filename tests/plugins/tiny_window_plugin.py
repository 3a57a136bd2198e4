"""A plugin with a 60-token context window that counts one token per word and reports what it saw."""
from llm_utils import LLMClient


class TinyWindow(LLMClient):
    context_window = 60

    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return f"saw: {user_message}"

    def generate_chat(self, system, messages, max_tokens=4096, temperature=0.8):
        return "saw " + " | ".join(m["content"] for m in messages)

    def count_tokens(self, text):
        return len(text.split())
