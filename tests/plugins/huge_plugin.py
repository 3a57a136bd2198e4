"""Answers with 20 MiB of text, past the host's 16 MiB message cap."""
from llm_utils import LLMClient


class Huge(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "x" * (20 * 1024 * 1024)

    def count_tokens(self, text):
        return 1
