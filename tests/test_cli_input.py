"""What the user gives is never dropped or misread: stdin and TEXT, empty and oversized prompts, logs.

Through the real CLI (``python -m app``) with real plugin processes; the chat's slash
commands through a real ChatSession.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from app import PluginManager
from app.chat import ChatSession
from app.render import Output
from app.slash import run_command
from tests.conftest import FAST, TEST_PLUGINS
from tests.helpers import sandchat

pytestmark = pytest.mark.timeout(60)


def test_piped_input_and_text_are_both_sent_input_first(home: Path) -> None:
    result = sandchat(home, "prompt", "-p", "echo", "Summarise", "in", "one", stdin="notes from a file\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: notes from a file\n\nSummarise in one\n"


def test_several_words_are_one_prompt(home: Path) -> None:
    result = sandchat(home, "prompt", "-p", "echo", "what", "is", "2+2")
    assert (result.returncode, result.stdout) == (0, "echo: what is 2+2\n")
    assert sandchat(home, "tokens", "-p", "echo", "two", "words").stdout == "2\n"


@pytest.mark.parametrize("stdin", ["", "  \n\n"])
def test_an_empty_prompt_is_a_usage_error(home: Path, stdin: str) -> None:
    result = sandchat(home, "prompt", "-p", "echo", stdin=stdin)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "sandchat: the prompt is empty: give TEXT or pipe something in\n"


def test_a_prompt_over_the_message_cap_is_a_usage_error_before_anything_is_sent(home: Path) -> None:
    result = sandchat(home, "prompt", "-p", "echo", stdin="x" * (17 * 2**20))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "sandchat: the prompt is 17.0 MiB; the most a plugin accepts is 15.9 MiB\n"
    events = json.loads(sandchat(home, "plugins", "health", "echo", "--json").stdout)[0]
    assert events["crashes_24h"] == 0  # the plugin was never blamed


def test_prompts_are_logged_like_chat_exchanges_failures_included(home: Path) -> None:
    assert sandchat(home, "prompt", "-p", "echo", "first").returncode == 0
    assert sandchat(home, "prompt", "-p", "nosuch", "second").returncode == 2  # never reached a plugin: not logged
    logged = json.loads(sandchat(home, "logs", "--json").stdout)
    assert [(e["plugin"], e["prompt"], e["response"], e["error"]) for e in logged] == [("echo", "first", "echo: first", None)]


def test_tokens_explains_a_history_the_next_send_will_trim(home: Path) -> None:
    with PluginManager([TEST_PLUGINS], home, deadlines=FAST) as manager:
        out = io.StringIO()
        session = ChatSession(manager, Output(out, io.StringIO(), color=False), "tiny_window", max_tokens=20, temperature=0.0)
        session.conversation.add("user", "hi")
        session.conversation.add("assistant", " ".join(["word"] * 50))  # alone more than the 40 tokens left
        assert run_command(session, None, "/tokens") is True  # type: ignore[arg-type]
        assert out.getvalue() == (
            "context window 60 tokens (tiny_window): the newest message alone needs 54 of the 40 left after the "
            "reply budget, so your next message goes without the earlier history (it is trimmed, not lost: /save keeps it)\n"
        )
        session.ask("and now")  # ...and the next send does just that
        assert session.conversation.messages[-1]["content"] == "saw and now"


def test_the_first_message_is_fitted_to_the_plugins_own_window(home: Path) -> None:
    with PluginManager([TEST_PLUGINS], home, deadlines=FAST) as manager:
        session = ChatSession(manager, Output(io.StringIO(), io.StringIO(), color=False), "tiny_window", max_tokens=20, temperature=0.0)
        for i in range(10):  # 50 words of history the 60-token window cannot hold
            session.conversation.add("user", f"old message {i} five words")
            session.conversation.add("assistant", "ok")
        session.ask("new")  # the plugin is not running yet: its window comes from its hello, not a default
        assert session.last_budget.window == 60 and session.last_budget.dropped > 0


@pytest.mark.parametrize("argv", [["plugins", "disable", "echo"], ["keys", "set", "X"], ["plugins", "grant", "echo", "--yes"]])
def test_an_unusable_data_directory_is_one_line_naming_it(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "afile").write_text("")
    home = tmp_path / "afile" / "home"  # under a regular file: it can never be created
    result = sandchat(home, *argv, stdin="secret\n")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"sandchat: cannot write or read {home}: Not a directory; make sandchat's directories")


def test_an_unusable_scratch_directory_costs_the_plugin_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    home = tmp_path / "afile" / "home"
    result = sandchat(home, "prompt", "-p", "echo", "hi")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"sandchat: plugin 'echo' cannot create its scratch directory {home}/scratch/echo: Not a directory" in result.stderr


def test_revoke_says_what_a_shipped_plugin_keeps_and_refuses_an_unknown_name(home: Path) -> None:
    shipped = sandchat(home, "plugins", "revoke", "claude")
    assert shipped.returncode == 0 and "has no grant of yours; it keeps what it ships with (api.anthropic.com:443" in shipped.stdout
    unknown = sandchat(home, "plugins", "revoke", "nosuch")
    assert unknown.returncode == 2 and "plugin 'nosuch' is not installed" in unknown.stderr


def test_empty_logs_say_so(home: Path) -> None:
    result = sandchat(home, "logs")
    assert (result.returncode, result.stdout) == (0, "") and result.stderr.startswith("sandchat: no exchanges logged yet")


def _user_plugin(home: Path, name: str, body: str) -> None:
    folder = home / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}_plugin.py").write_text(body)


def test_seed_reaches_plugins_and_temperature_defaults_to_the_plugins_own(home: Path) -> None:
    _user_plugin(home, "knobs", (
        "import os\nfrom llm_utils import LLMClient\n"
        "class Knobs(LLMClient):\n"
        "    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.25):\n"
        "        return f\"seed {os.environ.get('SANDCHAT_SEED')} temperature {temperature}\"\n"
        "    def count_tokens(self, text):\n        return len(text.split())\n"
    ))  # fmt: skip
    assert sandchat(home, "prompt", "-p", "knobs", "x").stdout == "seed None temperature 0.25\n"
    assert sandchat(home, "prompt", "-p", "knobs", "--seed", "7", "--temperature", "1.5", "x").stdout == "seed 7 temperature 1.5\n"
    bad = sandchat(home, "prompt", "-p", "knobs", "--seed", "-1", "x")
    assert bad.returncode == 2 and "--seed: must be from 0 to 2147483647, got -1" in bad.stderr


def test_an_answer_that_used_all_of_max_tokens_says_so(home: Path) -> None:
    cut = sandchat(home, "prompt", "-p", "echo", "--max-tokens", "3", "one two three four five")
    assert cut.returncode == 0 and cut.stdout == "echo: one two \n"
    assert cut.stderr == "sandchat: the answer stopped at the --max-tokens limit (3 tokens); give a larger --max-tokens for more\n"
    whole = sandchat(home, "prompt", "-p", "echo", "--max-tokens", "50", "one two")
    assert whole.stderr == ""
