# /// plugin
# description = "Reports FAKE_API_KEY as it sees it (the env-grant test; this copy is granted)."
# env = ["FAKE_API_KEY"]
# ///
"""Env-grant probe: returns the value of FAKE_API_KEY, or '<absent>'."""
import os

from llm_utils import LLMClient


class KeyGranted(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return os.environ.get("FAKE_API_KEY", "<absent>")

    def count_tokens(self, text):
        return len(text.split())
