"""Which plugins the user switched off: ``plugins disable NAME`` / ``plugins enable NAME``.

Kept in the config directory as a :class:`~app.files.JsonFile`. The settings file's
``disabled`` list and ``SANDCHAT_DISABLE_PLUGINS`` add to it; only this file is written.
"""

from __future__ import annotations

from pathlib import Path

from app.files import JsonFile

__all__ = ["SwitchStore"]


class SwitchStore:
    """The set of plugin names disabled by the user."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = JsonFile(path, "disabled-plugins")

    def disabled(self) -> set[str]:
        data = self._file.read()
        if data is None:
            return set()  # nothing switched off yet
        names = data.get("disabled", []) if isinstance(data, dict) else None
        if not isinstance(names, list):
            raise self._file.corrupt("no list of disabled plugins")
        return {str(name) for name in names}

    def set_enabled(self, name: str, enabled: bool) -> bool:
        """Switch ``name`` on or off; return False when it already was."""
        names = self.disabled()
        before = name not in names
        if before == enabled:
            return False
        names.discard(name) if enabled else names.add(name)
        self._file.write({"disabled": sorted(names)})
        return True
