"""The chat driven in a real terminal (tmux): typing, streaming, the plugin menu, Ctrl-C, crashes."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.slowplugins import SLOW_BOOT, SLOW_COUNT
from tests.tmux import Tmux, chat_env, have_tmux

pytestmark = [pytest.mark.timeout(90), pytest.mark.skipif(not have_tmux(), reason="tmux is not installed")]

CHAT_PLUGINS = Path(__file__).parent / "chatplugins"
AT_PROMPT = r"^[\w-]+› *\s*\Z"  # the last line on screen is an empty prompt: the chat waits for keys


def leave(term: Tmux) -> None:
    """Ctrl-D at the prompt, once the prompt is up, and wait for the chat to end.

    A Ctrl-D sent before the chat's first prompt reaches a terminal in cooked mode, whose
    line discipline turns it into end-of-file for nobody (prompt_toolkit reads a NUL later):
    the chat would not end. From its first prompt on the chat keeps the terminal out of
    cooked mode, between turns too, so only that start needs the wait.
    """
    term.wait_for(AT_PROMPT)
    term.send("C-d")
    term.wait_exit()


@pytest.fixture
def chat(home: Path) -> Iterator[Tmux]:
    term = Tmux([sys.executable, "-m", "app", "--plugins-dir", str(CHAT_PLUGINS), "chat", "-p", "echo"], chat_env(str(home)))
    try:
        term.wait_for(r"^echo›")  # the prompt is up: typing now is not type-ahead
        yield term
        leave(term)
    finally:
        term.close()


def test_a_message_gets_a_streamed_answer(chat: Tmux) -> None:
    chat.type("hello there")
    chat.send("Enter")
    chat.wait_for(r"^echo: hello there$")
    chat.wait_for(r"^echo›\s*$")


def test_the_plugin_menu_switches_and_keeps_the_history(chat: Tmux) -> None:
    chat.type("first words")
    chat.send("Enter")
    chat.wait_for(r"^echo: first words$")
    chat.type("/plugin")
    chat.send("Enter")
    chat.wait_for(r"LLM Plugin")
    options = {m[3]: int(m[2]) for m in re.finditer(r"^\s*(>)?\s*(\d+)\. (\S+)", chat.screen(), re.M)}
    current = int(chat.wait_for(r"^\s*>\s*(\d+)\. echo").group(1))
    for index in range(current + 1, options["recall"] + 1):  # one arrow key at a time, each seen to land
        chat.send("Down")
        chat.wait_for(rf"^\s*>\s*{index}\. ")
    chat.send("Enter")
    chat.wait_for(r"Now chatting with 'recall'")
    chat.type("second words")
    chat.send("Enter")
    chat.wait_for(r"recall saw first words \| echo: first words \| second words")


def test_ctrl_c_cancels_a_slow_reply_and_keeps_the_partial_answer(chat: Tmux) -> None:
    chat.type("/plugin slow_stream")
    chat.send("Enter")
    chat.wait_for(r"Now chatting with 'slow_stream'")
    chat.type("go")
    chat.send("Enter")
    chat.wait_for(r"^0 1 2 3 ")
    chat.send("C-c")
    chat.wait_for(r"\[cancelled\]")
    chat.wait_for(r"^slow_stream›\s*$")
    chat.type("/plugin echo")
    chat.send("Enter")
    chat.type("after cancel")
    chat.send("Enter")
    chat.wait_for(r"^echo: after cancel$")


def test_a_crash_mid_chat_leaves_the_chat_usable(chat: Tmux) -> None:
    chat.type("/plugin crashy")
    chat.send("Enter")
    chat.wait_for(r"Now chatting with 'crashy'")
    chat.type("boom")
    chat.send("Enter")
    chat.wait_for(r"plugin 'crashy' crashed: killed by SIGSEGV.*conversation is kept")
    chat.type("/plugin echo")
    chat.send("Enter")
    chat.type("still alive?")
    chat.send("Enter")
    chat.wait_for(r"^echo: still alive\?$")


def test_unknown_command_lists_the_right_ones(chat: Tmux) -> None:
    chat.type("/frobnicate")
    chat.send("Enter")
    chat.wait_for(r"unknown command /frobnicate; commands are: /exit, /health, /help")


def test_a_missing_permission_is_offered_as_a_grant(chat: Tmux, home: Path) -> None:
    import json

    chat.type("/plugin needsnet")
    chat.send("Enter")
    chat.wait_for(r"Now chatting with 'needsnet'")
    chat.type("connect please")
    chat.send("Enter")
    chat.wait_for(r"PermissionError")
    chat.wait_for(r"requests network 127\.0\.0\.1:9, not granted")
    chat.wait_for(r"grant it now\? \[y/N\]")
    chat.type("y")
    chat.send("Enter")
    chat.wait_for(r"Granted .needsnet. 127\.0\.0\.1:9; press")
    grants = json.loads((home / "grants.json").read_text())["grants"]
    assert grants["needsnet"]["network"] == ["127.0.0.1:9"]
    chat.type("connect again")
    chat.send("Enter")
    chat.wait_for(r"ConnectionRefusedError")  # the sandbox now lets it try; nothing listens there


@pytest.fixture
def slow(tmp_path: Path) -> Path:
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "slowboot_plugin.py").write_text(SLOW_BOOT)
    (folder / "slowcount_plugin.py").write_text(SLOW_COUNT)
    return folder


def still_chatting(term: Tmux, plugin: str) -> None:
    """After a cancelled command: the chat goes on, with ``plugin`` still the current one."""
    term.wait_for(r"sandchat: Cancelled\.")
    if plugin != "echo":
        term.type("/plugin echo")
        term.send("Enter")
        term.wait_for(r"Now chatting with 'echo'")
    term.type("still here?")
    term.send("Enter")
    term.wait_for(r"^echo: still here\?$")
    assert "Now chatting with 'slowboot'" not in term.screen()
    leave(term)


@pytest.mark.parametrize(("command", "running"), [("/health slowboot", "checking slowboot…"), ("/plugin slowboot", "starting slowboot…")])
def test_ctrl_c_during_a_slash_command_returns_to_the_prompt(home: Path, slow: Path, command: str, running: str) -> None:
    term = Tmux([sys.executable, "-m", "app", "--plugins-dir", str(slow), "chat", "-p", "echo"], chat_env(str(home)))
    try:
        term.wait_for(r"^echo›")  # the prompt is up: what follows is a command, not type-ahead
        term.type(command)
        term.send("Enter")
        term.wait_for(running)  # its spinner: the command runs (seeing the typed line proves only that it was typed)
        term.send("C-c")
        still_chatting(term, "echo")
    finally:
        term.close()


@pytest.mark.parametrize(("command", "plugin"), [("/health slowboot", "echo"), ("/plugin slowboot", "echo"), ("/tokens", "slowcount")])
def test_ctrl_c_pressed_with_the_enter_cancels_the_command(home: Path, slow: Path, command: str, plugin: str) -> None:
    """Ctrl-C right after Enter reaches the chat before the command can take a signal: it still cancels it."""
    term = Tmux([sys.executable, "-m", "app", "--plugins-dir", str(slow), "chat", "-p", plugin], chat_env(str(home)))
    try:
        term.wait_for(rf"^{plugin}›")
        term.type(command)
        term.send("Enter", "C-c")  # one write: read with the Enter, or queued before the command began
        still_chatting(term, plugin)
    finally:
        term.close()


def test_the_answer_to_grant_it_now_is_not_in_the_input_history(chat: Tmux) -> None:
    chat.type("/plugin needsnet")
    chat.send("Enter")
    chat.wait_for(r"Now chatting with 'needsnet'")
    chat.type("connect please")
    chat.send("Enter")
    chat.wait_for(r"grant it now\? \[y/N\]")
    chat.type("n")
    chat.send("Enter")
    chat.wait_for(r"^needsnet›\s*$")
    chat.send("Up")  # the last thing typed at the chat prompt, not the answer to the question
    chat.wait_for(r"^needsnet› connect please\s*$")
    chat.send("C-u")


def test_continue_with_a_new_system_prompt_uses_it(home: Path) -> None:
    command = [sys.executable, "-m", "app", "--plugins-dir", str(CHAT_PLUGINS), "chat", "-p", "echo"]
    first = Tmux([*command, "-s", "Be a cat."], chat_env(str(home)))
    try:
        first.wait_for(r"chatting with 'echo'")
        first.type("meow")
        first.send("Enter")
        first.wait_for(r"^echo: meow$")
        leave(first)
    finally:
        first.close()
    second = Tmux([*command, "-c", "-s", "Be a dog."], chat_env(str(home)))
    try:
        second.wait_for(r"Continuing the last conversation \(1 exchange\)\.")
        second.wait_for(r"^  you: meow\n  echo: echo: meow\n.*\n?^echo›")  # the recap, just before the prompt
        second.type("/system")
        second.send("Enter")
        second.wait_for(r"^Be a dog\.$")
        leave(second)
    finally:
        second.close()


WORDY = '''"""Streams fifty words of growing length, slowly, then ends."""
import time

from llm_utils import LLMClient


class Wordy(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "wordy"

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        for i in range(50):
            yield f"w{i}{'x' * (i % 7)} "
            time.sleep(0.08)

    def count_tokens(self, text):
        return len(text.split())
'''


@pytest.mark.timeout(90)
def test_a_streamed_reply_wraps_at_words_and_type_ahead_waits_unechoed(home: Path, tmp_path: Path) -> None:
    (tmp_path / "wordy_plugin.py").write_text(WORDY)
    term = Tmux([sys.executable, "-m", "app", "--plugins-dir", str(tmp_path), "chat", "-p", "wordy"], chat_env(str(home)), width=32)
    expected = [f"w{i}{'x' * (i % 7)}" for i in range(50)]
    try:
        term.wait_for(r"^wordy›")
        term.type("go")
        term.send("Enter")
        term.wait_for(r"\bw5x{5}\b")
        term.type("typed ahead")  # while the reply streams
        term.wait_for(r"^wordy› typed ahead\s*$")  # the reply ended; what was typed is at the prompt, unsent
        screen = term.screen()
        reply = screen[screen.index("wordy› go\n") + len("wordy› go\n") : screen.rindex("wordy› typed ahead")]
        lines = reply.splitlines()
        assert "typed" not in reply  # not echoed into the reply
        assert all(len(line) <= 32 for line in lines)
        assert " ".join(lines).split() == expected  # no word split across lines
        assert len(lines) > 5  # it did have to wrap
        term.send("C-u")
        leave(term)
    finally:
        term.close()


def test_ctrl_c_is_not_echoed_into_the_reply(chat: Tmux) -> None:
    chat.type("/plugin slow_stream")
    chat.send("Enter")
    chat.wait_for(r"Now chatting with 'slow_stream'")
    chat.wait_for(AT_PROMPT)
    chat.type("go")
    chat.send("Enter")
    chat.wait_for(r"^0 1 2 3 ")
    chat.send("C-c")
    chat.wait_for(r"\[cancelled\]")
    chat.wait_for(AT_PROMPT)
    assert "^C" not in chat.screen()


def test_the_plugin_menu_shows_its_keys_and_esc_leaves_it_unchanged(chat: Tmux) -> None:
    chat.type("/plugin")
    chat.send("Enter")
    chat.wait_for(r"↑/↓ move · Enter choose · Esc cancel")
    rows = [m for m in re.finditer(r"^\s*>?\s*\d+\. (\S+)(\s+)(\S+)", chat.screen(), re.M)]
    assert len({m.start(3) - m.start(0) for m in rows}) == 1, chat.screen()  # the state column is aligned
    chat.send("Down")
    chat.send("Escape")
    chat.wait_for(AT_PROMPT)
    assert "Now chatting with" not in chat.screen()
    chat.type("still echo?")
    chat.send("Enter")
    chat.wait_for(r"^echo: still echo\?$")
