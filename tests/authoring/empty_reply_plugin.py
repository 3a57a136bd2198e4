"""generate_response returns an empty string."""
from llm_utils import LLMClient


class EmptyReply(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return ""

    def count_tokens(self, text):
        return len(text.split())
