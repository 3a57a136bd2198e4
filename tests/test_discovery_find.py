"""``discovery.find``: one plugin's file, read alone, exactly as a whole ``discover`` finds it.

A warm ``sandchat prompt -p NAME`` decides from ``find`` (the other plugins' metadata is not
parsed); anything but one clean match leaves the answer, and its error, to ``discover``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.discovery import discover, find

pytestmark = pytest.mark.timeout(30)

BLOCK = '# /// plugin\n# description = "d"\n# env = ["X_KEY"]\n# ///\n'


def folders(tmp_path: Path) -> list[tuple[Path, str]]:
    user, extra = tmp_path / "user", tmp_path / "extra"
    user.mkdir()
    extra.mkdir()
    return [(user, "user"), (extra, "dir"), (user, "user")]  # a folder twice counts once, as discover has it


def test_find_returns_what_discover_returns_for_both_spellings_of_a_name(tmp_path: Path) -> None:
    dirs = folders(tmp_path)
    (dirs[0][0] / "alpha.py").write_text(BLOCK + "x = 1\n")
    (dirs[1][0] / "beta_plugin.py").write_text("x = 2\n")
    (dirs[0][0] / "broken.py").write_text("# /// plugin\n# description = 3\n# ///\n")
    whole = discover(dirs)
    for name in ("alpha", "beta", "broken"):
        assert find(dirs, name) == whole.plugins[name]
    assert find(dirs, "broken").metadata_error == whole.plugins["broken"].metadata_error is not None  # type: ignore[union-attr]


def test_find_leaves_missing_ambiguous_and_skipped_names_to_discover(tmp_path: Path) -> None:
    dirs = folders(tmp_path)
    (dirs[0][0] / "twice.py").write_text("x = 1\n")
    (dirs[1][0] / "twice_plugin.py").write_text("x = 2\n")
    (dirs[0][0] / "folder.py").mkdir()  # a directory with a plugin's name is skipped
    (dirs[0][0] / "_private.py").write_text("x = 3\n")
    whole = discover(dirs)
    assert "twice" in whole.conflicts and find(dirs, "twice") is None
    assert "folder" not in whole.plugins and find(dirs, "folder") is None
    assert find(dirs, "_private") is None and find(dirs, "private") is None
    assert find(dirs, "absent") is None
    for bad in ("../user/twice", "a b", "", ".hidden"):
        assert find(dirs, bad) is None


def test_a_plugin_plugin_file_is_found_by_the_name_discover_gives_it(tmp_path: Path) -> None:
    dirs = folders(tmp_path)
    (dirs[0][0] / "echo_plugin_plugin.py").write_text("x = 1\n")
    assert set(discover(dirs).plugins) == {"echo_plugin"}
    assert find(dirs, "echo_plugin") == discover(dirs).plugins["echo_plugin"]
    assert find(dirs, "echo") is None
