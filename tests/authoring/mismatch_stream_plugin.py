"""Deterministic, but streams a different text from the one it returns."""
from llm_utils import LLMClient


class MismatchStream(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "the returned reply"

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        yield "a different "
        yield "streamed reply"

    def count_tokens(self, text):
        return len(text.split())
