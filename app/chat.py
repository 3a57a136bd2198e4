"""The interactive chat in the terminal: the chat core (``app.chatcore``) shown with a spinner and wrapped words.

The selected plugin starts in the background as the chat opens. Ctrl-C during a reply
cancels it and keeps the partial answer (marked); Ctrl-D or ``/exit`` leaves. A
plugin failure costs one line and never the conversation. Everything but the showing
is the core's, shared with the browser chat.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING

import runner
from app.chatcore import ChatCore, GrantOffer, Outcome, describe
from app.interrupt import interruptible
from app.stream import Spinner, WordWrap
from app.transcript import recap

if TYPE_CHECKING:
    from app.chatlog import Exchange
    from app.manager import PluginManager
    from app.render import Output

__all__ = ["ChatSession", "describe"]

CANCELLED_MARK = " ⏹ [cancelled]"
INCOMPLETE_MARK = " ⚠ [incomplete]"


class _Terminal:
    """The core's front end on a terminal: a spinner until the reply starts, the reply word-wrapped, marks, stderr lines."""

    def __init__(self, output: Output, confirm: Callable[[str], bool]) -> None:
        self.output = output
        self.confirm = confirm
        self.spinner: Spinner | None = None
        self.wrap: WordWrap | None = None

    def begin(self) -> None:
        """A new turn: its own spinner, and the width read now (a resize counts)."""
        self.spinner = None
        self.wrap = WordWrap(self.output, shutil.get_terminal_size().columns if self.output.interactive else None)

    def finish(self) -> None:
        """The turn is over, whichever way: the line is clean for what comes next ("cancelled" too)."""
        if self.spinner is not None:
            self.spinner.stop()

    def waiting(self, label: str) -> None:
        if self.spinner is None:
            self.spinner = Spinner(self.output, label)
            self.spinner.start()
        else:
            self.spinner.label = label

    def chunk(self, text: str) -> None:
        self.finish()
        if self.wrap is not None:
            self.wrap.feed(text)

    def ended(self, outcome: Outcome) -> None:
        self.finish()
        if self.wrap is not None:
            self.wrap.flush()
        out = self.output
        if outcome.cancelled:
            out.raw(out.dim(CANCELLED_MARK) + "\n")
        elif outcome.incomplete:
            out.raw(out.dim(INCOMPLETE_MARK) + "\n")  # what came is kept; the error line follows
        elif outcome.text and not outcome.text.endswith("\n"):
            out.write("\n")

    def aside(self, line: str) -> None:
        self.output.raw(self.output.dim(line) + "\n")

    def notice(self, line: str) -> None:
        self.finish()
        self.output.notice(line)

    def failure(self, line: str) -> None:
        self.finish()
        self.output.error(line)

    def offer_grant(self, offer: GrantOffer) -> bool:
        return self.confirm(f"{offer.text}\ngrant it now? [y/N] ")


class ChatSession(ChatCore):
    """One chat in the terminal: the core, with a spinner, word wrapping and the ``YesNo`` prompt."""

    def __init__(
        self,
        manager: PluginManager,
        output: Output,
        plugin_name: str,
        *,
        max_tokens: int,
        temperature: float | None,
        confirm: Callable[[str], bool] = lambda question: False,
    ) -> None:
        """``confirm`` asks the user a yes/no question (the terminal's ``YesNo``); without one, every answer is no."""
        self.terminal = _Terminal(output, confirm)
        super().__init__(manager, self.terminal, plugin_name, max_tokens=max_tokens, temperature=temperature)
        self.output = output
        self._recap: list[Exchange] = []  # the resumed conversation's exchanges, until shown

    def start_for_switch(self, name: str) -> runner.Readiness:
        """Start ``name`` with a spinner; Ctrl-C stops what the switch started and keeps the current plugin."""
        spinner = Spinner(self.output, f"starting {name}…")
        running = {started for started, handle in self.manager.handles().items() if handle.running}

        def start() -> runner.Readiness:
            spinner.start()  # here, not in the main thread: a Ctrl-C must not land in Thread.start
            return super(ChatSession, self).start_for_switch(name)

        try:
            return interruptible(start, lambda: self.stop_started(running), name="switch")
        finally:
            spinner.stop()  # Ctrl-C too: the line is clean for "cancelled", and the current plugin stays

    def reload(self) -> None:
        """Rescan the plugin folders now and say what changed.

        Ctrl-C ends the wait, not the rescan (the stops it makes cannot be half undone): its
        findings are then queued like the watcher's and told before a later prompt.
        """
        interruptible(lambda: self.notices.append(describe(self.manager.refresh())), name="reload")
        self.flush_notices()

    def resume(self) -> int:
        """Load the last logged conversation (``chat --continue``); return its exchange count."""
        exchanges = self.log.last_conversation()
        if not exchanges:
            return 0
        self.open_logged(exchanges)
        self._recap = exchanges
        return len(exchanges)

    def show_recap(self) -> None:
        """The last few exchanges of a resumed conversation, dimmed and shortened; once."""
        width = min(shutil.get_terminal_size().columns, 100) - 2
        for line in recap(self._recap, width):
            self.output.raw(self.output.dim("  " + line) + "\n")  # recap() cleaned the logged text
        self._recap = []

    def ask(self, text: str, cancel: runner.CancelToken | None = None) -> None:
        """Send ``text`` and stream the reply; the spinner starts at once (starting and counting can take seconds)."""
        self.terminal.begin()
        try:
            super().ask(text, cancel)
        finally:
            self.terminal.finish()  # Ctrl-C before the reply began: the line is clean for "cancelled"
