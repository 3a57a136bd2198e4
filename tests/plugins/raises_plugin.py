"""Raises a ValueError from deep inside generate_response."""
from llm_utils import LLMClient


def _inner_helper(message):
    raise ValueError(f"model rejected {message!r}")


class Raises(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return _inner_helper(user_message)

    def count_tokens(self, text):
        return 1
