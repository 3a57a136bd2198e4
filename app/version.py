"""sandchat's version and build: the installed package's version, and a cheap identity of the code running.

``version()`` is looked up only when shown (``--version``, ``agent status``): importlib.metadata
costs ~40 ms. ``build()`` is what the agent's hello compares, at every command that could use
the agent: the version stays the same across an edit or a ``git pull`` of an editable install,
while an agent left running would still serve the old code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["build", "version"]

_ROOT = Path(__file__).resolve().parent.parent  # the folder holding app/, runner/ and llm_utils.py
_SOURCES = ("app", "runner", "llm_utils.py")  # the code a command and the agent both run (plugins are hashed per launch)


def version() -> str:
    """The installed package's version; the source tree's pyproject.toml when not installed."""
    from importlib import metadata

    try:
        return metadata.version("sandchat")
    except metadata.PackageNotFoundError:
        import tomllib

        try:
            return str(tomllib.loads((_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def build() -> str:
    """A digest of the path, size and modification time of every Python file sandchat runs from (~0.5 ms).

    Two processes with the same digest run the same code; any edit, upgrade or reinstall changes it.
    """
    import hashlib  # here: --help and plugins list import this module, and need no digest

    root = os.fspath(_ROOT)
    entries = [sys.executable, sys.version]  # another interpreter runs other code, msgpack included
    for name in _SOURCES:
        top = os.path.join(root, name)
        if os.path.isdir(top):
            _walk(top, name, entries)
        else:
            entries.append(_entry(top, name))
    return hashlib.sha256("\n".join(entries).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _walk(folder: str, relative: str, entries: list[str]) -> None:
    """Append every ``.py`` file under ``folder`` (sorted, depth first, no ``__pycache__``)."""
    try:
        children = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        entries.append(f"{relative} missing")
        return
    files = [c for c in children if c.name.endswith(".py") and not c.is_dir()]
    entries.extend(_entry(c.path, f"{relative}/{c.name}") for c in files)
    for child in children:
        if child.name != "__pycache__" and child.is_dir():
            _walk(child.path, f"{relative}/{child.name}", entries)


def _entry(path: str, relative: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return f"{relative} missing"
    return f"{relative} {stat.st_size} {stat.st_mtime_ns}"
