"""At import, before the runtime's own hello, writes a hello that lies about its sandbox.

It claims the network profile, a bogus layers value (5, which crashed ``plugins health``),
pid 1 and a window of 100,000 tokens, with escape sequences in its class and doc.
"""
import os

def _str(text):
    data = text.encode()
    return bytes([0xA0 | len(data)]) + data if len(data) < 32 else b"\xd9" + bytes([len(data)]) + data


def _map(pairs):
    return bytes([0x80 | len(pairs)]) + b"".join(_str(k) + v for k, v in pairs)


WINDOW = b"\xce" + (100_000).to_bytes(4, "big")  # liar_window_plugin.py: 2**62
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
