"""API keys: a JSON file in the config directory (``app.files.JsonFile``); an environment variable wins over it.

A key is only ever handed to a plugin that was granted the variable of the same name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from app.files import JsonFile

__all__ = ["KeyStore"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class KeyStore:
    """Reads and writes the keys file; never logs or prints a key's value."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = JsonFile(path, "keys")

    def load(self) -> dict[str, str]:
        data = self._file.read()
        if data is None:
            return {}  # nothing stored yet
        if not isinstance(data, dict):
            raise self._file.corrupt("not a table of keys")
        return {str(k): str(v) for k, v in data.items()}

    def set(self, name: str, value: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a valid variable name")
        if not value or "\n" in value:
            raise ValueError("a key must be one non-empty line")
        keys = self.load()
        keys[name] = value
        self._write(keys)

    def _write(self, keys: dict[str, str]) -> None:
        self._file.write(dict(sorted(keys.items())))

    def delete(self, name: str) -> bool:
        keys = self.load()
        if keys.pop(name, None) is None:
            return False
        self._write(keys)
        return True

    def resolve(self, names: tuple[str, ...], environ: Mapping[str, str]) -> dict[str, str]:
        """Values for ``names``: the environment first, then the keys file."""
        stored = self.load() if any(name not in environ for name in names) else {}
        found = {}
        for name in names:
            value = environ.get(name) or stored.get(name)
            if value:
                found[name] = value
        return found
