"""Writes one endless message of many small strings straight onto the protocol fd."""
import os
import select

from llm_utils import LLMClient


def write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


class ManyPieces(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        # [1, 1, nil, [ "xxxx...", ... ]] with 2**24 strings of 19 bytes: 320 MiB in pieces
        write_all(4, b"\x94\x01\x01\xc0\xdd\x01\x00\x00\x00")
        piece = b"\xb3" + b"x" * 19
        block = piece * 3000
        while True:
            write_all(4, block)

    def count_tokens(self, text):
        return 1
