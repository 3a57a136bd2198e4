"""A plugin with a syntax error on line 5."""
from llm_utils import LLMClient

class Broken(LLMClient)
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "never"
