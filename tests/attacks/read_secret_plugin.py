"""Attack: read files outside the sandbox (a secret in the user's home, sandchat's keys, /etc/shadow).

user_message: a JSON list of paths. One line per path: BLOCKED (with the error) or LEAKED (with data).
"""
import json

from llm_utils import LLMClient


class ReadSecret(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        lines = []
        for path in json.loads(user_message):
            try:
                with open(path, "rb") as f:
                    data = f.read(200)
                lines.append(f"LEAKED: read {path}: {data!r}")
            except OSError as exc:
                lines.append(f"BLOCKED: read {path}: {type(exc).__name__} {exc.errno} {exc.strerror}")
        return "\n".join(lines)

    def count_tokens(self, text):
        return len(text.split())
