"""What the chat remembers beside the conversation, and the transcripts made from it.

A plugin is sent only roles and contents, so which plugin gave each reply, and under
which system prompt, is kept here (:class:`Sources`) rather than in the messages.
``/save`` writes it into the Markdown transcript; ``chat --continue`` shows the last
exchanges with :func:`recap`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner import clean_text

if TYPE_CHECKING:
    from app.chatlog import Exchange
    from app.history import Conversation

__all__ = ["Reply", "Sources", "markdown", "recap"]


@dataclass(frozen=True)
class Reply:
    """Who gave one assistant message, and the system prompt it was given."""

    plugin: str
    system: str


class Sources:
    """The :class:`Reply` of each assistant message, by its index, for one conversation at a time.

    Messages are only appended, and only a trailing user message is ever removed, so an
    assistant message keeps its index until the conversation is reset (a new id).
    """

    def __init__(self) -> None:
        self._conversation = ""
        self._replies: dict[int, Reply] = {}

    def of(self, conversation: Conversation) -> dict[int, Reply]:
        if conversation.id != self._conversation:  # /reset or --continue: what was noted is another chat's
            self._conversation, self._replies = conversation.id, {}
        return self._replies

    def note(self, conversation: Conversation, name: str) -> None:
        """The last message of ``conversation`` is a reply by plugin ``name`` under its current system prompt."""
        self.of(conversation)[len(conversation.messages) - 1] = Reply(name, conversation.system)


def markdown(conversation: Conversation, replies: dict[int, Reply]) -> str:
    """The conversation as Markdown: who said what, which plugin answered, where the system prompt changed."""
    lines = ["# sandchat transcript", ""]
    shown: str | None = None  # the system prompt the transcript has stated so far
    messages = conversation.messages
    for index, message in enumerate(messages):
        if message["role"] == "user":
            reply = replies.get(index + 1)
            system = reply.system if reply is not None else conversation.system
            lines += _system_line(shown, system)
            shown = system
            lines += ["**You:**", ""]
        else:
            reply = replies.get(index)
            lines += [f"**Assistant ({reply.plugin}):**" if reply is not None else "**Assistant:**", ""]
        lines += [message["content"], ""]
    lines += _system_line(shown, conversation.system)  # set after the last reply: the next message gets it
    return "\n".join(lines)


def _system_line(shown: str | None, system: str) -> list[str]:
    if shown is None:
        return [f"*System:* {system}", ""] if system else []
    if system == shown:
        return []
    return [f"*System prompt changed:* {system}" if system else "*System prompt removed.*", ""]


def recap(exchanges: Sequence[Exchange], width: int, last: int = 3) -> list[str]:
    """The last ``last`` answered exchanges, each a prompt line and a reply line cut to ``width``; cleaned."""
    answered = [e for e in exchanges if e.response]
    earlier = len(answered) - last
    lines = [f"… {earlier} earlier exchange{'s' if earlier > 1 else ''}"] if earlier > 0 else []
    for exchange in answered[-last:]:
        lines.append(_shorten(f"you: {exchange.prompt}", width))
        lines.append(_shorten(f"{exchange.plugin}: {exchange.response}", width))
    return lines


def _shorten(text: str, width: int) -> str:
    line = " ".join(clean_text(text, keep_newlines=False).split())
    return line if len(line) <= width else line[: max(1, width - 1)] + "…"
