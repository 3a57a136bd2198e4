"""Forges its own reply on the protocol fd: a count_tokens answer of the wrong type."""
import os

from llm_utils import LLMClient


class ForgedResult(LLMClient):
    calls = 0

    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "fine"

    def count_tokens(self, text):
        # The runner would refuse to send "five"; write [1, msgid, nil, "five"] ourselves.
        # Requests are numbered from 1 and the ping of start-up is not sent, so this is id 1.
        os.write(4, b"\x94\x01\x01\xc0\xa4five")
        return 5
