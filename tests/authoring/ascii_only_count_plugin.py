"""count_tokens breaks on non-ASCII text."""
from llm_utils import LLMClient


class AsciiOnly(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "fine"

    def count_tokens(self, text):
        return len(text.encode("ascii").split())
