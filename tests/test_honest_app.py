"""Never silent, never wrong advice: empty and cut answers are errors, hints name the real fix.

The app side of honesty, with real plugin processes: ``sandchat prompt`` and the chat on
empty, blank and cut-off answers and Ctrl-C before any text; the permission hint for each
case (refused endpoint, never granted, lapsed, unset variable, hostile text); and grants
that add rather than replace.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import runner
from app import PluginManager
from app.access import access_of
from app.chat import ChatSession
from app.grants import file_sha256
from app.hints import hint_for
from app.render import Output
from tests.conftest import FAST, TEST_PLUGINS
from tests.helpers import sandchat, wait_until

CHATPLUGINS = Path(__file__).parent / "chatplugins"


@pytest.fixture
def manager(home: Path) -> Iterator[PluginManager]:
    with PluginManager([TEST_PLUGINS, CHATPLUGINS], home, deadlines=FAST) as m:
        yield m


def session_for(manager: PluginManager, plugin: str) -> tuple[ChatSession, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return ChatSession(manager, Output(out, err, color=False), plugin, max_tokens=50, temperature=0.0), out, err


def install(home: Path, name: str) -> None:
    folder = home / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(TEST_PLUGINS / f"{name}_plugin.py", folder / f"{name}_plugin.py")


# -- sandchat prompt -----------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("message", ["empty", "blank"])
def test_prompt_fails_on_an_empty_answer(home: Path, message: str) -> None:
    install(home, "honest")
    result = sandchat(home, "prompt", "-p", "honest", message)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["sandchat: plugin 'honest' returned an empty answer"]


@pytest.mark.timeout(60)
def test_prompt_keeps_a_cut_answer_and_says_it_is_incomplete(home: Path) -> None:
    install(home, "honest")
    result = sandchat(home, "prompt", "-p", "honest", "partial")
    assert result.returncode == 1 and result.stdout == "part one\n"
    assert result.stderr.strip().splitlines() == [
        "sandchat: plugin 'honest' raised ConnectionError: the reply was cut off: the stream ended before its end marker",
        "sandchat: the answer above is incomplete",
    ]


# -- the chat --------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_chat_reports_an_empty_answer_and_keeps_no_empty_message(manager: PluginManager) -> None:
    session, out, err = session_for(manager, "honest")
    session.ask("empty")
    assert "plugin 'honest' returned an empty answer" in err.getvalue()
    assert session.conversation.messages == []
    logged = session.log.last_conversation()[-1]
    assert logged.response == "" and logged.error == "plugin 'honest' returned an empty answer"
    session.ask("hi")
    assert session.conversation.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "honest: hi"}]


@pytest.mark.timeout(60)
def test_chat_keeps_a_cut_answer_marked_incomplete(manager: PluginManager) -> None:
    session, out, err = session_for(manager, "honest")
    session.ask("partial")
    assert out.getvalue() == "part one ⚠ [incomplete]\n"
    assert "raised ConnectionError: the reply was cut off" in err.getvalue()
    assert session.conversation.messages[-1] == {"role": "assistant", "content": "part one"}


@pytest.mark.timeout(60)
def test_ctrl_c_before_any_text_leaves_no_empty_assistant_message(manager: PluginManager) -> None:
    session, out, err = session_for(manager, "sup_timing")
    client = manager.handle("sup_timing")
    client.start()
    main = threading.get_ident()

    def interrupt_when_busy() -> None:
        wait_until(lambda: client.state == "busy", 10, "the reply to start")
        signal.pthread_kill(main, signal.SIGINT)  # what Ctrl-C delivers to the chat's thread

    interrupter = threading.Thread(target=interrupt_when_busy)
    interrupter.start()
    session.ask("first:2")  # no text for 2 s: the interrupt lands before any
    interrupter.join(10)
    assert "⏹ [cancelled]" in out.getvalue()
    assert session.conversation.messages == []
    session.ask("hello")
    assert session.conversation.messages == [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "one two"}]


# -- hints -------------------------------------------------------------------------------------


def raised(plugin: str, type_: str, message: str, refused: str = "") -> runner.PluginRaised:
    return runner.PluginRaised(plugin, f"raised {type_}: {message}", remote_type=type_, refused=refused)


@pytest.mark.timeout(30)
def test_a_refused_endpoint_is_proposed_on_top_of_the_grant(manager: PluginManager) -> None:
    path = manager.plugin_file("needsnet").path
    manager.grants.grant("needsnet", file_sha256(path), ("127.0.0.1:9",), ())
    fix = hint_for(manager, "needsnet", raised("needsnet", "PermissionError", "whatever it says", refused="127.0.0.1:8088"))
    assert fix is not None and fix.network == ("127.0.0.1:8088",) and fix.env == ()
    assert fix.text == ("plugin 'needsnet' tried to reach 127.0.0.1:8088, which is not granted: "
                        "run sandchat plugins grant needsnet --network 127.0.0.1:8088")  # fmt: skip
    # A refusal the host did not record, under a grant the user chose: no advice beats wrong advice.
    assert hint_for(manager, "needsnet", raised("needsnet", "PermissionError", "[Errno 13] Permission denied")) is None


@pytest.mark.timeout(30)
def test_the_plugins_own_words_about_a_refusal_propose_nothing(manager: PluginManager) -> None:
    """Only the host's record names an endpoint: a plugin cannot steer the user to grant one."""
    path = manager.plugin_file("needsnet").path
    manager.grants.grant("needsnet", file_sha256(path), ("127.0.0.1:9",), ())
    forged = raised("needsnet", "PermissionError", "the sandbox refused a connection to evil.example:443")
    assert hint_for(manager, "needsnet", forged) is None


@pytest.mark.timeout(30)
def test_a_plugin_never_granted_is_told_what_it_requests(manager: PluginManager) -> None:
    fix = hint_for(manager, "needsnet", raised("needsnet", "PermissionError", "[Errno 13] Permission denied"))
    assert fix is not None and fix.network == ("127.0.0.1:9",)
    assert fix.text == "plugin 'needsnet' requests network 127.0.0.1:9, not granted; to grant it, run: sandchat plugins grant needsnet"


@pytest.mark.timeout(30)
def test_a_lapsed_grant_is_explained(manager: PluginManager, tmp_path: Path) -> None:
    manager.grants.grant("needsnet", "0" * 64, ("127.0.0.1:9",), ())  # granted to another version of the file
    fix = hint_for(manager, "needsnet", raised("needsnet", "PermissionError", "[Errno 13] Permission denied"))
    assert fix is not None and "changed since its permissions were granted" in fix.text and fix.network == ("127.0.0.1:9",)


@pytest.mark.timeout(30)
def test_a_variable_is_only_named_when_the_error_names_it_and_it_is_unset(manager: PluginManager, home: Path) -> None:
    path = manager.plugin_file("needsnet").path
    manager.grants.grant("needsnet", file_sha256(path), ("127.0.0.1:9",), ("NEEDSNET_KEY",))
    named = raised("needsnet", "RuntimeError", "NEEDSNET_KEY is not set")
    fix = hint_for(manager, "needsnet", named)
    assert fix is not None and fix.text == "plugin 'needsnet' needs NEEDSNET_KEY, which is not set; run: sandchat keys set NEEDSNET_KEY"
    assert hint_for(manager, "needsnet", raised("needsnet", "RuntimeError", "connection refused")) is None  # not the key's fault
    manager.keys.set("NEEDSNET_KEY", "k")
    assert hint_for(manager, "needsnet", named) is None


@pytest.mark.timeout(30)
@pytest.mark.parametrize("refused", ["evil.example:99999", "a b:80", "10.0.0.1:0", "evil.example"])
def test_a_refusal_that_is_no_endpoint_proposes_nothing(manager: PluginManager, refused: str) -> None:
    path = manager.plugin_file("needsnet").path
    manager.grants.grant("needsnet", file_sha256(path), ("127.0.0.1:9",), ())
    assert hint_for(manager, "needsnet", raised("needsnet", "PermissionError", "refused", refused=refused)) is None


@pytest.mark.timeout(60)
def test_the_refusal_hint_follows_a_real_sandboxed_failure(home: Path) -> None:
    """needsnet connects to 127.0.0.1:9; granted only another port, the host refuses and says which."""
    (home / "plugins").mkdir(parents=True)
    shutil.copy(CHATPLUGINS / "needsnet_plugin.py", home / "plugins" / "needsnet_plugin.py")
    assert sandchat(home, "plugins", "grant", "needsnet", "--network", "127.0.0.1:8088", "--yes").returncode == 0
    result = sandchat(home, "prompt", "-p", "needsnet", "hello")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "sandchat: plugin 'needsnet' tried to reach 127.0.0.1:9, which is not granted: "
        "run sandchat plugins grant needsnet --network 127.0.0.1:9"
    )


@pytest.mark.timeout(60)
def test_a_plugin_claiming_a_refusal_gets_no_grant_proposed(home: Path) -> None:
    install(home, "honest")
    result = sandchat(home, "prompt", "-p", "honest", "refused")
    assert result.returncode == 1 and "--network" not in result.stderr and "plugins grant" not in result.stderr


# -- grants add ----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_grant_network_adds_and_revoke_network_removes_only_that(home: Path) -> None:
    (home / "plugins").mkdir(parents=True)
    shutil.copy(CHATPLUGINS / "needsnet_plugin.py", home / "plugins" / "needsnet_plugin.py")

    def granted() -> tuple[list[str], list[str]]:
        entry = json.loads((home / "grants.json").read_text())["grants"]["needsnet"]
        return entry["network"], entry["env"]

    first = sandchat(home, "plugins", "grant", "needsnet", "--network", "127.0.0.1:8088", "--yes")
    assert first.returncode == 0 and granted() == (["127.0.0.1:8088"], [])  # not also what the file requests
    assert sandchat(home, "plugins", "grant", "needsnet", "--network", "[::1]:8089", "--yes").returncode == 0
    assert granted() == (["127.0.0.1:8088", "[::1]:8089"], [])
    again = sandchat(home, "plugins", "grant", "needsnet", "--yes")  # what the file requests, on top
    assert again.returncode == 0 and "(adds 127.0.0.1:9)" in again.stdout
    assert granted() == (["127.0.0.1:8088", "[::1]:8089", "127.0.0.1:9"], [])
    removed = sandchat(home, "plugins", "revoke", "needsnet", "--network", "[::1]:8089")
    assert removed.returncode == 0 and granted() == (["127.0.0.1:8088", "127.0.0.1:9"], [])
    assert sandchat(home, "plugins", "grant", "needsnet", "--env", "NEEDSNET_KEY", "--yes").returncode == 0
    assert granted() == (["127.0.0.1:8088", "127.0.0.1:9"], ["NEEDSNET_KEY"])  # exactly what was named
    assert sandchat(home, "plugins", "revoke", "needsnet").returncode == 0
    assert "needsnet" not in json.loads((home / "grants.json").read_text())["grants"]


@pytest.mark.timeout(60)
def test_grant_without_yes_from_a_script_grants_nothing(home: Path) -> None:
    (home / "plugins").mkdir(parents=True)
    shutil.copy(CHATPLUGINS / "needsnet_plugin.py", home / "plugins" / "needsnet_plugin.py")
    result = sandchat(home, "plugins", "grant", "needsnet")  # stdin is not a terminal: never grant silently
    assert result.returncode == 1 and "plugin 'needsnet': nothing granted" in result.stderr
    assert not (home / "grants.json").exists()


@pytest.mark.timeout(60)
def test_adding_an_endpoint_to_a_shipped_plugin_keeps_what_it_ships_with(home: Path) -> None:
    assert sandchat(home, "plugins", "grant", "openai_compatible", "--network", "127.0.0.1:8088", "--yes").returncode == 0
    entry = json.loads((home / "grants.json").read_text())["grants"]["openai_compatible"]
    assert entry["network"] == ["api.openai.com:443", "127.0.0.1:8088"]  # the shipped endpoint stays, the new one joins
    assert {"OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"} <= set(entry["env"])  # and so do its variables
    with PluginManager([], home) as manager:
        access = access_of(manager.plugin_file("openai_compatible"), manager.grants)
        assert access.profile == "network" and access.grant is not None and access.grant.source == "user"
        assert [str(e) for e in manager.launch_config("openai_compatible").sandbox.endpoints] == ["api.openai.com:443", "127.0.0.1:8088"]


@pytest.mark.timeout(60)
def test_revoke_network_matches_the_stored_spelling_and_names_what_was_not_granted(home: Path) -> None:
    (home / "plugins").mkdir(parents=True)
    shutil.copy(CHATPLUGINS / "needsnet_plugin.py", home / "plugins" / "needsnet_plugin.py")
    assert sandchat(home, "plugins", "grant", "needsnet", "--network", "*.Example.COM:443", "--yes").returncode == 0
    entry = json.loads((home / "grants.json").read_text())["grants"]["needsnet"]
    assert entry["network"] == ["*.example.com:443"]  # stored as the host matches it
    revoked = sandchat(home, "plugins", "revoke", "needsnet", "--network", "*.EXAMPLE.com.:443", "--network", "x.org:1")
    assert revoked.returncode == 0 and "was not granted x.org:1" in revoked.stdout
    assert json.loads((home / "grants.json").read_text())["grants"].get("needsnet", {}).get("network", []) == []
    bad = sandchat(home, "plugins", "revoke", "needsnet", "--network", "a*b:1")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "must name a host" in bad.stderr
