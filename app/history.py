"""Conversation history: the messages of one chat, and trimming them to a context window.

Trimming drops the oldest messages first until the system prompt, the kept messages
and the reply budget fit in the plugin's context window, measured with the plugin's
own ``count_tokens`` (through a cache, so an unchanged message is never re-counted).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["MESSAGE_OVERHEAD", "Budget", "Conversation", "TooLong"]

#: Tokens a chat format spends around each message (role markers, separators).
MESSAGE_OVERHEAD = 4


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

    def fit(self, count: Callable[[str], int], window: int, reply: int) -> tuple[list[dict[str, str]], Budget]:
        """The newest messages that fit ``window`` with ``reply`` tokens left for the answer."""
        system = count(self.system) if self.system else 0
        available = window - reply - system
        kept: list[dict[str, str]] = []
        used = 0
        for message in reversed(self.messages):
            cost = count(message["content"]) + MESSAGE_OVERHEAD
            if used + cost > available:
                if not kept:
                    raise TooLong(cost, max(0, available))
                break
            kept.append(message)
            used += cost
        kept.reverse()
        while kept and kept[0]["role"] != "user":  # a history must open with the user
            used -= count(kept.pop(0)["content"]) + MESSAGE_OVERHEAD
        budget = Budget(window, reply, system, used, len(kept), len(self.messages) - len(kept))
        return kept, budget
