# /// plugin
# description = "Never answers: every reply hangs until its deadline."
# ///
"""Hangs in every reply."""
import threading

from llm_utils import LLMClient


class Hanger(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        threading.Event().wait()

    def count_tokens(self, text):
        return len(text.split())
