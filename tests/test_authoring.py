"""Plugin authoring: ``plugins new|check|install|remove``, conformance failures, safe mode.

Everything goes through the real ``sandchat`` command. The purpose-built plugins of
``tests/authoring/`` each break one rule; ``gpt4_plugin.py`` and ``your_llm_plugin.py``
are the two examples of the original plugin guide.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from app.conformance import check_file
from app.discovery import Metadata
from tests import helpers
from tests.conftest import FAST

AUTHORING = Path(__file__).resolve().parent / "authoring"
GPT4_ERROR = "plugin 'gpt4' returned NoneType from generate_response, expected str"


def sandchat(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``sandchat ARGS``, given longer than usual: ``plugins check`` runs every check of a plugin."""
    return helpers.sandchat(home, *args, timeout=100, **env)


def rows(stdout: str) -> dict[str, tuple[str, str]]:
    """The check table as {check: (result, detail)}."""
    found = {}
    for line in stdout.splitlines():
        match = re.match(r"^(\S.*?)\s{2,}(pass|FAIL|warn|skip|info)(?:\s{2,}(.*))?$", line)
        if match:
            found[match[1]] = (match[2], match[3] or "")
    return found


def check(home: Path, path: Path, timeout: str = "3") -> tuple[subprocess.CompletedProcess[str], dict[str, tuple[str, str]]]:
    result = sandchat(home, "plugins", "check", str(path), "--timeout", timeout)
    return result, rows(result.stdout)


def user_plugins(home: Path) -> Path:
    return home / "plugins"


# -- plugins new -------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_new_plugin_passes_check_unchanged_and_answers(home: Path) -> None:
    made = sandchat(home, "plugins", "new", "reverse")
    assert made.returncode == 0, made.stderr
    path = user_plugins(home) / "reverse_plugin.py"
    assert f"created {path}" in made.stdout
    source = path.read_text()
    assert source.startswith("# /// plugin\n") and '"""reverse: a sandchat plugin' in source
    assert "def generate_response" in source and "def count_tokens" in source
    result, table = check(home, path, "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout and "warning" not in result.stdout
    assert table["generate_response"] == ("pass", "returned '.rewsna esaelp :kcehc snigulp tahcdnas morf olleH'")
    assert path.read_text() == source  # checking never touches the file
    answer = sandchat(home, "prompt", "-p", "reverse", "hello world")
    assert (answer.returncode, answer.stdout) == (0, "dlrow olleh\n"), answer.stderr
    assert sandchat(home, "tokens", "-p", "reverse", "one two three").stdout == "3\n"


@pytest.mark.timeout(120)
def test_new_plugin_with_permissions_requests_them_and_still_passes(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "src"
    made = sandchat(home, "plugins", "new", "my-api", "--network", "api.example.com:443", "--env", "MY_API_KEY", "--dir", str(folder))
    assert made.returncode == 0, made.stderr
    assert "nothing is granted until you run: sandchat plugins grant my-api" in made.stdout
    path = folder / "my-api_plugin.py"
    source = path.read_text()
    assert '# network = ["api.example.com:443"]\n# env = ["MY_API_KEY"]\n' in source
    assert 'os.environ.get("MY_API_KEY", "")' in source and "class MyApiClient(LLMClient)" in source
    assert not user_plugins(home).exists()  # --dir: nothing in the user folder
    result, table = check(home, path, "20")
    assert result.returncode == 0, result.stdout + result.stderr
    assert table["requested permissions"][1].startswith("network: api.example.com:443; env: MY_API_KEY")


@pytest.mark.timeout(60)
def test_new_refuses_to_overwrite_and_bad_names(home: Path, tmp_path: Path) -> None:
    assert sandchat(home, "plugins", "new", "mine").returncode == 0
    path = user_plugins(home) / "mine_plugin.py"
    path.write_text("# my edits\n")
    again = sandchat(home, "plugins", "new", "mine")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert path.read_text() == "# my edits\n"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "taken_plugin.py").write_text("# mine\n")
    clash = sandchat(home, "plugins", "new", "taken", "--dir", str(tmp_path / "other"))
    assert clash.returncode == 2 and "not overwriting" in clash.stderr
    assert (tmp_path / "other" / "taken_plugin.py").read_text() == "# mine\n"
    for bad, reason in [("my plugin", "file name contains a space"), ("_hidden", "private file"), ("a/b", "name must be"),
                        ("x_plugin", "without '_plugin'"), ("echo", "already exists (shipped:")]:  # fmt: skip
        result = sandchat(home, "plugins", "new", bad)
        assert result.returncode == 2 and reason in result.stderr, (bad, result.stderr)
    bad_endpoint = sandchat(home, "plugins", "new", "web", "--network", "example.com")
    assert bad_endpoint.returncode == 2 and "must be HOST:PORT" in bad_endpoint.stderr
    assert sorted(p.name for p in user_plugins(home).iterdir()) == ["mine_plugin.py"]


# -- plugins check: one purpose-built bad plugin per failure ----------------------------------

FAILURES = [
    ("negative_count", "count_tokens (empty)", "returned -1 from count_tokens, expected a non-negative int"),
    ("ascii_only_count", "count_tokens (Unicode)", "raised UnicodeEncodeError"),
    ("slow_count", "count_tokens (100 KB)", "timed out after 3s (the count tokens deadline)"),
    ("slow_count", "answers within deadlines", "timed out: count_tokens (100 KB)"),
    ("gpt4", "generate_response", GPT4_ERROR),
    ("empty_reply", "generate_response", "returned an empty string"),
    ("raises", "generate_response", "plugin 'raises' raised ValueError: model exploded"),
    ("sleepy", "generate_response", "plugin 'sleepy' timed out after 3s (the total deadline)"),
    ("sleepy", "answers within deadlines", "timed out: generate_response"),
    ("bytes_chunk", "stream_response", "yielded bytes from stream_response, expected str"),
    ("silent_stream", "stream_response", "0 chunk(s) joined to an empty string"),
    ("mismatch_stream", "stream_response", "a deterministic plugin must stream the same text it returns"),
    ("chat_none", "generate_chat", "returned NoneType from generate_chat, expected str"),
    ("printer", "no print() to stdout", "line(s) to stdout, e.g. 'debug: got Hello from sandchat plugins check"),
    ("your_llm", "loads in the sandbox", "failed to load: ModuleNotFoundError: No module named 'your_llm_library'"),
    ("no_class", "loads in the sandbox", "defines no LLMClient subclass"),
    ("bad_syntax", "syntax", "expected ':' (line 5)"),
    ("bad_metadata", "metadata block", "network must be a list of strings"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("plugin", "row", "reason"), FAILURES, ids=[f"{p}:{r}" for p, r, _ in FAILURES])
def test_each_conformance_failure_is_detected_with_its_reason(plugin: str, row: str, reason: str, home: Path) -> None:
    result, table = check(home, AUTHORING / f"{plugin}_plugin.py")
    assert result.returncode == 1, result.stdout + result.stderr
    assert table[row][0] == "FAIL" and reason in table[row][1], result.stdout
    assert re.search(r"^\d+ check\(s\) failed", result.stdout, re.M)


@pytest.mark.timeout(60)
def test_a_bad_file_name_fails_before_anything_runs(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "my plugin.py"
    shutil.copy(AUTHORING / "raises_plugin.py", path)
    result, table = check(home, path)
    assert result.returncode == 1
    assert table["file name"] == ("FAIL", "file name contains a space: sandchat would skip this file")
    assert table["runs in the sandbox"][0] == "skip"
    missing = sandchat(home, "plugins", "check", str(tmp_path / "nope_plugin.py"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


@pytest.mark.timeout(60)
def test_a_plugin_that_differs_between_calls_may_stream_differently(home: Path) -> None:
    result, table = check(home, AUTHORING / "random_stream_plugin.py")
    assert result.returncode == 0, result.stdout
    assert table["stream_response"][0] == "pass" and "not deterministic" in table["stream_response"][1]


@pytest.mark.timeout(60)
def test_raising_without_granted_permissions_is_only_a_warning(home: Path) -> None:
    result, table = check(home, AUTHORING / "needs_network_plugin.py")
    assert result.returncode == 0, result.stdout
    status, detail = table["generate_response"]
    assert status == "warn" and "NEEDS_NETWORK_KEY is not set" in detail and "grants none of the permissions" in detail
    assert table["requested permissions"][1].startswith("network: api.example.com:443; env: NEEDS_NETWORK_KEY")


@pytest.mark.timeout(60)
def test_logging_to_stderr_is_a_warning_not_a_failure(home: Path) -> None:
    result, table = check(home, AUTHORING / "stderr_logger_plugin.py")
    assert result.returncode == 0, result.stdout
    assert table["no print() to stdout"][0] == "pass"
    assert table["other output"][0] == "warn" and "answering" in table["other output"][1]
    assert "all checks passed (1 warning(s))" in result.stdout


@pytest.mark.timeout(60)
def test_the_child_tags_what_python_prints_to_stdout(home: Path) -> None:
    """The mechanism behind the stdout check: sys.stdout lines reach the log tagged."""
    result = sandchat(home, "--plugins-dir", str(AUTHORING), "prompt", "-p", "printer", "hi")
    assert (result.returncode, result.stdout) == (0, "fine\n")
    log = (home / "logs" / "printer.log").read_text()
    assert "[printer] [stdout] debug: got hi\n" in log


@pytest.mark.timeout(60)
def test_check_file_api_uses_the_files_own_name_and_the_untrusted_profile() -> None:
    report = check_file(AUTHORING / "needs_network_plugin.py", deadlines=FAST)
    assert report.name == "needs_network" and report.ok
    assert report.metadata == Metadata(
        "Needs its API: raises without network and key, as it should.", ("api.example.com:443",), ("NEEDS_NETWORK_KEY",)
    )
    loaded = next(r for r in report.results if r.check == "loads in the sandbox")
    assert "profile untrusted" in loaded.detail


# -- the original guide's examples --------------------------------------------------------------


@pytest.mark.timeout(60)
def test_original_guide_skeleton_says_what_is_wrong(home: Path) -> None:
    result, table = check(home, AUTHORING / "gpt4_plugin.py")
    assert result.returncode == 1 and table["generate_response"] == ("FAIL", GPT4_ERROR)
    assert table["count_tokens (ASCII)"] == ("FAIL", "plugin 'gpt4' returned NoneType from count_tokens, expected a non-negative int")
    prompt = sandchat(home, "--plugins-dir", str(AUTHORING), "prompt", "-p", "gpt4", "hello")
    assert (prompt.returncode, prompt.stdout, prompt.stderr) == (1, "", f"sandchat: {GPT4_ERROR}\n")


@pytest.mark.timeout(60)
def test_original_guide_example_names_the_missing_module(home: Path) -> None:
    result, table = check(home, AUTHORING / "your_llm_plugin.py")
    assert result.returncode == 1
    assert "No module named 'your_llm_library'" in table["loads in the sandbox"][1]
    prompt = sandchat(home, "--plugins-dir", str(AUTHORING), "prompt", "-p", "your_llm", "hello")
    assert prompt.returncode == 1 and prompt.stdout == ""
    assert (
        prompt.stderr == "sandchat: plugin 'your_llm' failed to load: ModuleNotFoundError: No module named 'your_llm_library' (at import)\n"
    )


# -- install and remove --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_install_refuses_a_syntax_error_and_grants_nothing(home: Path) -> None:
    refused = sandchat(home, "plugins", "install", str(AUTHORING / "bad_syntax_plugin.py"))
    assert refused.returncode == 1
    assert "not installed" in refused.stderr and "nothing was granted" in refused.stderr
    assert rows(refused.stdout)["syntax"] == ("FAIL", "expected ':' (line 5)")
    assert not (home / "grants.json").exists()
    assert not (user_plugins(home) / "bad_syntax_plugin.py").exists()
    # with grants already on record, the file is left byte for byte as it was
    assert sandchat(home, "plugins", "grant", "echo", "--yes").returncode == 0
    before = (home / "grants.json").read_bytes()
    assert sandchat(home, "plugins", "install", str(AUTHORING / "bad_syntax_plugin.py")).returncode == 1
    assert (home / "grants.json").read_bytes() == before


@pytest.mark.timeout(120)
def test_install_copies_a_good_file_grants_nothing_and_says_how_to_grant(home: Path) -> None:
    source = AUTHORING / "needs_network_plugin.py"
    result = sandchat(home, "plugins", "install", str(source))
    assert result.returncode == 0, result.stdout + result.stderr
    target = user_plugins(home) / "needs_network_plugin.py"
    assert target.read_bytes() == source.read_bytes()
    assert "it requests network api.example.com:443; env NEEDS_NETWORK_KEY; nothing is granted" in result.stdout
    assert result.stdout.rstrip().endswith("sandchat plugins grant needs_network")
    assert not (home / "grants.json").exists()
    listed = json.loads(sandchat(home, "plugins", "list", "--json").stdout)
    row = next(p for p in listed["plugins"] if p["name"] == "needs_network")
    assert (row["source"], row["profile"], row["network"], row["env"]) == ("user", "untrusted", [], [])
    assert row["requested_network"] == ["api.example.com:443"]
    again = sandchat(home, "plugins", "install", str(source))
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.timeout(120)
def test_install_refuses_a_failing_plugin_unless_forced(home: Path) -> None:
    source = AUTHORING / "gpt4_plugin.py"
    refused = sandchat(home, "plugins", "install", str(source), "--timeout", "3")
    assert refused.returncode == 1 and "install anyway with --force" in refused.stderr
    assert not (user_plugins(home) / "gpt4_plugin.py").exists()
    forced = sandchat(home, "plugins", "install", str(source), "--timeout", "3", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "it requests no permissions" in forced.stdout
    assert (user_plugins(home) / "gpt4_plugin.py").exists()


@pytest.mark.timeout(60)
def test_install_refuses_a_name_that_is_taken(home: Path, tmp_path: Path) -> None:
    copy = tmp_path / "echo_plugin.py"
    shutil.copy(AUTHORING / "stderr_logger_plugin.py", copy)
    result = sandchat(home, "plugins", "install", str(copy))
    assert result.returncode == 2 and "a plugin named 'echo' already exists (shipped:" in result.stderr
    assert not user_plugins(home).exists()


@pytest.mark.timeout(60)
def test_remove_deletes_a_user_plugin_and_revokes_its_grant(home: Path) -> None:
    user_plugins(home).mkdir()
    shutil.copy(AUTHORING / "needs_network_plugin.py", user_plugins(home))
    assert sandchat(home, "plugins", "grant", "needs_network", "--yes").returncode == 0
    assert "needs_network" in json.loads((home / "grants.json").read_text())["grants"]
    removed = sandchat(home, "plugins", "remove", "needs_network")
    assert removed.returncode == 0, removed.stderr
    assert "removed plugin 'needs_network'" in removed.stdout and "revoked its grant" in removed.stdout
    assert list(user_plugins(home).iterdir()) == []
    kept = list((home / "removed").iterdir())  # moved aside, not deleted: it may hold the user's edits
    assert len(kept) == 1 and kept[0].name.startswith("needs_network_plugin.py.") and f"kept at {kept[0]}" in removed.stdout
    assert kept[0].read_bytes() == (AUTHORING / "needs_network_plugin.py").read_bytes()
    assert json.loads((home / "grants.json").read_text())["grants"] == {}
    gone = sandchat(home, "plugins", "remove", "needs_network")
    assert gone.returncode == 2 and "no plugin 'needs_network' in the user plugin folder" in gone.stderr


@pytest.mark.timeout(60)
def test_remove_refuses_shipped_plugins_and_plugins_dirs(home: Path) -> None:
    shipped = sandchat(home, "plugins", "remove", "echo")
    assert shipped.returncode == 2
    assert "ships with sandchat" in shipped.stderr and "sandchat plugins disable echo" in shipped.stderr
    other = sandchat(home, "--plugins-dir", str(AUTHORING), "plugins", "remove", "raises")
    assert other.returncode == 2 and "--plugins-dir" in other.stderr
    assert (AUTHORING / "raises_plugin.py").exists()


# -- safe mode ---------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_safe_mode_lists_without_starting_and_can_remove_a_broken_plugin(home: Path) -> None:
    user_plugins(home).mkdir()
    shutil.copy(AUTHORING / "bad_syntax_plugin.py", user_plugins(home))
    listed = sandchat(home, "--no-plugins", "plugins", "list")
    assert listed.returncode == 0
    assert "safe mode (--no-plugins)" in listed.stderr and "sandchat plugins remove NAME" in listed.stderr
    states = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()[1:] if line and not line.startswith(" ")}
    assert states["bad_syntax"] == "disabled" and states["echo"] == "disabled"
    assert not (home / "logs").exists()  # nothing was started
    removed = sandchat(home, "--no-plugins", "plugins", "remove", "bad_syntax")
    assert removed.returncode == 0 and not (user_plugins(home) / "bad_syntax_plugin.py").exists()


@pytest.mark.timeout(60)
def test_safe_mode_prompt_says_so_in_one_line(home: Path) -> None:
    result = sandchat(home, "--no-plugins", "prompt", "hello")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "is off: safe mode (--no-plugins) starts no plugin" in result.stderr
    assert not (home / "default-plugin").exists()  # no default was "explained" or remembered
    named = sandchat(home, "--no-plugins", "prompt", "-p", "echo", "hello")
    assert named.returncode == 1 and named.stderr.startswith("sandchat: plugin 'echo' is off: safe mode")


@pytest.mark.timeout(60)
def test_disabling_one_plugin_by_environment(home: Path) -> None:
    off = sandchat(home, "--plugins-dir", str(AUTHORING), "prompt", "-p", "raises", "hi", SANDCHAT_DISABLE_PLUGINS="raises,gpt4")
    assert off.returncode == 1
    assert off.stderr == "sandchat: plugin 'raises' is turned off by SANDCHAT_DISABLE_PLUGINS or the settings file's 'disabled' list\n"
    others = sandchat(home, "--plugins-dir", str(AUTHORING), "prompt", "-p", "echo", "hi", SANDCHAT_DISABLE_PLUGINS="raises,gpt4")
    assert (others.returncode, others.stdout) == (0, "echo: hi\n")
    listed = json.loads(
        sandchat(home, "--plugins-dir", str(AUTHORING), "plugins", "list", "--json", SANDCHAT_DISABLE_PLUGINS="raises").stdout
    )
    assert {p["name"]: p["state"] for p in listed["plugins"]}["raises"] == "disabled"
