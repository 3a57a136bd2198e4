"""Ignores cancels and SIGTERM: generate_response('block') never returns.

SIGTERM is ignored from import on; a blocked generation does not look at the cancel.
Before blocking it creates the file ``blocking`` in its working directory (its scratch
dir), so a test knows the request has arrived. Any other message is answered at once.
"""
import signal
import threading

from llm_utils import LLMClient

signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Deaf(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        if user_message == "block":
            with open("blocking", "w") as f:
                f.write("yes")
            threading.Event().wait()
        return f"deaf: {user_message}"

    def count_tokens(self, text):
        return len(text)
