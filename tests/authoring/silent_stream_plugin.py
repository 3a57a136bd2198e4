"""stream_response yields nothing at all."""
from llm_utils import LLMClient


class SilentStream(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "fine"

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return iter(())

    def count_tokens(self, text):
        return len(text.split())
