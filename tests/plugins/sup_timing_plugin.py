"""Misses deadlines on request: the user message says how.

``first:S``  sleeps S seconds before its first chunk (or before a whole reply)
``idle:S``   sends one chunk, then sleeps S seconds before the next
``flood``    streams a chunk every 10 ms and never finishes on its own
``tokens``   count_tokens with the text ``hang`` blocks forever
anything else is answered at once.
"""
import threading
import time

from llm_utils import LLMClient


def _seconds(message, prefix):
    return float(message[len(prefix):]) if message.startswith(prefix) else 0.0


class Timing(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        time.sleep(_seconds(user_message, "first:"))
        return f"timing: {user_message}"

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        time.sleep(_seconds(user_message, "first:"))
        yield "one"
        time.sleep(_seconds(user_message, "idle:"))
        if user_message == "flood":
            while True:
                yield "."
                time.sleep(0.01)
        yield " two"

    def count_tokens(self, text):
        if text == "hang":
            threading.Event().wait()
        return len(text)
