"""Figure 6: re-counting an unchanged 200-message history through ``app.tokencache.TokenCounter``.

Cold: a new counter counts the history (one plugin round trip per distinct message).
Warm: the same counter counts the same history again, as a chat does before each turn.
Target: warm is at most 2% of cold.
"""

from __future__ import annotations

import random

from app.tokencache import TokenCounter
from bench.common import Row, Settings, Stat, Workspace, sandbox_note, timed

MESSAGES = 200
_WORDS = "the a model plugin token chat reply sandbox count history window prompt user assistant of to".split()


def history(seed: int = 7) -> list[str]:
    """200 chat messages of 20 to 1,500 characters, all distinct."""
    rng = random.Random(seed)
    out = []
    for i in range(MESSAGES):
        size = rng.randint(20, 1500)
        words, length = [f"#{i}"], 0
        while length < size:
            word = rng.choice(_WORDS)
            words.append(word)
            length += len(word) + 1
        out.append(" ".join(words))
    return out


def run(settings: Settings, placement: str) -> list[Row]:
    reps = settings.pick(5, 25)
    texts = history()
    cold: list[float] = []
    warm: list[float] = []
    copies: list[float] = []
    with Workspace() as ws:
        client = ws.client()
        for rep in range(reps + 1):
            counter = TokenCounter(client)
            c = timed(lambda: counter.count_many(texts)) * 1e3
            w = timed(lambda: counter.count_many(texts)) * 1e3
            fresh = [t.encode().decode() for t in texts]  # equal texts in new objects: hashes not cached
            k = timed(lambda: counter.count_many(fresh)) * 1e3
            if counter.misses != len(texts):
                raise RuntimeError(f"the warm passes asked the plugin again ({counter.misses} misses)")
            if rep:  # the first round is a warm-up
                cold.append(c)
                warm.append(w)
                copies.append(k)
        note = sandbox_note(client)
    cs, ws_, ks = Stat.of(cold), Stat.of(warm), Stat.of(copies)
    return [
        Row("6", "token-count cache: re-count a 200-message history", "ms", ws_, "counting it cold", cs,
            ws_.median / cs.median, "<=", 0.02, note, placement),
        Row("6b", "  the same, history re-read as new str objects", "ms", ks, "counting it cold", cs,
            ks.median / cs.median, "", None, "informational: the text's hash is computed afresh", placement),
    ]  # fmt: skip
