"""generate_response never answers in time."""
import time

from llm_utils import LLMClient


class Sleepy(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        time.sleep(60)
        return "too late"

    def count_tokens(self, text):
        return len(text.split())
