"""Streams ten numbered chunks; its count_tokens answers 7."""
from llm_utils import LLMClient


class StreamReentry(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "".join(self.stream_response(system, user_message))

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        for i in range(10):
            yield f"{i} "

    def count_tokens(self, text):
        return 7
