"""Dereferences NULL through ctypes in generate_response: the process dies of SIGSEGV."""
import ctypes
import faulthandler

from llm_utils import LLMClient

faulthandler.disable()  # die of the signal itself, as native code would


class Segfault(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return ctypes.string_at(0).decode()

    def count_tokens(self, text):
        return len(text.split())
