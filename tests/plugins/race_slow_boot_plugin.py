"""Takes 4 s to import (a cold start with heavy imports), then answers at once."""
import time

from llm_utils import LLMClient

time.sleep(4)


class RaceSlowBoot(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return f"race_slow_boot: {user_message}"

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        yield "race_slow_boot"

    def count_tokens(self, text):
        return len(text)
