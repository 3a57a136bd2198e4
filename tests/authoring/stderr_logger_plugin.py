"""Logs to stderr, as the guide recommends: a warning in the check, not a failure."""
import logging

from llm_utils import LLMClient

log = logging.getLogger("stderr_logger")


class StderrLogger(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        log.warning("answering %d characters", len(user_message))
        return "fine"

    def count_tokens(self, text):
        return len(text.split())
