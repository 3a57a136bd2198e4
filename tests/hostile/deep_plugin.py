"""Writes a response whose error map is nested 1,000 arrays deep onto the protocol fd.

Describing it recursively raised RecursionError, which escaped the API and ended the chat.
"""
import os

from llm_utils import LLMClient


class Deep(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        padding = int(user_message)  # a long string in the result makes the message a long one
        tail = b"\xda" + padding.to_bytes(2, "big") + b"x" * padding if padding else b"\xc0"
        os.write(4, b"\x94\x01\x01" + b"\x91" * 1000 + b"\xc0" + tail)
        return "unreachable"

    def count_tokens(self, text):
        return 1
