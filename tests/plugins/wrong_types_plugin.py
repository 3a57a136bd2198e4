"""Returns the wrong types: None from generate_response, strings and negatives from count_tokens."""
from llm_utils import LLMClient


class WrongTypes(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        pass  # the original guide's empty skeleton: returns None

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        yield "fine"
        yield 42

    def count_tokens(self, text):
        if text == "negative":
            return -1
        if text == "bool":
            return True
        return "5"
