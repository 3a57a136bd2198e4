"""The plugin methods as the host asks them: the params each request sends, the checks each result passes.

The child's own runtime already validates what plugin code returns, so a result that
fails one of these checks was forged (plugin code wrote to the channel itself): the
handle then treats the reply as a protocol error and the process goes. What ``check``
answers becomes a :class:`Readiness`, its text cleaned here, where it becomes ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_utils import Message
from runner.cleantext import clean_text

__all__ = [
    "Readiness", "check_problem", "count_problem", "generation", "one_line", "plain_messages", "readiness_of", "text_problem",
]  # fmt: skip

_MAX_TEXT = 500  # characters of a check() reason or token_counting() text (the child cuts there)
_MAX_WINDOW = 100_000_000  # tokens; no model has a context window near this


@dataclass(frozen=True)
class Readiness:
    """What the plugin's ``check()`` said: whether it can answer now, or why not; how it counts."""

    ready: bool
    reason: str = ""  # one line, cleaned; empty when ready
    counting: str = ""  # the plugin's token_counting(): "exact: ...", "estimate: ..." or "" (unstated)
    context_window: int | None = None

    @property
    def estimate(self) -> bool:
        """True when the plugin says its token counts are an estimate."""
        return self.counting.lower().startswith("estimate")


def one_line(text: str) -> str:
    """Plugin text as one cleaned line."""
    return " ".join(clean_text(text).split())


def readiness_of(result: dict[str, Any]) -> Readiness:
    """The Readiness a ``check`` result (one :func:`check_problem` passed) says."""
    reason, counting, window = result["ready"], result["counting"], result["context_window"]
    return Readiness(reason is None, one_line(reason or ""), one_line(counting), window)


def check_problem(result: Any) -> str:
    if type(result) is not dict or set(result) != {"ready", "counting", "context_window"}:
        return "answered check with something other than its map"
    reason, counting, window = result["ready"], result["counting"], result["context_window"]
    reason_ok = reason is None or (type(reason) is str and len(reason) <= _MAX_TEXT)
    if not reason_ok or not (type(counting) is str and len(counting) <= _MAX_TEXT):
        return "answered check with a bad reason or counting text"
    if not (window is None or (type(window) is int and 0 < window <= _MAX_WINDOW)):
        return "answered check with a bad context window"
    return ""


def count_problem(result: Any) -> str:
    return "" if type(result) is int and result >= 0 else f"answered count_tokens with {type(result).__name__}"


def text_problem(result: Any, max_reply: int) -> str:
    if type(result) is not str:
        return f"answered a generation with {type(result).__name__}"
    if len(result) > max_reply:
        return f"sent a reply longer than its limit of {max_reply:,} characters (max_reply)"
    return ""


def generation(system: str, max_tokens: int, temperature: float | None, **prompt: Any) -> dict[str, Any]:
    """Generation params; a temperature of None is left out: the plugin's own default applies."""
    if temperature is None:
        return {"system": system, "max_tokens": int(max_tokens), **prompt}
    return {"system": system, "max_tokens": int(max_tokens), "temperature": float(temperature), **prompt}


def plain_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
