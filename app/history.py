"""Conversation history: the messages of one chat, and trimming them to a context window.

Trimming drops the oldest messages first until the system prompt, the kept messages
and the reply budget fit in the plugin's context window, measured with the plugin's
own ``count_tokens`` (through a cache, so an unchanged message is never re-counted).

The chat re-fits its whole history before every turn, so :meth:`Conversation.fit`
takes a counter (``app.tokencache.TokenCounter``) and asks it for the counts it
already knows a batch of messages at a time, then sums them without a Python-level
loop; only a message it does not know is counted on its own, newest first, and only
while the messages still fit. A plain ``count(text)`` function works too.
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import add, itemgetter
from typing import Protocol

__all__ = ["MESSAGE_OVERHEAD", "Budget", "Conversation", "Counter", "TooLong"]

#: Tokens a chat format spends around each message (role markers, separators).
MESSAGE_OVERHEAD = 4

#: Messages looked up at once: a long history whose newest few fit costs at most this many lookups more.
_BATCH = 128


class TooLong(ValueError):
    """Raised when even the newest message alone does not fit the context window."""

    def __init__(self, needed: int, available: int) -> None:
        self.needed, self.available = needed, available
        super().__init__(f"the message needs {needed} tokens but only {available} fit in the context window")


@dataclass(frozen=True)
class Budget:
    """How a context window is spent for one call (what ``/tokens`` shows)."""

    window: int
    reply: int
    system: int
    history: int
    kept: int
    dropped: int

    @property
    def free(self) -> int:
        return self.window - self.reply - self.system - self.history


class Counter(Protocol):
    """What :meth:`Conversation.fit` counts with when it can look counts up in batches.

    ``cached`` gives the counts it knows (``None`` for the others) without counting;
    ``count`` counts one text. Counts are non-negative ints (``TokenCounter`` checks).
    """

    def count(self, text: str) -> int: ...

    def cached(self, texts: Sequence[str]) -> list[int | None]: ...


@dataclass
class Conversation:
    """One chat: an id, a system prompt and alternating user/assistant messages."""

    system: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def add(self, role: str, content: str) -> None:
        if role not in ("user", "assistant"):
            raise ValueError(f"role must be 'user' or 'assistant', got {role!r}")
        self.messages.append({"role": role, "content": content})

    def pop_unanswered(self) -> str | None:
        """Remove and return a trailing user message that got no reply."""
        if self.messages and self.messages[-1]["role"] == "user":
            return self.messages.pop()["content"]
        return None

    def reset(self) -> None:
        self.messages.clear()
        self.id = uuid.uuid4().hex

    def fit(self, count: Callable[[str], int] | Counter, window: int, reply: int) -> tuple[list[dict[str, str]], Budget]:
        """The newest messages that fit ``window`` with ``reply`` tokens left for the answer.

        ``count`` is a function from a text to its tokens, or a :class:`Counter`.
        Raises :class:`TooLong` when even the newest message does not fit.
        """
        if callable(count):
            one, known = count, _none_known
        else:
            one, known = count.count, count.cached
        system = one(self.system) if self.system else 0
        available = window - reply - system
        start, used = self._newest_that_fit(one, known, available)
        kept = self.messages[start:]
        while kept and kept[0]["role"] != "user":  # a history must open with the user
            used -= one(kept.pop(0)["content"]) + MESSAGE_OVERHEAD
        budget = Budget(window, reply, system, used, len(kept), len(self.messages) - len(kept))
        return kept, budget

    def _newest_that_fit(
        self, one: Callable[[str], int], known: Callable[[Sequence[str]], list[int | None]], available: int
    ) -> tuple[int, int]:
        """Where the newest messages that fit in ``available`` tokens start, and the tokens they take."""
        messages = self.messages
        end, used = len(messages), 0
        while end > 0:
            start = max(0, end - _BATCH)
            texts = list(map(_content, messages[start:end]))
            taken, used = _take(texts, known(texts), one, available, used, end == len(messages))
            if taken < end - start:
                return end - taken, used
            end = start
        return 0, used


_content = itemgetter("content")


def _none_known(texts: Sequence[str]) -> list[int | None]:
    return [None] * len(texts)


def _take(
    texts: list[str], counts: list[int | None], one: Callable[[str], int], available: int, used: int, newest: bool
) -> tuple[int, int]:
    """How many of ``texts``, the last first, still fit after ``used`` tokens, and the tokens used then.

    ``newest``: ``texts`` end with the newest message, so if none fits that is :class:`TooLong`.
    """
    if None not in counts:  # every count in the batch known (a re-fit of an unchanged history): sum them in C
        total = used + sum(counts) + MESSAGE_OVERHEAD * len(counts)  # type: ignore[arg-type]
        if total <= available:
            return len(counts), total
        totals = list(accumulate(map(add, reversed(counts), repeat(MESSAGE_OVERHEAD)), initial=used))
        taken = bisect_right(totals, available) - 1  # totals only grow: each message costs at least the overhead
        if taken <= 0 and newest:
            raise TooLong(totals[1], max(0, available))
        return taken, totals[taken]
    taken = 0
    for i in range(len(texts) - 1, -1, -1):  # ask for an unknown count only while the messages still fit
        known = counts[i]
        cost = (one(texts[i]) if known is None else known) + MESSAGE_OVERHEAD
        if used + cost > available:
            if taken == 0 and newest:
                raise TooLong(cost, max(0, available))
            break
        used += cost
        taken += 1
    return taken, used
