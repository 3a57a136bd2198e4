"""Answers and logs with terminal escape sequences: a title change, a screen clear, a bell."""
import sys

from llm_utils import LLMClient

EVIL = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m\x07\x9b31m"


class Escapes(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        print(f"log line {EVIL} end", file=sys.stderr, flush=True)
        return f"start {EVIL} finish"

    def count_tokens(self, text):
        if text == "raise":
            raise ValueError(f"bad {EVIL} input")
        return 1
