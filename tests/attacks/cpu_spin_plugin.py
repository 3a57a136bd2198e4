"""Attack: spin the CPU forever in generate_response (count_tokens stays normal)."""
from llm_utils import LLMClient


class CpuSpin(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        n = 0
        while True:
            n += 1

    def count_tokens(self, text):
        return len(text.split())
