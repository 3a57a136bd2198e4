"""Frame generator for the host-side fuzz: seeded, reproducible, runnable as the child.

``python -m tests.fuzz.frames SEED COUNT`` writes COUNT frames to stdout, each as a
4-byte big-endian length and then the frame's bytes, so the host can give every frame a
fresh decoder: a frame that breaks the protocol would otherwise end the stream, as it
ends a plugin's connection. Frames start from the messages a child really sends (hello,
responses, error maps, chunks, unknown notifications) and are then mutated: bytes
flipped, inserted, cut and duplicated; fields swapped for other types; lengths and
counts oversized; containers nested deep or made of millions of empty items; ext types
and the unused 0xc1 byte.
"""

from __future__ import annotations

import random
import sys

import msgpack

_ERROR = {"kind": "plugin", "type": "ValueError", "message": "bad", "traceback": "Traceback ..."}
_HELLO = {"protocol": 2, "pid": 4242, "plugin": "fuzz", "class": "Fuzz", "doc": "", "context_window": 8192,
          "methods": ["stream_response"], "python": "3.11.7", "error": None}  # fmt: skip


def _valid(rng: random.Random) -> list:
    msgid = rng.choice([1, 2, 127, 128, 300, 65536, 2**32 - 1])
    return rng.choice(
        [
            [1, msgid, None, rng.choice(["text", "", "é" * 50, 7, 0, None, True, 1.5])],
            [1, msgid, dict(_ERROR), None],
            [1, msgid, None, {"chunks": rng.randrange(10)}],
            [2, "chunk", [msgid, "piece " * rng.randrange(1, 20)]],
            [2, "hello", dict(_HELLO)],
            [2, "progress", {"n": rng.randrange(100)}],
        ]
    )


def _swap(rng: random.Random, message: list) -> list:
    """Replace one field, at any depth of the message, with a value of another type."""
    other = rng.choice([None, -1, 2**64 - 1, 1.0e308, "", "x" * rng.randrange(100), b"\x00bin", [], {}, [[]] * 50,
                        {"k": [1, {"d": []}]}, True, {1: 2} if False else {"": None}])  # fmt: skip
    target: object = message
    while isinstance(target, (list, dict)) and target and rng.random() < 0.6:
        key = rng.randrange(len(target)) if isinstance(target, list) else rng.choice(list(target))
        child = target[key]  # type: ignore[index]
        if not isinstance(child, (list, dict)) or not child or rng.random() < 0.5:
            target[key] = other  # type: ignore[index]
            return message
        target = child
    return [other] + message[1:] if rng.random() < 0.5 else message[:-1]


def _raw_mutation(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(6)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif kind == 1:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        elif kind == 2:
            del data[at:]
        elif kind == 3:
            data += data[: rng.randrange(len(data) + 1)]
        elif kind == 4:
            data[at:at] = rng.choice([b"\xc1", b"\xc7\x01\x05x", b"\xd4\x01\x00", b"\xdb\x7f\xff\xff\xff", b"\xdd\xff\xff\xff\xff"])
        else:
            data[at:at] = rng.choice([b"\x90", b"\x80", b"\xc0"]) * rng.randrange(1, 64)
    return bytes(data)


def _hostile(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:  # deep nesting
        depth = rng.choice([17, 100, 1000, 5000])
        return b"\x94\x01\x01" + b"\x91" * depth + b"\xc0" + b"\xc0"
    if kind == 1:  # millions of empty containers in one array
        count = rng.choice([5000, 100_000, 2_000_000])
        return b"\x94\x01\x01\xc0\xdd" + count.to_bytes(4, "big") + rng.choice([b"\x90", b"\x80"]) * count
    if kind == 2:  # a length that promises more than any cap
        return b"\x94\x01\x01\xc0\xdb" + rng.choice([2**24 + 1, 2**31, 2**32 - 1]).to_bytes(4, "big") + b"x" * 64
    return b"\x94\x01\x01\xc0\xc1"


def frame(rng: random.Random) -> bytes:
    """One frame: a third valid, a third with a field swapped, a third raw-mutated or hostile."""
    roll = rng.random()
    if roll < 0.33:
        return msgpack.packb(_valid(rng))
    if roll < 0.66:
        return msgpack.packb(_swap(rng, _valid(rng)))
    if roll < 0.97:
        return _raw_mutation(rng, msgpack.packb(_valid(rng)))
    return _hostile(rng)


def main(argv: list[str]) -> int:
    seed, count = int(argv[0]), int(argv[1])
    rng = random.Random(seed)
    out = sys.stdout.buffer
    for _ in range(count):
        data = frame(rng)
        out.write(len(data).to_bytes(4, "big") + data)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
