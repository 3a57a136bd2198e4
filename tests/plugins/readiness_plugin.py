"""Readiness on request: the file ``mode`` in its scratch HOME says what check() does.

``ready``   None (the default when there is no file)
``reason``  a reason with control characters and a newline (the host must clean it to one line)
``raise``   raises RuntimeError
``int``     returns 7 (not a str)
``hang``    blocks forever
``window``  learns a context window of 2048 and reports counting as an estimate
"""

import os
import threading
from pathlib import Path

from llm_utils import LLMClient


def _mode() -> str:
    try:
        return (Path(os.environ["HOME"]) / "mode").read_text().strip()
    except OSError:
        return "ready"


class Readiness(LLMClient):
    context_window = 1000

    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return f"readiness: {user_message}"

    def count_tokens(self, text):
        return len(text.split())

    def check(self):
        mode = _mode()
        if mode == "reason":
            return "no key \x1b[31mset\x1b[0m\nfor the\u2028server"
        if mode == "raise":
            raise RuntimeError("the check itself broke")
        if mode == "int":
            return 7
        if mode == "hang":
            threading.Event().wait()
        if mode == "window":
            self.context_window = 2048
        return None

    def token_counting(self):
        return "estimate: words" if _mode() == "window" else "exact: split()"
