"""Figure 2: count_tokens of a 1 MiB string, as throughput.

Baseline: 1 MiB written into a raw pipe to a second Python process, which reads it
whole and writes it back (reads into a preallocated buffer on both sides). Throughput
is MiB per second of round trip: the payload's size over the time from the first byte
sent to the last byte (or the reply) received.
"""

from __future__ import annotations

from bench.common import RawPeer, Row, Settings, Stat, Workspace, interleave, sandbox_note, timed

SIZE = 1 << 20


def run(settings: Settings, placement: str) -> list[Row]:
    reps = settings.pick(5, 25)
    block = settings.pick(3, 4)
    text = ("lorem ipsum dolor sit amet " * (SIZE // 27 + 1))[:SIZE]
    raw: list[float] = []
    ours: list[float] = []
    with Workspace() as ws, RawPeer("echo", SIZE) as peer:
        client = ws.client()
        expected = client.count_tokens(text)

        def baseline() -> None:
            raw.extend(SIZE / 2**20 / peer.echo_once() for _ in range(block))

        def subject() -> None:
            for _ in range(block):
                seconds = timed(lambda: client.count_tokens(text))
                ours.append(SIZE / 2**20 / seconds)

        interleave(1, baseline, subject)  # warm-up
        raw.clear()
        ours.clear()
        interleave(reps, baseline, subject)
        if client.count_tokens(text) != expected:
            raise RuntimeError("the 1 MiB count changed between calls")
        note = sandbox_note(client)
    base, subj = Stat.of(raw), Stat.of(ours)
    # For throughput the bad tail is the slow end: report the 1st percentile as "p99".
    base.p99, subj.p99 = _p1(raw), _p1(ours)
    return [Row("2", "large payload (count_tokens, 1 MiB string)", "MiB/s", subj, "1 MiB raw pipe there and back", base,
                subj.median / base.median, ">=", 0.5, note, placement)]  # fmt: skip


def _p1(samples: list[float]) -> float:
    xs = sorted(samples)
    return xs[int(0.01 * len(xs))] if xs else float("nan")
