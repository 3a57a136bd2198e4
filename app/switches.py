"""Which plugins the user switched off: ``plugins disable NAME`` / ``plugins enable NAME``.

Kept as JSON in the config directory. The settings file's ``disabled`` list and
``SANDCHAT_DISABLE_PLUGINS`` (safe mode) add to it; only this file is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["SwitchStore"]


class SwitchStore:
    """The set of plugin names disabled by the user."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def disabled(self) -> set[str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return set()
        names = data.get("disabled", []) if isinstance(data, dict) else []
        return {str(name) for name in names}

    def set_enabled(self, name: str, enabled: bool) -> bool:
        """Switch ``name`` on or off; return False when it already was."""
        names = self.disabled()
        before = name not in names
        if before == enabled:
            return False
        names.discard(name) if enabled else names.add(name)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"disabled": sorted(names)}, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)
        return True
