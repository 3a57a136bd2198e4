"""Streams its answer one character at a time with tiny random pauses (0-5 ms).

For the soak test: the text is 'trickle: <message>' whichever way it is asked for;
count_tokens counts characters.
"""
import random
import time

from llm_utils import LLMClient


class Trickle(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "".join(self.stream_response(system, user_message, max_tokens, temperature))

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        for ch in f"trickle: {user_message}":
            time.sleep(random.uniform(0, 0.005))
            yield ch

    def count_tokens(self, text):
        time.sleep(random.uniform(0, 0.005))
        return len(text)
