# /// plugin
# description = "A plugin the tests turn off (SANDCHAT_DISABLE_PLUGINS)."
# ///
"""Would answer, if it were on."""
from llm_utils import LLMClient


class Off(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "on after all"

    def count_tokens(self, text):
        return len(text.split())
