"""stream_response yields bytes instead of str."""
from llm_utils import LLMClient


class BytesChunk(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "fine"

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        yield b"fine"

    def count_tokens(self, text):
        return len(text.split())
