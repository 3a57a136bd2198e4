"""Never answers: generate_response and count_tokens block forever."""
import threading

from llm_utils import LLMClient


class Hang(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        threading.Event().wait()

    def count_tokens(self, text):
        threading.Event().wait()
