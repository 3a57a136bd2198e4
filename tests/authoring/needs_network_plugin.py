# /// plugin
# description = "Needs its API: raises without network and key, as it should."
# network = ["api.example.com:443"]
# env = ["NEEDS_NETWORK_KEY"]
# ///
"""Requests network and a key; without them (as in the check) it raises a clear error."""
import os

from llm_utils import LLMClient


class NeedsNetwork(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        if not os.environ.get("NEEDS_NETWORK_KEY"):
            raise RuntimeError("NEEDS_NETWORK_KEY is not set: run `sandchat keys set NEEDS_NETWORK_KEY`")
        return "fine"

    def count_tokens(self, text):
        return len(text.split())
