"""The build identity the agent's hello compares: the same code gives the same digest, any edit another."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import app.version
from app.version import build

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the sources, so the test may edit them; build() reads from it."""
    root = Path(app.version.__file__).resolve().parent.parent
    for name in ("app", "runner"):
        shutil.copytree(root / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(root / "llm_utils.py", tmp_path / "llm_utils.py")
    monkeypatch.setattr(app.version, "_ROOT", tmp_path)
    return tmp_path


def test_the_same_code_has_the_same_build(tree: Path) -> None:
    assert build() == build()
    assert len(build()) == 16


@pytest.mark.parametrize("path", ["app/chat.py", "runner/sandbox/seccomp.py", "llm_utils.py"])
def test_an_edit_that_keeps_the_size_changes_the_build(tree: Path, path: str) -> None:
    before = build()
    target = tree / path
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a `git pull` rewriting the file: a new mtime
    assert build() != before


def test_a_new_module_changes_the_build_and_bytecode_does_not(tree: Path) -> None:
    before = build()
    (tree / "app" / "__pycache__").mkdir(exist_ok=True)
    (tree / "app" / "__pycache__" / "chat.cpython-311.pyc").write_bytes(b"\0")
    assert build() == before
    (tree / "app" / "newthing.py").write_text("x = 1\n")
    assert build() != before
