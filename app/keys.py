"""API keys: a 0600 JSON file in the config directory; an environment variable wins over it.

A key is only ever handed to a plugin that was granted the variable of the same name.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from app.config import SettingsError

__all__ = ["KeyStore"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class KeyStore:
    """Reads and writes the keys file; never logs or prints a key's value."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return {}  # nothing stored yet (a path that cannot exist is reported when written)
        except ValueError as exc:
            raise SettingsError(f"{self.path}: unreadable keys file ({exc}); fix or delete it") from None
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def set(self, name: str, value: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a valid variable name")
        if not value or "\n" in value:
            raise ValueError("a key must be one non-empty line")
        keys = self.load()
        keys[name] = value
        self._write(keys)

    def _write(self, keys: dict[str, str]) -> None:
        """Replace the file atomically; it is created 0600 and stays so."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(keys, f, indent=2, sort_keys=True)
        os.chmod(tmp, 0o600)  # O_CREAT's mode is ignored when the file already existed
        os.replace(tmp, self.path)

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
