"""Attack: connect to a pathname unix socket (the kind D-Bus, ssh-agent and docker.sock use).

user_message: the socket's path.
"""
import socket

from llm_utils import LLMClient


class UnixSocket(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(user_message)
                sock.sendall(b"exfiltrated")
        except OSError as exc:
            return f"BLOCKED: unix connect {user_message}: {type(exc).__name__} {exc.errno} {exc.strerror}"
        return f"LEAKED: unix connect {user_message}: sent"

    def count_tokens(self, text):
        return len(text.split())
