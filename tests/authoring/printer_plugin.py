"""Prints debugging output to stdout with print()."""
from llm_utils import LLMClient


class Printer(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        print("debug: got", user_message)
        return "fine"

    def count_tokens(self, text):
        return len(text.split())
