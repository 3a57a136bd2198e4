"""``sandchat plugins ...`` output as terminal users expect it (issue 20).

Tables fit the terminal (``COLUMNS``, else 80 into a pipe); ``plugins list`` says what was
skipped in a footer, never sandchat's own files, and shows what health.db and logs.db
recorded without starting anything; ``plugins check`` prints each row as it finishes; a
plugin's traceback goes to its log while the command says one line.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TEST_PLUGINS, plugin_processes
from tests.helpers import SANDCHAT, cli_env, sandchat

ECHO = Path(__file__).resolve().parent.parent / "llm_plugins" / "echo_plugin.py"
LONG = "A description long enough to be cut in eighty columns but not in a hundred and fifty: " + "words " * 8


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "long_plugin.py").write_text(f'# /// plugin\n# description = "{LONG.strip()}"\n# files = ["long_plugin.toml"]\n# ///\n'
                                           + ECHO.read_text().split("# ///\n", 1)[1])  # fmt: skip
    (folder / "long_plugin.toml").write_text("x = 1\n")  # its declared companion file: not a skipped plugin
    for name in ("my plugin.py", "_helper.py", "old.py.bak", "notes.txt", ".DS_Store"):
        (folder / name).write_text("x = 1\n")
    (folder / "echo_plugin.py").write_text(ECHO.read_text())  # the same name as the shipped echo: a conflict
    return folder


@pytest.mark.timeout(60)
def test_plugins_list_fits_the_terminal_width(home: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    piped = sandchat(home, "plugins", "list", "--plugins-dir", str(folder))
    assert piped.returncode == 0, piped.stderr
    table = piped.stdout.split("\n  ! ")[0].splitlines()  # the footer's paths are printed whole
    assert len(table) >= 5 and max(map(len, table)) <= 80 and LONG.strip() not in piped.stdout
    wide = sandchat(home, "plugins", "list", "--plugins-dir", str(folder), COLUMNS="200")
    assert LONG.strip() in wide.stdout and max(map(len, wide.stdout.splitlines())) <= 200


@pytest.mark.timeout(60)
def test_plugins_list_footer_counts_skipped_plugin_files_and_names_conflicts(home: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    result = sandchat(home, "plugins", "list", "--plugins-dir", str(folder), COLUMNS="300")
    footer = result.stdout.split("\n  ! ", 1)[1]
    assert footer.startswith(
        f"name 'echo' is used by 2 files, so neither is used until one is renamed:\n      {ECHO}\n      {folder}/echo_plugin.py\n"
    )
    assert result.stdout.endswith("\n3 files skipped, see --all\n")  # 'my plugin.py', _helper.py, old.py.bak
    assert "TRUSTED" not in result.stdout
    every = sandchat(home, "plugins", "list", "--all", "--plugins-dir", str(folder), COLUMNS="300").stdout
    assert "my plugin.py  file name contains a space" in every and "old.py.bak" in every
    assert "notes.txt (not a .py file)" in every.split("\nnot plugins: ", 1)[1]
    assert "TRUSTED" not in every and "long_plugin.toml" not in every


@pytest.mark.timeout(60)
def test_plugins_list_json_never_lists_sandchats_own_files(home: Path, tmp_path: Path) -> None:
    body = json.loads(sandchat(home, "plugins", "list", "--all", "--json", "--plugins-dir", str(_folder(tmp_path))).stdout)
    listed = {Path(s["path"]).name: s["candidate"] for s in body["skipped"]}
    assert "TRUSTED" not in listed and "long_plugin.toml" not in listed
    assert listed["my plugin.py"] is True and listed["notes.txt"] is False


@pytest.mark.timeout(90)
def test_the_last_24h_column_is_what_was_recorded_and_starts_nothing(home: Path) -> None:
    assert sandchat(home, "prompt", "-p", "echo", "hi").returncode == 0
    assert sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "prompt", "-p", "raises", "hi").returncode == 1
    assert sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "prompt", "-p", "segfault", "hi").returncode == 1
    listed = sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "plugins", "list", "--json")
    recent = {p["name"]: p["last_24h"] for p in json.loads(listed.stdout)["plugins"]}
    assert recent["echo"] == "ok"
    assert recent["raises"] == "1 failed reply"
    assert recent["segfault"] == "crashed 1×, 1 failed reply"
    assert recent["hang"] == "-"  # never run: nothing is claimed
    table = sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "plugins", "list", COLUMNS="200").stdout
    assert "LAST 24H" in table and "crashed 1×, 1 failed reply" in table
    assert plugin_processes(str(home)) == []


@pytest.mark.timeout(90)
def test_plugins_health_fits_the_terminal_width(home: Path) -> None:
    for columns, limit in ((None, 80), ("60", 60)):
        result = sandchat(home, "plugins", "health", "echo", **({"COLUMNS": columns} if columns else {}))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith("NAME") and max(map(len, lines)) <= limit


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["nosuch", "../../etc/passwd"])
def test_plugins_logs_of_no_plugin_is_a_usage_error(home: Path, name: str) -> None:
    result = sandchat(home, "plugins", "logs", name)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"sandchat: plugin {name!r} is not installed (available: ") and result.stderr.count("\n") == 1


@pytest.mark.timeout(60)
def test_a_plugins_traceback_goes_to_its_log_and_the_command_says_one_line(home: Path) -> None:
    result = sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "prompt", "-p", "raises", "hi")
    assert (result.returncode, result.stderr) == (1, "sandchat: plugin 'raises' raised ValueError: model rejected 'hi'\n")
    log = sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "plugins", "logs", "raises")
    assert log.returncode == 0, log.stderr
    assert "[sandchat] raises: plugin 'raises' raised ValueError: model rejected 'hi'; the plugin's traceback:" in log.stdout
    assert f'| File "{TEST_PLUGINS / "raises_plugin.py"}", line 6, in _inner_helper' in log.stdout.replace("|   ", "| ")
    assert "runner/child/server.py" not in log.stdout  # sandchat's own frames are not the author's business


# -- plugins check on a terminal -------------------------------------------------------------


def _hang_in_generation(tmp_path: Path) -> Path:
    path = tmp_path / "stuck_plugin.py"
    path.write_text(
        "import threading\nfrom llm_utils import LLMClient\n\n\nclass Stuck(LLMClient):\n"
        "    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):\n"
        "        threading.Event().wait()\n\n    def count_tokens(self, text):\n        return len(text.split())\n"
    )  # fmt: skip
    return path


@pytest.mark.timeout(90)
def test_plugins_check_prints_each_row_as_it_finishes_within_the_terminal(home: Path, tmp_path: Path) -> None:
    primary, secondary = os.openpty()
    environ = cli_env(home, COLUMNS="60")
    argv = [*SANDCHAT, "plugins", "check", str(_hang_in_generation(tmp_path)), "--timeout", "3"]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=secondary, stderr=subprocess.DEVNULL, env=environ)
    os.close(secondary)
    seen = b""
    try:
        while b"count_tokens (100 KB)" not in seen:
            seen += os.read(primary, 4096)
        running = process.poll() is None  # generate_response has yet to time out: the rows came before the end
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the process is gone and the terminal closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(primary)
        process.wait(timeout=60)
    assert running
    lines = seen.decode().replace("\r\n", "\n").splitlines()
    assert process.returncode == 1 and "check(s) failed" in lines[-1]
    assert lines[0].startswith("checking ") and max(map(len, lines[1:])) <= 60  # the path on top is whole
    assert any(line.startswith(" " * 37) for line in lines)  # a long reason wrapped under DETAIL, not cut
    assert any(line.startswith("generate_response") and "FAIL" in line for line in lines)


@pytest.mark.timeout(60)
def test_grant_without_yes_and_without_a_terminal_grants_nothing_in_one_line(home: Path) -> None:
    result = sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "plugins", "grant", "envdump", "--env", "EXAMPLE_TOKEN")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == "sandchat: plugin 'envdump': nothing granted (no terminal to ask on: add --yes to confirm)\n"
    listed = json.loads(sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "plugins", "list", "--json").stdout)["plugins"]
    assert next(p for p in listed if p["name"] == "envdump")["env"] == []
