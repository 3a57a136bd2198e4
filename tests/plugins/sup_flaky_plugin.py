"""Crashes on demand, steered by files the test puts in its working directory (its scratch dir).

While a file ``crash`` exists, every call exits the process with status 13. A file
``crash_once`` makes exactly one call crash (the file is removed first). Otherwise it
answers like a tiny echo.
"""
import os
import sys

from llm_utils import LLMClient

print(f"sup_flaky: ready in pid {os.getpid()}", file=sys.stderr, flush=True)


def _maybe_crash(where):
    if os.path.exists("crash_once"):
        os.remove("crash_once")
        print(f"sup_flaky: crashing once in {where}", file=sys.stderr, flush=True)
        os._exit(13)
    if os.path.exists("crash"):
        print(f"sup_flaky: crashing in {where}", file=sys.stderr, flush=True)
        os._exit(13)


class Flaky(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        _maybe_crash("generate_response")
        return f"flaky: {user_message}"

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        _maybe_crash("stream_response")
        yield "flaky: "
        yield user_message

    def count_tokens(self, text):
        _maybe_crash("count_tokens")
        return len(text.split())
