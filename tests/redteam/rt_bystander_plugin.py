# /// plugin
# description = "Red team bystander: an honest network plugin that must keep working during attacks."
# ///
"""Connects to the HOST:PORT it is given and sends 'bystander'; answers one line."""
import json
import socket

from llm_utils import LLMClient


class Bystander(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        host, port = json.loads(user_message)
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"bystander")
        return "connected"

    def count_tokens(self, text):
        return 1
