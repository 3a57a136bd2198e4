"""Attack: fork in a loop (bounded to 64; each child exits at once). Must fail on the first fork."""
import os

from llm_utils import LLMClient


class ForkBomb(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        forks = 0
        try:
            for _ in range(64):
                pid = os.fork()
                if pid == 0:
                    os._exit(0)
                os.waitpid(pid, 0)
                forks += 1
        except OSError as exc:
            return f"BLOCKED: fork after {forks} forks: {type(exc).__name__} {exc.errno} {exc.strerror}"
        return f"LEAKED: fork: {forks} forks succeeded"

    def count_tokens(self, text):
        return len(text.split())
