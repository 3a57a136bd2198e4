"""Defines two concrete LLMClient subclasses: which one is meant is ambiguous."""
from llm_utils import LLMClient


class First(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "first"

    def count_tokens(self, text):
        return 1


class Second(First):
    pass
