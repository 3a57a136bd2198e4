"""count_tokens takes far too long on a long text."""
import time

from llm_utils import LLMClient


class SlowCount(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "fine"

    def count_tokens(self, text):
        if len(text) > 50_000:
            time.sleep(60)
        return len(text.split())
