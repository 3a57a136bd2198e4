"""Not deterministic: every reply differs, so a stream that differs from a reply is fine."""
import itertools

from llm_utils import LLMClient


class RandomStream(LLMClient):
    def __init__(self):
        self.counter = itertools.count()

    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return f"reply number {next(self.counter)}"

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        yield f"streamed reply number {next(self.counter)}"

    def count_tokens(self, text):
        return len(text.split())
