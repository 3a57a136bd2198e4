"""The original plugin guide's empty skeleton, verbatim in substance: every method is `pass`."""
from llm_utils import LLMClient


class GPT4Client(LLMClient):
    def __init__(self):
        # Initialize your client here
        pass

    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        # Implement the response generation logic
        pass

    def count_tokens(self, text):
        # Implement the token counting logic
        pass
