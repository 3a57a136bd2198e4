"""Streams a numbered chunk every 50 ms forever, until cancelled."""
import itertools
import time

from llm_utils import LLMClient


class SlowStream(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "slow"

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        for i in itertools.count():
            yield f"{i} "
            time.sleep(0.05)

    def count_tokens(self, text):
        return len(text)
