"""Figures 1 and 3: the round trip of a tiny call, and the per-chunk cost of a 10,000-chunk stream.

Baseline for both: a raw 1-byte ``os.pipe`` ping-pong between this process and a second
Python process, measured in blocks interleaved with the subject's.
"""

from __future__ import annotations

import time

from bench.common import RawPeer, Row, Settings, Stat, Workspace, interleave, sandbox_note

SHORT_TEXT = "hello world"
STREAM_CHUNKS = 10_000


def run(settings: Settings, placement: str) -> list[Row]:
    reps = settings.pick(6, 30)
    block = settings.pick(200, 500)
    stream_reps = settings.pick(2, 7)
    chunks = settings.pick(2_000, STREAM_CHUNKS)
    raw: list[float] = []
    calls: list[float] = []
    per_chunk: list[float] = []
    with Workspace() as ws, RawPeer("ping") as peer:
        client = ws.client()
        count = client.count_tokens
        clock = time.perf_counter_ns

        def baseline() -> None:
            raw.extend(peer.ping_samples(block))

        def subject() -> None:
            out = calls.append
            for _ in range(block):
                t0 = clock()
                count(SHORT_TEXT)
                out((clock() - t0) / 1000)

        def stream() -> None:
            t0 = time.perf_counter()
            got = sum(1 for _ in client.stream_response("", "go", max_tokens=chunks))
            elapsed = time.perf_counter() - t0
            if got != chunks:
                raise RuntimeError(f"stream gave {got} chunks, expected {chunks}")
            per_chunk.append(elapsed / chunks * 1e6)

        interleave(1, baseline, subject)  # warm-up, not kept
        raw.clear()
        calls.clear()
        interleave(reps, baseline, subject)
        stream_raw: list[float] = []

        def stream_baseline() -> None:
            stream_raw.extend(peer.ping_samples(block))

        interleave(stream_reps, stream_baseline, stream)
        note = sandbox_note(client)
    base, subj = Stat.of(raw), Stat.of(calls)
    sbase, schunk = Stat.of(stream_raw), Stat.of(per_chunk)
    return [
        Row("1", "call overhead (count_tokens, short text)", "µs", subj, "raw 1-byte pipe ping-pong", base,
            subj.median / base.median, "<=", 2.0, note, placement),
        Row("3", f"streaming, per chunk ({chunks:,} one-token chunks)", "µs", schunk, "raw 1-byte pipe ping-pong", sbase,
            schunk.median / sbase.median, "<=", 2.0, note, placement),
    ]  # fmt: skip
