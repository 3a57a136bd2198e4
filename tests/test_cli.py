"""The sandchat command as a user runs it: real processes, exit statuses, stdout vs stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TEST_PLUGINS
from tests.helpers import sandchat

pytestmark = pytest.mark.timeout(60)


def test_prompt_streams_the_default_plugin_answer(home: Path) -> None:
    local_off = {"SANDCHAT_DISABLE_PLUGINS": "local"}  # with the local extra installed, local would answer
    result = sandchat(home, "prompt", "hello", **local_off)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "echo: hello\n"
    assert "using plugin 'echo'" in result.stderr  # said once ...
    again = sandchat(home, "prompt", "hello", **local_off)
    assert again.stderr == ""  # ... and not again


def test_prompt_reads_standard_input_and_prints_only_the_answer(home: Path) -> None:
    result = sandchat(home, "prompt", "-p", "echo", "-s", "Summarise", stdin="notes from a file")
    assert (result.returncode, result.stdout, result.stderr) == (0, "echo: notes from a file\n", "")


def test_tokens_prints_the_integer(home: Path) -> None:
    result = sandchat(home, "tokens", "-p", "echo", "hello world")
    assert (result.returncode, result.stdout) == (0, "2\n")


def test_unknown_plugin_is_a_usage_error(home: Path) -> None:
    result = sandchat(home, "prompt", "-p", "nosuch", "hi")
    assert result.returncode == 2
    assert result.stderr.startswith("sandchat: plugin 'nosuch' is not installed (available: ")
    assert "echo" in result.stderr and result.stderr.count("\n") == 1


def test_bad_option_is_a_usage_error(home: Path) -> None:
    result = sandchat(home, "prompt", "--max-tokens", "0", "hi")
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_failing_plugin_exits_1_with_one_line_naming_it(home: Path) -> None:
    result = sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "prompt", "-p", "raises", "hi")
    assert result.returncode == 1
    assert result.stderr == "sandchat: plugin 'raises' raised ValueError: model rejected 'hi'\n"
    assert result.stdout == ""


def test_plugins_list_all_explains_skipped_files(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "my plugin.py").write_text("x = 1\n")
    (folder / "notes.txt").write_text("x\n")
    (folder / "_helper.py").write_text("x = 1\n")
    (folder / "echo_plugin.py").write_text((Path(__file__).parent.parent / "llm_plugins" / "echo_plugin.py").read_text())
    result = sandchat(home, "--plugins-dir", str(folder), "plugins", "list", "--all", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    reasons = {Path(s["path"]).name: s["reason"] for s in body["skipped"]}
    assert reasons["my plugin.py"] == "file name contains a space"
    assert reasons["notes.txt"] == "not a .py file"
    assert reasons["_helper.py"].startswith("private file")
    assert "used by 2 files" in reasons["echo_plugin.py"]
    assert "echo" not in [p["name"] for p in body["plugins"]]  # ambiguous: neither copy is used


def test_plugins_list_starts_no_plugin(home: Path) -> None:
    from tests.conftest import plugin_processes

    result = sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "plugins", "list")
    assert result.returncode == 0 and "noisy" in result.stdout
    assert "runner" not in sandchat(home, "plugins", "list", "--json").stderr
    assert plugin_processes(str(home)) == []
