"""Where the command is in sandchat's argv: read by the entry point (before any import) and by the parser."""

from __future__ import annotations

__all__ = ["HANDED_OVER", "command_at"]

#: The commands ``app.entry`` hands to a warm forker, and the only ones a forker's worker runs.
HANDED_OVER = ("prompt", "tokens")


def command_at(words: list[str]) -> int:
    """The index of the command (or of the first word that is not a global option), or ``len(words)``."""
    at = 0
    while at < len(words):
        word = words[at]
        if word == "--no-plugins" or word.startswith("--plugins-dir="):
            at += 1
        elif word == "--plugins-dir" and at + 1 < len(words):
            at += 2
        else:
            return at
    return len(words)
