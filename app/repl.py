"""The chat's terminal front end on prompt_toolkit: line editing, history, completion, menus.

prompt_toolkit gives a real line editor (history across sessions, multi-line input,
completion) and the arrow-key "LLM Plugin" menu; it is imported only by the chat.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import Input
from prompt_toolkit.input.typeahead import get_typeahead, store_typeahead
from prompt_toolkit.input.vt100_parser import Vt100Parser
from prompt_toolkit.key_binding import KeyBindings, KeyPress
from prompt_toolkit.keys import Keys
from prompt_toolkit.shortcuts import choice

from app.interrupt import prepare
from app.slash import COMMANDS, run_command
from app.stream import held_input, quiet_input

if TYPE_CHECKING:
    from app.chat import ChatSession

__all__ = ["Repl", "YesNo"]


class _SlashCompleter(Completer):
    """Completes slash commands, and plugin names after ``/plugin``."""

    def __init__(self, session: ChatSession) -> None:
        self.session = session

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/"):
            return
        if text.startswith("/plugin "):
            word = text[len("/plugin ") :]
            for name in self.session.manager.names():
                if name.startswith(word):
                    yield Completion(name, start_position=-len(word), display_meta=self.session.manager.state(name))
            return
        for name, (_, help_text) in sorted(COMMANDS.items()):
            if name.startswith(text):
                yield Completion(name, start_position=-len(text), display_meta=help_text)


def _bindings() -> KeyBindings:
    keys = KeyBindings()

    @keys.add("escape", "enter")
    def _newline(event) -> None:
        event.current_buffer.insert_text("\n")

    return keys


class YesNo:
    """Asks a yes/no question on a prompt of its own: its own history, so a "y" is not a message to resend."""

    def __init__(self) -> None:
        self._prompt: PromptSession[str] = PromptSession()

    def __call__(self, question: str) -> bool:
        try:
            return self._prompt.prompt(question).strip().lower() in ("y", "yes")
        except (KeyboardInterrupt, EOFError):
            return False


class Repl:
    """Reads lines and runs them as messages or slash commands until the user leaves."""

    def __init__(self, session: ChatSession) -> None:
        self.session = session
        history = session.manager.paths.data_dir / "chat_history"
        history.parent.mkdir(parents=True, exist_ok=True)
        self.prompt: PromptSession[str] = PromptSession(
            history=FileHistory(str(history)),
            completer=_SlashCompleter(session),
            complete_while_typing=True,
            key_bindings=_bindings(),
        )
        prepare()  # the commands' launcher thread starts now, not in a command a Ctrl-C may cut short

    def choose_plugin(self, session: ChatSession) -> str | None:
        """The "LLM Plugin" menu: aligned columns, why a plugin failed in words; Esc leaves it unchanged."""
        options = plugin_menu(session)
        keys = KeyBindings()

        @keys.add("escape", eager=True)
        def _cancel(event) -> None:
            event.app.exit(result=None, style="class:aborting")

        title = FormattedText([("bold", "LLM Plugin"), ("", "\n"), ("fg:ansibrightblack", MENU_KEYS)])
        try:
            return choice(title, options=options, default=session.plugin_name, key_bindings=keys)
        except (KeyboardInterrupt, EOFError):
            return None

    def run(self) -> None:
        with held_input(sys.stdin):  # a Ctrl-C between turns is a key for the next turn, not a stray SIGINT
            self._loop()

    def _loop(self) -> None:
        self.session.show_recap()
        while True:
            try:
                if not self._once():
                    return
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line, as in a shell; one seen only as a turn ended, too
            except EOFError:
                return

    def _once(self) -> bool:
        """One prompt and its turn; False when the chat should end (/exit)."""
        self.session.flush_notices()
        line = self.prompt.prompt(f"{self.session.plugin_name}› ")
        if not line.strip():
            return True
        if line.startswith("/"):
            return self._guarded(lambda: run_command(self.session, self, line)) is not False  # interrupted or failed: None
        self._guarded(lambda: self.session.ask(line))
        return True

    def _guarded(self, turn: Callable[[], object]) -> object:
        """Run one turn; whatever a plugin made go wrong costs one line, never the chat."""
        import runner

        try:
            with quiet_input(sys.stdin):  # keys typed meanwhile wait for the next prompt, unechoed
                if _ctrl_c_typed(self.prompt.input, sys.stdin):
                    raise KeyboardInterrupt  # pressed after the Enter, before signals were on: meant for this turn
                return turn()
        except KeyboardInterrupt:  # before the reply began (counting, starting): drop the message
            self.session.conversation.pop_unanswered()
            self.session.notice("Cancelled.")
        except runner.PluginError as exc:
            self.session.conversation.pop_unanswered()
            self.session.output.error(str(exc))
        except Exception as exc:  # a bug of ours a plugin's bytes reached: still not the end of the chat
            self.session.conversation.pop_unanswered()
            self.session.output.error(f"sandchat: unexpected {type(exc).__name__} ({exc}); the chat goes on")
        return True


def _ctrl_c_typed(keys_from: Input, stream: IO[str]) -> bool:
    """Whether Ctrl-C was pressed after the line's Enter while the terminal still took it as a key.

    Such a ^C was read with the Enter (prompt_toolkit keeps it as type-ahead) or waits in
    the terminal's queue (pressed before the turn switched signals on). The keys after it
    stay type-ahead for the next prompt; those before it go, as the terminal drops the
    queue on a SIGINT.
    """
    keys = get_typeahead(keys_from) + _queued_keys(stream)
    last = max((i for i, key in enumerate(keys) if key.key == Keys.ControlC), default=-1)
    store_typeahead(keys_from, keys[last + 1 :])
    return last >= 0


def _queued_keys(stream: IO[str]) -> list[KeyPress]:
    """The keys waiting in the terminal's input queue, taken out of it without blocking."""
    import fcntl
    import struct
    import termios

    try:
        fd = stream.fileno()
        if not os.isatty(fd):
            return []
        waiting = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        data = os.read(fd, waiting) if waiting > 0 else b""
    except (OSError, ValueError):
        return []
    keys: list[KeyPress] = []
    parser = Vt100Parser(keys.append)
    parser.feed(data.decode("utf-8", "surrogateescape"))  # as prompt_toolkit decodes what it reads
    parser.flush()
    return keys


MENU_KEYS = "↑/↓ move · Enter choose · Esc cancel"


def plugin_menu(session: ChatSession) -> list[tuple[str, str]]:
    """The menu's rows, ``(name, label)``: name, state and why, description, in aligned columns."""
    rows = [(row.name, f"{row.state}{_short(row.why)}", row.description) for row in session.rows()]
    name_width = max((len(name) for name, _, _ in rows), default=0)
    state_width = max((len(state) for _, state, _ in rows), default=0)
    options = []
    for name, state, description in rows:
        label = f"{name:<{name_width}}  {state:<{state_width}}  {description[:40]}"
        options.append((name, label.rstrip()))  # prompt_toolkit draws it: not through Output
    return options


def _short(why: str) -> str:
    """The core's why, cut to fit a menu row: a not-ready reason to 40 columns, an error to 50."""
    for lead, width in ((", not ready: ", 40), (": ", 50)):
        if why.startswith(lead):
            return lead + _cut(why[len(lead) :], width)
    return why


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
