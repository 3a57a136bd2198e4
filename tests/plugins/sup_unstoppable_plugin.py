"""Will not stop politely: ignores SIGTERM, and a non-daemon thread keeps it alive after shutdown.

A shutdown request ends the serve loop, but the interpreter then waits forever for the
thread started at import; SIGTERM is ignored. Only SIGKILL ends it.
"""
import signal
import threading

from llm_utils import LLMClient

signal.signal(signal.SIGTERM, signal.SIG_IGN)
threading.Thread(target=threading.Event().wait, name="keeps-me-alive", daemon=False).start()


class Unstoppable(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return f"unstoppable: {user_message}"

    def count_tokens(self, text):
        return len(text)
