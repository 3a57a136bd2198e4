"""Writes garbage onto the protocol fd in the middle of a call."""
import os

from llm_utils import LLMClient


class Garbage(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        os.write(4, b"\xc1\xc1\xc1 not msgpack")
        return "after garbage"

    def count_tokens(self, text):
        os.write(4, b"\x94\x01\xcd\x03\xe7\xc0\x01")  # [1, 999, nil, 1]: a reply to no request
        return 1
