"""Figure 6: re-counting an unchanged 200-message history the way the chat does before each turn.

The chat fits its history into the window with ``Conversation.fit`` through a
``app.tokencache.TokenCounter`` over the plugin (``app/chat.py``, ``/tokens``).
Cold: a new counter fits the history (one plugin round trip per distinct message).
Warm: the same counter fits the same, unchanged history again.
Target: warm is at most 2% of cold. Rows 6b and 6c time ``TokenCounter.count_many``
alone over the same texts, for comparison.
"""

from __future__ import annotations

import random
from typing import Any

from app.history import Conversation
from app.tokencache import TokenCounter
from bench.common import Row, Settings, Stat, Workspace, sandbox_note, timed

MESSAGES = 200
REPLY = 512
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


def conversation(texts: list[str]) -> Conversation:
    """A chat of ``texts``, user and assistant in turn, under a system prompt."""
    chat = Conversation(system="You are a helpful assistant. Answer briefly.")
    for i, text in enumerate(texts):
        chat.add("user" if i % 2 == 0 else "assistant", text)
    return chat


def run(settings: Settings, placement: str) -> list[Row]:
    reps = settings.pick(5, 25)
    texts = history()
    chat = conversation(texts)
    window = 10**6  # every message fits: each turn re-counts the whole history
    fit_cold: list[float] = []
    fit_warm: list[float] = []
    cold: list[float] = []
    warm: list[float] = []
    copies: list[float] = []
    with Workspace() as ws:
        client = ws.client()
        for rep in range(reps + 1):
            counter = TokenCounter(client)
            results: list[Any] = []

            def fit(counter: TokenCounter = counter, results: list[Any] = results) -> None:
                results.append(chat.fit(counter, window, REPLY))

            fc, fw = timed(fit) * 1e6, timed(fit) * 1e6
            _check(counter, results, distinct=len(texts) + 1)
            counter = TokenCounter(client)
            c = timed(lambda counter=counter: counter.count_many(texts)) * 1e6
            w = timed(lambda counter=counter: counter.count_many(texts)) * 1e6
            fresh = [t.encode().decode() for t in texts]  # equal texts in new objects: hashes not cached
            k = timed(lambda counter=counter, fresh=fresh: counter.count_many(fresh)) * 1e6
            if counter.misses != len(texts):
                raise RuntimeError(f"the warm passes asked the plugin again ({counter.misses} misses)")
            if rep:  # the first round is a warm-up
                fit_cold.append(fc)
                fit_warm.append(fw)
                cold.append(c)
                warm.append(w)
                copies.append(k)
        note = sandbox_note(client)
    fcs, fws = Stat.of(fit_cold), Stat.of(fit_warm)
    cs, ws_, ks = Stat.of(cold), Stat.of(warm), Stat.of(copies)
    return [
        Row("6", "token-count cache: re-fit an unchanged 200-message history (chat's path)", "µs", fws, "fitting it cold", fcs,
            fws.median / fcs.median, "<=", 0.02, note, placement),
        Row("6b", "  TokenCounter.count_many alone over the same texts", "µs", ws_, "counting them cold", cs,
            ws_.median / cs.median, "", None, "", placement),
        Row("6c", "  count_many, history re-read as new str objects", "µs", ks, "counting them cold", cs,
            ks.median / cs.median, "", None, "informational: the text's hash is computed afresh", placement),
    ]  # fmt: skip


def _check(counter: TokenCounter, results: list[Any], distinct: int) -> None:
    """The warm fit asked the plugin nothing and returned what the cold one did."""
    if counter.misses != distinct:
        raise RuntimeError(f"the warm fit asked the plugin again ({counter.misses} misses for {distinct} texts)")
    (kept_cold, budget_cold), (kept_warm, budget_warm) = results
    if kept_cold != kept_warm or budget_cold != budget_warm or budget_cold.kept != MESSAGES:
        raise RuntimeError(f"the warm fit differs from the cold one: {budget_cold} vs {budget_warm}")
