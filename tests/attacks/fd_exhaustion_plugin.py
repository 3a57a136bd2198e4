"""Attack: open files until the descriptor table is full, and keep them open."""
import os

from llm_utils import LLMClient


class FdExhaustion(LLMClient):
    def __init__(self):
        self.fds = []

    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        try:
            while len(self.fds) < 1_000_000:
                self.fds.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            return f"BLOCKED: open #{len(self.fds)}: {type(exc).__name__} {exc.errno} {exc.strerror}"
        return f"LEAKED: opened {len(self.fds)} files"

    def count_tokens(self, text):
        return len(text.split())
