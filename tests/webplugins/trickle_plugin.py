# /// plugin
# description = "Streams a numbered piece every 0.2 s, 40 of them: a reply that arrives visibly in pieces."
# ///
"""Streams slowly, so a page can be seen filling in and stopped halfway."""
import time

from llm_utils import LLMClient


class Trickle(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "".join(self.stream_response(system, user_message, max_tokens, temperature))

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        for i in range(40):
            yield f"piece{i} "
            time.sleep(0.2)

    def count_tokens(self, text):
        return len(text.split())
