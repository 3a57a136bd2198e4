"""Floods its stderr, on demand, from a background thread or inside a call.

generate_response(user_message):
  "flood [KIND]"     start a daemon thread writing to fd 2 as fast as it can, forever; the
                     call returns at once, so the plugin is idle between calls while its
                     thread floods. KIND plain (the default): one short line per write(2);
                     escapes: every line carries ANSI escapes; tiny: empty lines; bytes: one
                     byte per write(2), never a newline; blocks: 64 KiB writes of short lines.
  "block N"          write N MiB to stderr inside the call, then answer (blocks on a full pipe)
  "die N"            write N KiB of spam, then a last line, then exit with status 3
  anything else      answered at once: "flood: <message>"
count_tokens answers at once and writes nothing.
"""
import os
import threading

from llm_utils import LLMClient

_LINES = {
    "plain": b"flood: spam spam spam spam spam spam spam spam\n",
    "escapes": b"\x1b[31mflood:\x1b[0m spam \x07spam\x1b]0;title\x07 spam\n",
    "tiny": b"\n",
    "bytes": b"x",
}


def _flood(kind):
    write = os.write
    if kind == "blocks":
        block = _LINES["plain"] * (65536 // len(_LINES["plain"]))
    else:
        block = _LINES[kind]
    while True:
        write(2, block)


class StderrFlood(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        word, _, arg = user_message.partition(" ")
        if word == "flood":
            threading.Thread(target=_flood, args=(arg or "plain",), daemon=True).start()
            return "flooding"
        if word == "block":
            line = _LINES["plain"]
            for _ in range(int(arg) * 2**20 // len(line)):
                os.write(2, line)
            return "written"
        if word == "die":
            line = _LINES["plain"]
            for _ in range(int(arg) * 1024 // len(line)):
                os.write(2, line)
            os.write(2, b"last words before dying\n")
            os._exit(3)
        return f"flood: {user_message}"

    def count_tokens(self, text):
        return len(text)
