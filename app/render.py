"""Terminal output: one-line errors and notices on stderr, cleaned text, plain tables.

Colour only on a terminal, never when ``NO_COLOR`` is set. This is the choke point for
plugin-derived text: :meth:`Output.write`, :meth:`Output.error`, :meth:`Output.notice`
and every :func:`table` cell go through ``runner.cleantext.clean_text``, so a command
cannot forget to. Only :meth:`Output.raw` writes as is, for sandchat's own terminal
control (colours, the spinner, clearing the screen). A streamed reply is cleaned by a
``StreamCleaner`` first (an escape sequence may be split across chunks), then written.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, Any

from runner import clean_text

__all__ = ["Output", "fit", "table", "terminal_width"]


class Output:
    """Where the CLI writes: the answer to stdout, everything else to stderr."""

    def __init__(self, stdout: IO[str], stderr: IO[str], *, color: bool, interactive: bool = False) -> None:
        self.stdout, self.stderr, self.color, self.interactive = stdout, stderr, color, interactive

    @classmethod
    def for_process(cls, environ: dict[str, str] | Any) -> Output:
        color = sys.stderr.isatty() and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"
        return cls(sys.stdout, sys.stderr, color=bool(color), interactive=sys.stdout.isatty())

    def dim(self, text: str) -> str:
        return self._paint("2", text)

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def error(self, message: str) -> None:
        self.stderr.write(self._paint("31", "sandchat: ") + _one_line(message) + "\n")
        self.stderr.flush()

    def notice(self, message: str) -> None:
        self.stderr.write(self._paint("2", f"sandchat: {_one_line(message)}") + "\n")
        self.stderr.flush()

    def write(self, text: str) -> None:
        """Write ``text`` to stdout, cleaned: whatever a plugin put in it cannot drive the terminal."""
        self.raw(clean_text(text))

    def raw(self, text: str) -> None:
        """Write ``text`` as is: only for terminal control sandchat composed, never for plugin text."""
        self.stdout.write(text)
        self.stdout.flush()


def terminal_width() -> int:
    """Columns to fit: ``COLUMNS`` if set, else the terminal's width, else 80 (a pipe, a file)."""
    import shutil

    return max(20, shutil.get_terminal_size((80, 24)).columns)  # a tiny or bogus width would leave no room for any cell


def fit(text: str, width: int) -> str:
    """One clean line of at most ``width`` characters (cleaned first, so the width is what shows)."""
    text = clean_text(text, keep_newlines=False).rstrip()
    return text if len(text) <= width else text[: width - 1] + "…"


def _one_line(message: str) -> str:
    return " ".join(clean_text(message, keep_newlines=False).split())


def _cell(value: Any) -> str:
    # One line, no tab: a plugin's description cannot break the table's columns either.
    return "" if value is None else clean_text(str(value), keep_newlines=False).replace("\t", " ")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], *, width: int = 80) -> str:
    """A left-aligned text table of cleaned cells; the last column is cut to keep lines within ``width``."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    used = sum(widths[:-1]) + 2 * (len(widths) - 1)
    widths[-1] = max(8, min(widths[-1], width - used))
    lines = []
    for row in cells:
        parts = [cell.ljust(w) if i < len(row) - 1 else _cut(cell, w) for i, (cell, w) in enumerate(zip(row, widths, strict=False))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
