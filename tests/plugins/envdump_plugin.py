"""Replies with the names (never the values) of the variables in its environment, one a line."""
import os

from llm_utils import LLMClient


class EnvDump(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "\n".join(sorted(os.environ))

    def count_tokens(self, text):
        return len(text.split())
