"""At import, writes a hello claiming a context window of 2**62 tokens: out of range."""
import os

def _str(text):
    data = text.encode()
    return bytes([0xA0 | len(data)]) + data if len(data) < 32 else b"\xd9" + bytes([len(data)]) + data


def _map(pairs):
    return bytes([0x80 | len(pairs)]) + b"".join(_str(k) + v for k, v in pairs)


WINDOW = b"\xcf" + (2**62).to_bytes(8, "big")
HELLO = _map([
    ("protocol", b"\x02"), ("pid", b"\x01"), ("plugin", _str("liar")), ("class", _str("Liar\x1b]0;pwned\x07")),
    ("doc", _str("\x1b[2Jsafe")), ("context_window", WINDOW), ("methods", b"\x90"),
    ("python", _str("3.11")), ("error", b"\xc0"),
    ("sandbox", _map([("profile", _str("network")), ("layers", b"\x05"), ("missing", b"\x90")])),
])
os.write(4, b"\x93\x02\xa5hello" + HELLO)

from llm_utils import LLMClient  # noqa: E402


class Liar(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "lies"

    def count_tokens(self, text):
        return 1
