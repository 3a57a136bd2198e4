"""The chat as terminal people expect it, in-process: spinner, wrapping, notices, /save, /plugin, /health, the menu."""

from __future__ import annotations

import io
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app import PluginManager
from app.chat import ChatSession, describe
from app.chatlog import Exchange
from app.manager import Changes
from app.render import Output
from app.repl import plugin_menu
from app.slash import run_command
from app.stream import WordWrap, cells
from app.transcript import recap
from tests.conftest import FAST, TEST_PLUGINS
from tests.helpers import wait_until
from tests.slowplugins import SLOW_BOOT, SLOW_COUNT

CHATPLUGINS = Path(__file__).parent / "chatplugins"
SLOW_START = """import threading
threading.Event().wait(1.5)  # a slow start: the spinner must already be turning
from llm_utils import LLMClient
class SlowStart(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "late but here"
    def count_tokens(self, text):
        return 1
"""


class NoMenu:
    def choose_plugin(self, session: ChatSession) -> str | None:
        raise AssertionError("no menu in these tests")


@pytest.fixture
def manager(home: Path, tmp_path: Path) -> Iterator[PluginManager]:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "slowstart_plugin.py").write_text(SLOW_START)
    (extra / "broken_plugin.py").write_text((TEST_PLUGINS / "syntax_error_plugin.py").read_text())
    with PluginManager([CHATPLUGINS, extra], home, deadlines=FAST) as m:
        yield m


def session_for(manager: PluginManager, plugin: str, *, interactive: bool = False) -> tuple[ChatSession, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    output = Output(out, err, color=False, interactive=interactive)
    return ChatSession(manager, output, plugin, max_tokens=50, temperature=0.0), out, err


class Screen:
    """What WordWrap needs of an Output: written text, kept."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


def wrapped(pieces: list[str], width: int) -> str:
    screen = Screen()
    wrap = WordWrap(screen, width)  # type: ignore[arg-type]
    for piece in pieces:
        wrap.feed(piece)
    wrap.flush()
    return screen.text


# -- wrapping ------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_words_go_whole_to_the_next_line_even_when_split_across_chunks() -> None:
    text = wrapped(["the quick bro", "wn fox jum", "ps over the lazy dog"], 10)
    assert text == "the quick\nbrown fox\njumps over\nthe lazy\ndog"  # "jumps over" fills the line exactly
    assert all(cells(line) <= 10 for line in text.splitlines())


@pytest.mark.timeout(10)
def test_only_a_word_longer_than_the_line_is_split_and_newlines_and_indentation_stay() -> None:
    assert wrapped(["ab abcdefghijkl cd"], 5) == "ab\nabcde\nfghij\nkl cd"
    assert wrapped(["one\n    two three\nfour"], 40) == "one\n    two three\nfour"


@pytest.mark.timeout(10)
def test_wide_characters_count_two_columns() -> None:
    assert wrapped(["日本語 日本語"], 8) == "日本語\n日本語"


@pytest.mark.timeout(10)
def test_without_a_width_the_text_goes_as_it_came() -> None:
    assert wrapped(["a " * 100], None) == "a " * 100  # type: ignore[arg-type]


# -- the spinner ---------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_the_spinner_turns_while_the_plugin_starts(manager: PluginManager) -> None:
    session, out, err = session_for(manager, "slowstart", interactive=True)
    session.ask("hello")
    shown = out.getvalue()
    assert "starting slowstart…" in shown  # before any process answered: start-up is covered
    assert shown.index("starting slowstart…") < shown.index("late but here")
    assert shown.endswith("\r\x1b[Klate but here\n")  # erased before the reply
    assert err.getvalue() == ""


# -- notices ---------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_plugin_changes_read_as_one_sentence() -> None:
    assert describe(Changes(added=("x",), removed=("y", "z"))) == "Plugins changed: added x; removed y, z."
    assert describe(Changes()) == "No plugin changes."


@pytest.mark.timeout(30)
def test_queued_notices_print_before_a_new_one(manager: PluginManager) -> None:
    session, out, err = session_for(manager, "echo")
    session.notices.append("Plugins changed: added x.")  # what the watch thread does
    run_command(session, NoMenu(), "/reload")
    assert err.getvalue().splitlines() == ["sandchat: Plugins changed: added x.", "sandchat: No plugin changes."]
    assert session.notices == []


# -- /plugin NAME ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_plugin_that_cannot_load_is_reported_and_not_switched_to(manager: PluginManager) -> None:
    session, out, err = session_for(manager, "echo")
    run_command(session, NoMenu(), "/plugin broken")
    assert session.plugin_name == "echo"
    assert "plugin 'broken'" in err.getvalue() and "still chatting with 'echo'" in err.getvalue()
    assert "Now chatting" not in err.getvalue()


@pytest.mark.timeout(60)
def test_a_disabled_plugin_is_reported_and_not_switched_to(manager: PluginManager) -> None:
    manager.switches.set_enabled("recall", False)
    session, out, err = session_for(manager, "echo")
    run_command(session, NoMenu(), "/plugin recall")
    assert session.plugin_name == "echo"
    assert "is disabled" in err.getvalue() and "still chatting with 'echo'" in err.getvalue()


@pytest.mark.timeout(60)
def test_a_usable_plugin_is_switched_to_with_a_sentence(manager: PluginManager) -> None:
    session, out, err = session_for(manager, "echo")
    run_command(session, NoMenu(), "/plugin recall")
    assert session.plugin_name == "recall"
    assert err.getvalue() == "sandchat: Now chatting with 'recall'; the conversation is kept.\n"


# -- /health -------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_health_stops_the_plugins_it_started_and_keeps_the_current_one(manager: PluginManager) -> None:
    session, out, err = session_for(manager, "echo")
    session.ask("warm up")
    run_command(session, NoMenu(), "/health recall echo")
    assert "recall" in out.getvalue()
    running = manager.handles()
    assert not running["recall"].running  # started by /health only: stopped again
    assert running["echo"].running  # the chat's plugin stays up
    session.ask("again")
    assert session.conversation.messages[-1]["content"] == "echo: again"


# -- Ctrl-C during a command -------------------------------------------------------------------


@pytest.fixture
def slow_manager(home: Path, tmp_path: Path) -> Iterator[PluginManager]:
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "slowboot_plugin.py").write_text(SLOW_BOOT)
    (slow / "slowcount_plugin.py").write_text(SLOW_COUNT)
    with PluginManager([CHATPLUGINS, slow], home, deadlines=FAST) as m:
        yield m


def ctrl_c_when(ready: Callable[[], object], what: str) -> None:
    """Once ``ready()`` holds, raise SIGINT (what Ctrl-C sends) on a thread that is not the main one.

    The kernel hands a process's SIGINT to any thread that does not block it; the main
    thread, asleep while a command runs, must see it all the same.
    """

    def send() -> None:
        wait_until(ready, 20, what)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    threading.Thread(target=send, name="ctrl-c", daemon=True).start()


@pytest.mark.timeout(60)
def test_ctrl_c_during_health_returns_at_once_and_stops_the_start(slow_manager: PluginManager) -> None:
    session, out, err = session_for(slow_manager, "echo")
    ctrl_c_when(lambda: slow_manager.state("slowboot") == "starting", "the probe to start slowboot")
    with pytest.raises(KeyboardInterrupt):
        run_command(session, NoMenu(), "/health slowboot")
    wait_until(lambda: slow_manager.state("slowboot") == "stopped", 10, "the cancel to stop slowboot's start")  # not at its 20 s deadline
    assert out.getvalue() == ""  # the cancelled probe reports nothing, then or later


@pytest.mark.timeout(60)
def test_ctrl_c_during_a_switch_keeps_the_current_plugin(slow_manager: PluginManager) -> None:
    session, out, err = session_for(slow_manager, "echo")
    ctrl_c_when(lambda: slow_manager.state("slowboot") == "starting", "the switch to start slowboot")
    with pytest.raises(KeyboardInterrupt):
        run_command(session, NoMenu(), "/plugin slowboot")
    wait_until(lambda: slow_manager.state("slowboot") == "stopped", 10, "the cancel to stop slowboot's start")
    assert session.plugin_name == "echo"
    assert "Now chatting" not in err.getvalue()


@pytest.mark.timeout(60)
def test_ctrl_c_during_tokens_returns_while_the_plugin_counts(slow_manager: PluginManager) -> None:
    session, out, err = session_for(slow_manager, "slowcount")
    session.conversation.add("user", "words to count")
    ctrl_c_when(lambda: slow_manager.state("slowcount") == "busy", "the plugin to count")
    with pytest.raises(KeyboardInterrupt):
        run_command(session, NoMenu(), "/tokens")
    assert out.getvalue() == err.getvalue() == ""


@pytest.mark.timeout(60)
def test_ctrl_c_during_reload_leaves_its_findings_for_the_next_prompt(slow_manager: PluginManager, monkeypatch: pytest.MonkeyPatch) -> None:
    session, out, err = session_for(slow_manager, "echo")
    began, release = threading.Event(), threading.Event()
    rescan = slow_manager.refresh

    def slow_rescan() -> Changes:
        began.set()
        release.wait(20)
        return rescan()

    monkeypatch.setattr(slow_manager, "refresh", slow_rescan)
    ctrl_c_when(began.is_set, "the rescan to begin")
    with pytest.raises(KeyboardInterrupt):
        run_command(session, NoMenu(), "/reload")
    release.set()
    wait_until(lambda: session.notices, 10, "the rescan to finish")  # it cannot be half undone: it finishes, and says so later
    assert session.notices == ["No plugin changes."]
    assert err.getvalue() == ""


# -- /save and --continue ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_save_names_the_plugin_of_each_reply_and_where_the_system_prompt_changed(manager: PluginManager, tmp_path: Path) -> None:
    session, out, err = session_for(manager, "echo")
    session.conversation.system = "Be a cat."
    session.ask("hi")
    run_command(session, NoMenu(), "/system Be a dog.")
    run_command(session, NoMenu(), "/plugin recall")
    session.ask("again")
    path = tmp_path / "t.md"
    run_command(session, NoMenu(), f"/save {path}")
    assert path.read_text() == (
        "# sandchat transcript\n\n*System:* Be a cat.\n\n**You:**\n\nhi\n\n**Assistant (echo):**\n\necho: hi\n\n"
        "*System prompt changed:* Be a dog.\n\n**You:**\n\nagain\n\n**Assistant (recall):**\n\n"
        "recall saw hi | echo: hi | again\n"
    )
    assert all(set(m) == {"role", "content"} for m in session.conversation.messages)  # nothing extra goes to plugins


@pytest.mark.timeout(60)
def test_continue_remembers_each_replys_plugin_and_recaps_the_last_three(manager: PluginManager, tmp_path: Path) -> None:
    first, _, _ = session_for(manager, "echo")
    for word in ("one", "two", "three", "four"):
        first.ask(word)
    second, out, _ = session_for(manager, "recall")
    assert second.resume() == 4
    second.show_recap()
    assert out.getvalue().splitlines() == [
        "  … 1 earlier exchange", "  you: two", "  echo: echo: two", "  you: three", "  echo: echo: three",
        "  you: four", "  echo: echo: four",
    ]  # fmt: skip
    second.save(tmp_path / "t.md")
    assert (tmp_path / "t.md").read_text().count("**Assistant (echo):**") == 4


@pytest.mark.timeout(10)
def test_the_recap_shortens_long_lines_and_cleans_them() -> None:
    long = Exchange(conversation="c", plugin="p", system="", prompt="x" * 200, response="evil\x1b[2Jtext\nmore")
    lines = recap([long], 20)
    assert lines == ["you: " + "x" * 14 + "…", "p: eviltext more"]


# -- the menu ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_the_menu_aligns_its_columns_and_says_why_a_plugin_failed(manager: PluginManager) -> None:
    session, out, err = session_for(manager, "echo")
    run_command(session, NoMenu(), "/plugin broken")  # fails to load: its last error is known
    labels = dict(plugin_menu(session))
    states = {name: label[len(name) :].lstrip().split()[0] for name, label in labels.items()}
    offsets = {label.index(states[name], len(name)) for name, label in labels.items()}
    assert len(offsets) == 1  # every state starts in the same column
    why = labels["broken"].split("failed: ", 1)[1]
    assert not why.startswith("plugin") and "SyntaxError" in why
