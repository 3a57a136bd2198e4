# /// plugin
# description = "Dies of SIGSEGV in every reply."
# ///
"""Crashes its process in every reply."""
import ctypes
import faulthandler

from llm_utils import LLMClient

faulthandler.disable()


class Crasher(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return ctypes.string_at(0).decode()

    def count_tokens(self, text):
        return len(text.split())
