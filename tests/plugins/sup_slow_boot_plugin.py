"""Takes about 1.5 s to import, then works: a plugin caught in the middle of starting."""
import time

from llm_utils import LLMClient

time.sleep(1.5)


class SlowBoot(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return f"slow_boot: {user_message}"

    def count_tokens(self, text):
        return len(text)
