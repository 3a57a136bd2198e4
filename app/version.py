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
    """A digest of the path, size and modification time of every Python file sandchat runs from (~1 ms).

    Two processes with the same digest run the same code; any edit, upgrade or reinstall changes it.
    """
    import hashlib  # here: --help and plugins list import this module, and need no digest

    entries = [sys.executable, sys.version]  # another interpreter runs other code, msgpack included
    for name in _SOURCES:
        top = _ROOT / name
        if top.is_file():
            entries.append(_entry(top))
            continue
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            entries.extend(_entry(Path(folder, f)) for f in sorted(files) if f.endswith(".py"))
    return hashlib.sha256("\n".join(entries).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _entry(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return f"{path} missing"
    return f"{path.relative_to(_ROOT)} {stat.st_size} {stat.st_mtime_ns}"
