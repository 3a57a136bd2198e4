"""How a reply reaches the terminal: a spinner until it starts, words wrapped whole, keys kept quiet.

The spinner runs from the moment a message is sent (plugin start-up and token counting
included) until the first text arrives. :class:`WordWrap` breaks lines at spaces to the
terminal's width, so a word is split only when it is longer than a line.
:func:`quiet_input` stops the terminal from echoing keys (and ``^C``) into a reply
while it streams; what was typed stays queued for the next prompt. :func:`held_input`
keeps Ctrl-C a key, not a signal, between turns.
"""

from __future__ import annotations

import os
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.render import Output

__all__ = ["Spinner", "WordWrap", "cells", "held_input", "quiet_input"]

_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Spinner:
    """A spinner on its own thread until :meth:`stop`; only on a terminal. ``label`` may change while it spins."""

    def __init__(self, output: Output, label: str) -> None:
        self._output = output
        self.label = label
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._output.interactive and self._thread is None and not self._done.is_set():
            self._thread = threading.Thread(target=self._spin, name="spinner", daemon=True)
            self._thread.start()

    def _spin(self) -> None:
        frame = 0
        while not self._done.wait(0.1 if frame else 0.15):  # a quick answer shows no spinner at all
            self._output.raw(f"\r{_FRAMES[frame % len(_FRAMES)]} {self.label}\x1b[K")
            frame += 1
        if frame:
            self._output.raw("\r\x1b[K")

    def stop(self) -> None:
        """Stop and erase it; safe to call twice. Anything written after this starts on a clean line."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def cells(text: str) -> int:
    """Terminal columns ``text`` takes: wide characters two, combining marks none."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in "WF" else 1
    return width


class WordWrap:
    """Writes streamed, cleaned text through ``output``, broken at spaces to ``width`` columns.

    A word is held until it ends (a space, a newline, or :meth:`flush`), then goes whole on
    the current line or the next; only a word longer than a line is split. The spaces where
    a line is broken are dropped; spaces after a newline of the text (indentation) are kept.
    ``width=None`` writes everything as it comes.
    """

    def __init__(self, output: Output, width: int | None) -> None:
        self._output = output
        self._width = width if width is None else max(width, 2)
        self._column = 0
        self._spaces = ""  # between the last word placed and the next: they go only if it stays on this line
        self._word = ""

    def feed(self, text: str) -> None:
        if self._width is None:
            self._output.write(text)
            return
        out: list[str] = []
        for ch in text:
            if ch == "\n":
                self._place(out, self._width)
                out.append("\n")
                self._column, self._spaces = 0, ""
            elif ch in " \t":
                self._place(out, self._width)
                self._spaces += ch
            else:
                self._word += ch
        self._output.write("".join(out))

    def flush(self) -> None:
        """Write the word held back (the reply ended, or stopped); trailing spaces are dropped."""
        if self._width is not None:
            out: list[str] = []
            self._place(out, self._width)
            self._output.write("".join(out))

    def _place(self, out: list[str], width: int) -> None:
        word, spaces, self._word, self._spaces = self._word, self._spaces, "", ""
        if not word:
            self._spaces = spaces
            return
        if self._column and self._column + cells(spaces) + cells(word) > width:
            out.append("\n")  # the word goes whole onto the next line
            self._column, spaces = 0, ""
        while self._column + cells(spaces) + cells(word) > width:  # longer than a line: split it
            cut = _fit(word, width - self._column - cells(spaces))
            out.append(spaces + word[:cut] + "\n")
            word, spaces, self._column = word[cut:], "", 0
        out.append(spaces + word)
        self._column += cells(spaces) + cells(word)


def _fit(word: str, room: int) -> int:
    """How many characters of ``word`` fit in ``room`` columns (at least one)."""
    used = 0
    for i, ch in enumerate(word):
        used += cells(ch)
        if used > room:
            return max(i, 1)
    return len(word)


@contextmanager
def quiet_input(stream: IO[str]) -> Iterator[None]:
    """While the block runs, the terminal on ``stream`` neither echoes keys nor edits them as a line.

    Echo off keeps type-ahead and ``^C`` out of a streaming reply; canonical mode off keeps
    a Ctrl-D typed now as a key for the next prompt (the line discipline would otherwise
    swallow it as end-of-file). Signals are on, so Ctrl-C cancels (between turns,
    :func:`held_input` has them off). The settings are restored on every way out. Not a
    terminal: nothing changes.
    """
    with _terminal_mode(stream, signals=True):
        yield


@contextmanager
def held_input(stream: IO[str]) -> Iterator[None]:
    """While the block runs, the terminal on ``stream`` sends no signal, echoes nothing, edits no line.

    For the whole chat, so that between turns (after a prompt took its line, before the
    turn can catch an interrupt) a Ctrl-C is a key that waits in the queue for the turn
    it was meant for, instead of a SIGINT landing in code that cannot take it. Turns
    switch signals on (:func:`quiet_input`); prompt_toolkit puts back what it found.
    """
    with _terminal_mode(stream, signals=False):
        yield


@contextmanager
def _terminal_mode(stream: IO[str], *, signals: bool) -> Iterator[None]:
    """No echo, no line editing, single keys readable at once, and Ctrl-C a signal or a key; until the block ends."""
    saved = _terminal_settings(stream)
    if saved is None:
        yield
        return
    import termios

    fd = stream.fileno()
    mode = [*saved[:6], list(saved[6])]
    mode[3] &= ~(termios.ECHO | termios.ICANON)
    mode[3] = mode[3] | termios.ISIG if signals else mode[3] & ~termios.ISIG
    mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
    try:  # set inside: a Ctrl-C just after it still puts the old settings back
        termios.tcsetattr(fd, termios.TCSANOW, mode)
        yield
    finally:
        try:
            termios.tcsetattr(fd, termios.TCSANOW, saved)
        except termios.error:
            pass  # the terminal hung up: nothing to restore, and the exit under way must not become this error


def _terminal_settings(stream: IO[str]) -> list[Any] | None:
    """``stream``'s terminal settings, or None when it is no terminal (a pipe, a test's StringIO)."""
    try:
        import termios
    except ImportError:
        return None
    try:
        fd = stream.fileno()
        return termios.tcgetattr(fd) if os.isatty(fd) else None
    except (OSError, ValueError, AttributeError, termios.error):
        return None
