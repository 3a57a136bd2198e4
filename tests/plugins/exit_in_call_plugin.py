"""Calls sys.exit(7) inside generate_response."""
import sys

from llm_utils import LLMClient


class ExitInCall(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        sys.exit(7)

    def count_tokens(self, text):
        return 1
