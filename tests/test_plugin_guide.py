"""Every code sample in docs/plugin-guide.md works as the guide says.

Conventions of the guide (its introduction states them too):

- ```` ```python ```` blocks are whole plugin files whose first line is
  ``# file: NAME_plugin.py``, optionally followed by ``(check fails: REASON)``; each is
  run through ``sandchat plugins check``, which must pass, or fail naming REASON.
- ```` ```sh ```` blocks: every ``sandchat ...`` command (after ``VAR=value`` prefixes and
  pipes) must parse with ``build_parser()``. Blocks opened as ```` ```sh run ```` are also
  executed, in order, in one scratch home and working directory; each must exit 0, and a
  ``# prints: TEXT`` comment means stdout must be exactly TEXT.
- ```` ```text ```` blocks start with ``$ sandchat ...``: the command is run with the guide's
  plugin files as a ``--plugins-dir`` and its output must be the rest of the block.
- ```` ```toml ```` blocks are ``config.toml`` samples: they must load, and their
  ``[plugins.NAME]`` tables must be valid deadlines.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

import runner
from app.cli import build_parser
from app.settings import load
from tests.helpers import sandchat

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "plugin-guide.md"
_FENCE = re.compile(r"^```(?P<lang>\w*)(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
_FILE = re.compile(r"^# file: (?P<file>\S+)(?:\s+\(check fails: (?P<fails>.+)\))?$")
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _blocks(lang: str, info: str | None = None) -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    return [m["body"] for m in _FENCE.finditer(text) if m["lang"] == lang and (info is None or m["info"].strip() == info)]


def _plugin_blocks() -> list[tuple[str, str | None, str]]:
    found = []
    for body in _blocks("python"):
        match = _FILE.match(body.splitlines()[0])
        assert match, f"a python block of the guide does not start with '# file: NAME_plugin.py':\n{body[:200]}"
        found.append((match["file"], match["fails"], body))
    return found


def _commands(block: str) -> list[tuple[dict[str, str], list[str], str]]:
    """``(env assignments, argv after 'sandchat', trailing comment)`` for each sandchat command."""
    commands = []
    for line in block.splitlines():
        comment = line.split("#", 1)[1].strip() if "#" in line else ""
        for segment in line.split("|"):
            tokens = shlex.split(segment, comments=True)
            env = {}
            while tokens and _ASSIGN.match(tokens[0]):
                key, value = tokens.pop(0).split("=", 1)
                env[key] = value
            if tokens and tokens[0] == "sandchat":
                commands.append((env, tokens[1:], comment))
    return commands


PLUGINS = _plugin_blocks()


@pytest.fixture(scope="module")
def guide_plugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("guide") / "plugins"
    folder.mkdir()
    for name, _, body in PLUGINS:
        (folder / name).write_text(body, encoding="utf-8")
    return folder


@pytest.mark.timeout(10)
def test_the_guide_has_samples_of_every_kind() -> None:
    assert len(PLUGINS) >= 5 and _blocks("sh", "run") and _blocks("text") and _blocks("toml")
    fences = {m["lang"] for m in _FENCE.finditer(GUIDE.read_text(encoding="utf-8"))}
    assert fences <= {"python", "sh", "text", "toml"}, f"untested kind of sample: {fences}"
    assert len({name for name, _, _ in PLUGINS}) == len(PLUGINS), "two samples use the same file name"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "fails", "body"), PLUGINS, ids=[name for name, _, _ in PLUGINS])
def test_plugin_sample_passes_plugins_check_or_fails_as_documented(
    name: str, fails: str | None, body: str, guide_plugins: Path, tmp_path: Path
) -> None:
    result = sandchat(tmp_path / "home", "plugins", "check", str(guide_plugins / name), "--timeout", "10", cwd=tmp_path, timeout=100)
    if fails is None:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "all checks passed" in result.stdout
    else:
        assert result.returncode == 1, result.stdout + result.stderr
        assert fails in result.stdout


@pytest.mark.timeout(10)
def test_every_sandchat_command_in_the_guide_parses() -> None:
    commands = [c for block in _blocks("sh") for c in _commands(block)]
    commands += [c for block in _blocks("text") for c in _commands(block.splitlines()[0].removeprefix("$ "))]
    assert len(commands) >= 20
    parser = build_parser()
    for _, argv, _ in commands:
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"'sandchat {shlex.join(argv)}' does not parse (exit {exc.code})")


@pytest.mark.timeout(240)
def test_sh_run_blocks_work_in_order(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "work"
    cwd.mkdir()
    for block in _blocks("sh", "run"):
        for env, argv, comment in _commands(block):
            result = sandchat(home, *argv, cwd=cwd, timeout=100, **env)
            shown = f"sandchat {shlex.join(argv)}\n{result.stdout}{result.stderr}"
            assert result.returncode == 0, shown
            if comment.startswith("prints:"):
                assert result.stdout == comment.removeprefix("prints:").strip() + "\n", shown


@pytest.mark.timeout(120)
@pytest.mark.parametrize("block", _blocks("text"), ids=lambda b: b.splitlines()[0][:40])
def test_output_samples_are_what_sandchat_prints(block: str, guide_plugins: Path, tmp_path: Path) -> None:
    first, *expected = block.splitlines()
    assert first.startswith("$ sandchat "), f"an output sample must start with '$ sandchat': {first!r}"
    ((env, argv, _),) = _commands(first.removeprefix("$ "))
    result = sandchat(tmp_path / "home", "--plugins-dir", str(guide_plugins), *argv, cwd=tmp_path, timeout=100, **env)
    assert (result.stdout + result.stderr).strip() == "\n".join(expected).strip()


@pytest.mark.timeout(10)
@pytest.mark.parametrize("block", _blocks("toml"))
def test_settings_samples_load(block: str, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(block, encoding="utf-8")
    settings = load({"SANDCHAT_HOME": str(tmp_path)})
    tables = tomllib.loads(block)["plugins"]
    assert settings.plugin_options == tables
    for table in tables.values():
        runner.Deadlines(**table)  # every key is a deadline, every value valid
