"""Streams 1 MiB chunks for ever: the host must not hold them all (it grew 1:1 to 2 GiB)."""
from llm_utils import LLMClient

CHUNK = "x" * 2**20


class Endless(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return CHUNK * 20  # one answer of 20 Mi characters, over the default limit

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        while True:
            yield CHUNK

    def count_tokens(self, text):
        return 1
