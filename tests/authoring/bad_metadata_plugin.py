# /// plugin
# description = "network is given as a string"
# network = "api.example.com:443"
# ///
"""The network entry is a string, not a list: the metadata block is invalid."""
from llm_utils import LLMClient


class BadMetadata(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "fine"

    def count_tokens(self, text):
        return len(text.split())
