"""``python -m bench.fuzz [--frames N] [--seed S]``: the host-side fuzz, as long as you like.

The same harness as ``tests/test_fuzz_host.py`` (which runs 100,000 frames in CI): a
child process (``tests/fuzz/frames.py``) writes seeded frames through a real pipe, and
the host decodes each with a fresh hostile decoder, split across reads, and judges it
as the connection would. Prints the outcomes, the frames per second and the host's peak
RSS growth; exits 1 if any outcome is not a message or a protocol error.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import runner
from runner.handshake import check_hello
from runner.protocol import NOTIFICATION, RESPONSE, Decoder, ProtocolViolation, check_response

ROOT = Path(__file__).resolve().parent.parent
OUTCOMES = {"answer", "hello", "notification", "violation", "plugin error", "incomplete"}


def judge(message: list[Any]) -> str:
    """What the connection would make of a decoded message: an answer, or a PluginError."""
    try:
        if message[0] == RESPONSE:
            check_response(message, message[1])
            return "answer"
        if message[0] == NOTIFICATION and message[1] == "hello":
            check_hello("fuzz", message, ())
            return "hello"
        return "notification"
    except ProtocolViolation:
        return "violation"
    except runner.PluginError:
        return "plugin error"


def decode(data: bytes, rng: random.Random) -> str:
    """Decode one frame as the host does, split into up to three reads; the outcome's name."""
    decoder = Decoder(16 * 2**20, hostile=True)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(3)))) if len(data) > 1 else []
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    try:
        if len(pieces) == 1:
            message = decoder.single(pieces[0])
            if message is not None:
                return judge(message)
        for piece in pieces:
            for message in decoder.feed(piece):
                return judge(message)  # the first message decides; a real connection reads on
        return "incomplete"
    except ProtocolViolation:
        return "violation"


def status(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise RuntimeError("the frame child ended early")
    return data


def run(seed: int, frames: int) -> tuple[dict[str, int], int, float]:
    """Fuzz ``frames`` frames; return the outcomes, the peak RSS growth (bytes) and seconds."""
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    child = subprocess.Popen([sys.executable, "-m", "tests.fuzz.frames", str(seed), str(frames)], cwd=ROOT, stdout=subprocess.PIPE)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS: measure this run alone
    before, began = status("VmRSS"), time.monotonic()
    try:
        for _ in range(frames):
            size = int.from_bytes(read_exactly(child.stdout, 4), "big")  # type: ignore[arg-type]
            outcome = decode(read_exactly(child.stdout, size), rng)  # type: ignore[arg-type]
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    finally:
        child.stdout.close()  # type: ignore[union-attr]
        child.wait(30)
    return outcomes, status("VmHWM") - before, time.monotonic() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args(argv)
    outcomes, grown, seconds = run(args.seed, args.frames)
    print(f"{args.frames:,} frames, seed {args.seed}, {seconds:.1f} s ({args.frames / seconds:,.0f} frames/s)")
    print(f"outcomes: {outcomes}")
    print(f"host peak RSS growth: {grown / 2**20:.1f} MiB")
    return 0 if set(outcomes) <= OUTCOMES and sum(outcomes.values()) == args.frames else 1


if __name__ == "__main__":
    sys.exit(main())
