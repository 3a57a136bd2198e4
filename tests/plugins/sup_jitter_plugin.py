"""Answers after a small random delay (0-20 ms); the answer itself is deterministic.

For the soak test: generate_response returns 'jitter: <message>', stream_response
yields the same text word by word with random pauses, count_tokens counts words.
"""
import random
import time

from llm_utils import LLMClient


def _pause():
    time.sleep(random.uniform(0, 0.02))


class Jitter(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        _pause()
        return f"jitter: {user_message}"

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        yield "jitter: "
        for i, word in enumerate(user_message.split(" ")):
            _pause()
            yield (" " if i else "") + word

    def count_tokens(self, text):
        _pause()
        return len(text.split())
