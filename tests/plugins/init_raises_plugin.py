"""Raises in __init__, like a plugin whose API key is missing."""
from llm_utils import LLMClient


class NeedsKey(LLMClient):
    def __init__(self):
        raise RuntimeError("EXAMPLE_API_KEY is not set")

    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return ""

    def count_tokens(self, text):
        return 0
