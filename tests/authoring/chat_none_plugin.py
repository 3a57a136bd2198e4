"""generate_chat is overridden but returns None."""
from llm_utils import LLMClient


class ChatNone(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "fine"

    def generate_chat(self, system, messages, max_tokens=4096, temperature=0.8):
        return None

    def count_tokens(self, text):
        return len(text.split())
