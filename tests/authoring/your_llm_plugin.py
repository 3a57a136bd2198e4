"""The original plugin guide's "minimal plugin" example: it imports a library that does not exist."""
from llm_utils import LLMClient
import your_llm_library


class YourLLMClient(LLMClient):
    def __init__(self):
        self.client = your_llm_library.Client()

    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        response = self.client.generate(
            system_prompt=system,
            user_input=user_message,
            max_length=max_tokens,
            temperature=temperature
        )
        return response.text

    def count_tokens(self, text):
        return self.client.count_tokens(text)
