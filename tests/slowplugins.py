"""Two plugins' code for the Ctrl-C tests: one slow to start, one slow to count tokens.

Written to a temporary plugin folder by the tests that need them (tests/test_chat_tmux.py,
tests/test_chat_ux.py), so no shared plugin folder lists them.
"""

SLOW_BOOT = """import threading
threading.Event().wait(30)  # starts slowly: /health and /plugin wait on it
from llm_utils import LLMClient
class SlowBoot(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "late"
    def count_tokens(self, text):
        return 1
"""

SLOW_COUNT = """import threading
from llm_utils import LLMClient
class SlowCount(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "late"
    def count_tokens(self, text):
        threading.Event().wait(30)  # counts slowly: /tokens waits on it
        return 1
"""
