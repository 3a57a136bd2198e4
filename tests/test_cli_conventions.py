"""The command line behaves as people who live in terminals (and ``llm`` users) expect.

Issue 20: no COMMAND opens the chat, global options anywhere, --version, option values
checked in one line; logs searched and filtered, prompts continuing a conversation,
keys printed for scripts. Through real processes (``python -m app``), as tests/test_cli.py.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from app import chatlog
from app.chatlog import ChatLog, Exchange
from tests.conftest import TEST_PLUGINS
from tests.helpers import sandchat

CHAT_PLUGINS = Path(__file__).parent / "chatplugins"
ROOT = Path(__file__).resolve().parent.parent


# -- no COMMAND, global options, --version, option values ------------------------------------


@pytest.mark.timeout(60)
def test_no_command_with_a_plugin_opens_the_chat_with_it(home: Path) -> None:
    result = sandchat(home, "-p", "nosuch", terminal=True)  # the chat checks the name before it opens
    assert result.returncode == 2
    assert result.stderr.startswith("sandchat: plugin 'nosuch' is not installed (available: ") and result.stderr.count("\n") == 1
    piped = sandchat(home, "--no-plugins", "-p", "echo")
    assert (piped.returncode, piped.stderr) == (2, "sandchat: the chat needs a terminal; for pipes use: sandchat prompt\n")


@pytest.mark.timeout(60)
def test_a_prompt_without_the_command_word_is_a_usage_error_that_says_what_to_type(home: Path) -> None:
    result = sandchat(home, "what is 2+2")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "sandchat: unknown command 'what is 2+2'; for a one-shot answer: sandchat prompt TEXT (see: sandchat --help)\n"


@pytest.mark.timeout(60)
def test_global_options_work_after_the_command_too(home: Path, tmp_path: Path) -> None:
    after = sandchat(home, "prompt", "-p", "raises", "--plugins-dir", str(TEST_PLUGINS), "hi")
    assert (after.returncode, after.stderr) == (1, "sandchat: plugin 'raises' raised ValueError: model rejected 'hi'\n")
    both = sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "plugins", "list", "--json", "--plugins-dir", str(CHAT_PLUGINS))
    names = [p["name"] for p in json.loads(both.stdout)["plugins"]]
    assert "raises" in names and "recall" in names  # before and after: both folders, neither lost
    nested = sandchat(home, "plugins", "--plugins-dir", str(TEST_PLUGINS), "list", "--json", "--plugins-dir", str(CHAT_PLUGINS))
    assert {"raises", "recall"} <= {p["name"] for p in json.loads(nested.stdout)["plugins"]}  # after the command and after its action
    safe = json.loads(sandchat(home, "plugins", "list", "--json", "--no-plugins").stdout)["plugins"]
    assert {p["state"] for p in safe} == {"disabled"}


@pytest.mark.timeout(60)
def test_version_is_the_packages(home: Path) -> None:
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = sandchat(home, "--version")
    assert (result.returncode, result.stdout) == (0, f"sandchat {expected}\n")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["prompt", "--temperature", "2.5", "hi"], "argument --temperature: must be between 0 and 2, got 2.5"),
        (["prompt", "--temperature", "-0.1", "hi"], "argument --temperature: must be between 0 and 2, got -0.1"),
        (["prompt", "--temperature", "nan", "hi"], "argument --temperature: must be a finite number, got 'nan'"),
        (["prompt", "--temperature", "warm", "hi"], "argument --temperature: must be a number, got 'warm'"),
        (["prompt", "--max-tokens", "1.5", "hi"], "argument --max-tokens: must be a positive whole number, got '1.5'"),
        (["prompt", "--max-tokens", "-3", "hi"], "argument --max-tokens: must be a positive whole number, got -3"),
        (["prompt", "--timeout", "0", "hi"], "argument --timeout: must be a positive number of seconds, got 0"),
        (["prompt", "--timeout", "inf", "hi"], "argument --timeout: must be a finite number, got 'inf'"),
        (["logs", "-n", "-1"], "argument -n: must be a whole number (0 for all), got -1"),
        (["plugins", "logs", "echo", "-n", "0"], "argument -n/--lines: must be a positive whole number, got 0"),
        (["plugins", "health", "--watch", "nan"], "argument --watch: must be a finite number, got 'nan'"),
    ],
)
def test_a_bad_option_value_is_one_line_naming_the_option(home: Path, argv: list[str], says: str) -> None:
    result = sandchat(home, *argv)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"sandchat: {says} (see: sandchat ") and result.stderr.count("\n") == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("temperature", ["0", "2"])
def test_the_temperature_range_is_inclusive(home: Path, temperature: str) -> None:
    result = sandchat(home, "prompt", "-p", "echo", "--temperature", temperature, "hi")
    assert (result.returncode, result.stdout) == (0, "echo: hi\n"), result.stderr


# -- prompt -c / --cid -----------------------------------------------------------------------


def _logged(home: Path, *args: str) -> list[dict[str, object]]:
    result = sandchat(home, "logs", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.timeout(90)
def test_prompt_continue_sends_the_history_and_logs_into_that_conversation(home: Path) -> None:
    first = sandchat(home, "--plugins-dir", str(CHAT_PLUGINS), "prompt", "-p", "recall", "one")
    assert first.stdout == "recall: one\n", first.stderr
    second = sandchat(home, "--plugins-dir", str(CHAT_PLUGINS), "prompt", "-c", "two")  # no -p: the conversation's plugin
    assert (second.returncode, second.stdout) == (0, "recall saw one | recall: one | two\n"), second.stderr
    logged = _logged(home)
    assert [(e["plugin"], e["prompt"]) for e in logged] == [("recall", "one"), ("recall", "two")]
    assert logged[0]["conversation"] == logged[1]["conversation"]
    fresh = sandchat(home, "--plugins-dir", str(CHAT_PLUGINS), "prompt", "-p", "recall", "new")
    assert fresh.stdout == "recall: new\n"  # without -c: a conversation of its own
    assert len({e["conversation"] for e in _logged(home)}) == 2


@pytest.mark.timeout(90)
def test_prompt_cid_takes_a_unique_prefix_and_refuses_an_unknown_or_ambiguous_one(home: Path) -> None:
    log = ChatLog(home / "logs.db")  # SANDCHAT_HOME puts logs.db here
    for cid, said in (("aaa111", "first"), ("aaa222", "second"), ("bbb333", "third")):
        log.add(Exchange(conversation=cid, plugin="recall", system="", prompt=said, response=f"re {said}"))
    picked = sandchat(home, "--plugins-dir", str(CHAT_PLUGINS), "prompt", "--cid", "aaa2", "more")
    assert (picked.returncode, picked.stdout) == (0, "recall saw second | re second | more\n"), picked.stderr
    assert [e["prompt"] for e in _logged(home, "--cid", "aaa2")] == ["second", "more"]
    unknown = sandchat(home, "prompt", "--cid", "zzz", "hi")
    assert (unknown.returncode, unknown.stderr) == (2, "sandchat: no logged conversation has an id starting 'zzz' (see: sandchat logs)\n")
    ambiguous = sandchat(home, "prompt", "--cid", "aaa", "hi")
    assert ambiguous.returncode == 2 and "matches more than one conversation" in ambiguous.stderr
    assert len(_logged(home, "-n", "0")) == 4  # the refused prompts reached no plugin and were not logged


@pytest.mark.timeout(60)
def test_prompt_continue_with_nothing_logged_starts_a_new_conversation(home: Path) -> None:
    result = sandchat(home, "prompt", "-c", "-p", "echo", "hi")
    assert (result.returncode, result.stdout) == (0, "echo: hi\n")
    assert result.stderr == "sandchat: no earlier conversation: starting a new one\n"


# -- logs ------------------------------------------------------------------------------------


def _fill(home: Path) -> None:
    log = ChatLog(home / "logs.db")
    rows = [
        ("local", "What is the capital of France?", "Paris."),
        ("echo", "100% sure?", "echo: 100% sure?"),
        ("echo", "hello", "echo: hello"),
    ]
    for i, (plugin, prompt, response) in enumerate(rows):
        log.add(Exchange(conversation=f"c{i}", plugin=plugin, system="", prompt=prompt, response=response))


@pytest.mark.timeout(60)
def test_logs_search_filter_and_count(home: Path) -> None:
    _fill(home)
    assert [e["prompt"] for e in _logged(home, "-q", "pari")] == ["What is the capital of France?"]  # the response matched
    assert [e["prompt"] for e in _logged(home, "-q", "CAPITAL france")] == ["What is the capital of France?"]
    assert [e["prompt"] for e in _logged(home, "-q", '100% "sure')] == ["100% sure?"]  # no query syntax to trip on
    assert [e["prompt"] for e in _logged(home, "-p", "echo")] == ["100% sure?", "hello"]
    assert [e["prompt"] for e in _logged(home, "-n", "1")] == ["hello"]
    assert len(_logged(home, "-n", "0")) == 3
    text = sandchat(home, "logs", "-q", "hello")
    assert text.returncode == 0 and "> hello\necho: hello\n" in text.stdout and "France" not in text.stdout


@pytest.mark.timeout(60)
def test_logs_with_no_match_say_so_on_stderr(home: Path) -> None:
    _fill(home)
    result = sandchat(home, "logs", "-q", "nowhere", "-p", "echo")
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == "sandchat: no logged exchange matches -q 'nowhere' -p 'echo'\n"
    as_json = sandchat(home, "logs", "-q", "nowhere", "--json")
    assert (as_json.returncode, as_json.stdout) == (0, "[]\n") and "matches -q 'nowhere'" in as_json.stderr


@pytest.mark.timeout(60)
def test_logs_path_prints_the_database(home: Path) -> None:
    result = sandchat(home, "logs", "path")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{home / 'logs.db'}\n", "")


@pytest.mark.timeout(30)
def test_the_search_without_fts5_matches_the_same_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = ChatLog(tmp_path / "logs.db")
    for prompt in ("capital of France", "100% sure_x", "hello"):
        log.add(Exchange(conversation="c", plugin="echo", system="", prompt=prompt, response="ok"))
    with_fts = [[e.prompt for e in log.find(0, text=q)] for q in ("capi", "100%", "france CAPITAL")]
    monkeypatch.setattr(chatlog, "has_fts5", lambda: False)
    without = [[e.prompt for e in log.find(0, text=q)] for q in ("capi", "100%", "france CAPITAL")]
    assert with_fts == without == [["capital of France"], ["100% sure_x"], ["capital of France"]]
    assert [e.prompt for e in log.find(0, text="_")] == ["100% sure_x"]  # LIKE's wildcards are literal


# -- keys ------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_keys_get_prints_the_value_and_remove_deletes_it(home: Path) -> None:
    assert sandchat(home, "keys", "set", "EXAMPLE_API_KEY", stdin="sk-test-123\n").returncode == 0
    got = sandchat(home, "keys", "get", "EXAMPLE_API_KEY")
    assert (got.returncode, got.stdout, got.stderr) == (0, "sk-test-123\n", "")
    removed = sandchat(home, "keys", "remove", "EXAMPLE_API_KEY")
    assert removed.returncode == 0 and "sk-test" not in removed.stdout + removed.stderr
    gone = sandchat(home, "keys", "get", "EXAMPLE_API_KEY")
    assert (gone.returncode, gone.stdout) == (2, "")
    assert gone.stderr == "sandchat: no key 'EXAMPLE_API_KEY' stored (see: sandchat keys list)\n"
    assert sandchat(home, "keys", "remove", "EXAMPLE_API_KEY").returncode == 2
    empty = sandchat(home, "keys", "list")
    assert (empty.returncode, empty.stdout) == (0, "") and empty.stderr.startswith("sandchat: no keys stored (")


@pytest.mark.timeout(60)
def test_prompt_continue_trims_a_long_history_to_the_plugins_window_and_says_so(home: Path) -> None:
    log = ChatLog(home / "logs.db")
    for i in range(10):  # 10 exchanges of 6 words each: more than tiny_window's 60 tokens minus the reply budget
        log.add(Exchange(conversation="long1", plugin="tiny_window", system="", prompt=f"old question {i} five words", response="ok"))
    result = sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "prompt", "--cid", "long", "--max-tokens", "20", "newest")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("saw old question") and result.stdout.endswith("| ok | newest\n")
    assert "old question 0 " not in result.stdout  # the oldest went first
    assert result.stderr.startswith("sandchat: sent the newest ") and "do not fit the context window of 'tiny_window'" in result.stderr


# -- output into a pipe whose reader left ------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "argv", [["plugins", "list"], ["--version"], ["prompt", "-p", "echo", "hi"], ["tokens", "-p", "echo", "hi"], ["agent", "status"]]
)
def test_output_into_a_pipe_whose_reader_left_ends_quietly_with_141_as_git_does(home: Path, argv: list[str]) -> None:
    """``sandchat plugins list | head -0``: no traceback, and no advice to fix directories that are fine."""
    import os
    import subprocess

    from tests.helpers import SANDCHAT, cli_env

    read, write = os.pipe()
    os.close(read)  # the reader left before the first byte
    try:
        result = subprocess.run([*SANDCHAT, *argv], stdin=subprocess.DEVNULL, stdout=write, stderr=subprocess.PIPE, text=True,
                                env=cli_env(home), timeout=50)  # fmt: skip
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, "")
