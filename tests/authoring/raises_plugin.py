"""generate_response raises, and the plugin requests no permission that could excuse it."""
from llm_utils import LLMClient


class Raises(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        raise ValueError("model exploded")

    def count_tokens(self, text):
        return len(text.split())
