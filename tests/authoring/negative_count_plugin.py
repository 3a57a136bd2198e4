"""count_tokens returns a negative number."""
from llm_utils import LLMClient


class NegativeCount(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "fine"

    def count_tokens(self, text):
        return -1
