"""Answers with the temperature it was called with: its own default is 0.25."""
from llm_utils import LLMClient


class Temperature(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.25):
        return f"temperature {temperature}"

    def count_tokens(self, text):
        return len(text.split())
