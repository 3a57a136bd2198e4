# /// plugin
# description = "Needs the network: connects to 127.0.0.1:9 (nothing listens there)"
# network = ["127.0.0.1:9"]
# ///
"""Tries a TCP connection in every reply, to show what a missing grant looks like."""
import socket

from llm_utils import LLMClient


class NeedsNet(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        with socket.create_connection(("127.0.0.1", 9), timeout=2):
            return "connected"

    def count_tokens(self, text):
        return len(text.split())
