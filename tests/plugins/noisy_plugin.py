"""Prints to stdout at import and in every call, through print() and straight to fd 1."""
import os
import sys

from llm_utils import LLMClient

print("noisy: hello from import")
os.write(1, b"\x93\x00\x01\x02 raw bytes on fd 1 at import\n")


class Noisy(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        print("noisy: generating")
        sys.stdout.flush()
        os.write(1, b"\x94\x01\x02\x03\x04")
        return f"noisy answer to {user_message}"

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        for word in ("one", " two", " three"):
            print("noisy chunk", word, flush=True)
            os.write(1, b"\x92\x02\xa3abc")
            yield word

    def count_tokens(self, text):
        print("noisy: counting", flush=True)
        return len(text)
