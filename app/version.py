"""sandchat's version: the installed package's, else the source tree's pyproject.toml.

Looked up only when needed (``--version``, the agent's hello): importlib.metadata costs ~40 ms.
"""

from __future__ import annotations

__all__ = ["version"]


def version() -> str:
    """The installed package's version; the source tree's pyproject.toml when not installed."""
    from importlib import metadata

    try:
        return metadata.version("sandchat")
    except metadata.PackageNotFoundError:
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"
