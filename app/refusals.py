"""Why sandchat will not start a plugin now: one exception class per reason, raised where it is decided.

Each is a ``runner.PluginUnavailable``, so ``except runner.PluginError`` catches it and its
``reason`` keeps the one-word spelling the runner's own refusals use (``quarantined``,
``busy``, ``stopped``, ``closed``). Callers tell the reasons apart with ``isinstance``::

    PluginUnavailable (runner)
    └── Refused              sandchat's own refusals
        ├── SafeMode         --no-plugins                                   reason "safe_mode"
        ├── Disabled         turned off by the user                         reason "disabled"
        │   ├── TurnedOff    SANDCHAT_DISABLE_PLUGINS or config.toml's ``disabled``
        │   └── SwitchedOff  ``sandchat plugins disable`` (disabled.json)
        ├── NotInstalled     no plugin file has that name                   reason "unknown"
        ├── Ambiguous        several plugin files have that name            reason "conflict"
        ├── BadSetting       a bad ``[plugins.NAME]`` value in config.toml  reason "config"
        └── ShuttingDown     the manager is closing                         reason "closed"

A grant that lapsed is no refusal: the plugin runs, untrusted (``app.access.Access.lapsed``).
This module imports the runner's errors: the commands that never start a plugin
(``plugins list``) import it only when they refuse.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import ClassVar

import runner

__all__ = [
    "Ambiguous", "BadSetting", "Disabled", "NotInstalled", "Refused", "SafeMode", "ShuttingDown", "SwitchedOff", "TurnedOff",
    "available",
]  # fmt: skip


def available(names: Iterable[str]) -> str:
    """``(available: a, b)``, or ``(available: none)``: what a misspelt plugin name is told."""
    return f"(available: {', '.join(names) or 'none'})"


class Refused(runner.PluginUnavailable):
    """Raised when sandchat itself will not start a plugin now; ``reason`` names which refusal."""

    REASON: ClassVar[str] = ""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(name, message, reason=self.REASON)


class SafeMode(Refused):
    """Raised for any plugin in safe mode (``--no-plugins``): none starts."""

    REASON = "safe_mode"

    def __init__(self, name: str) -> None:
        super().__init__(
            name,
            "is off: safe mode (--no-plugins) starts no plugin; run without --no-plugins, "
            "or turn off one plugin with SANDCHAT_DISABLE_PLUGINS=NAME",
        )


class Disabled(Refused):
    """Raised when the user turned the plugin off (see the two subclasses for where)."""

    REASON = "disabled"


class TurnedOff(Disabled):
    """Raised when ``SANDCHAT_DISABLE_PLUGINS`` or the settings file's ``disabled`` list names the plugin."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "is turned off by SANDCHAT_DISABLE_PLUGINS or the settings file's 'disabled' list")


class SwitchedOff(Disabled):
    """Raised when ``sandchat plugins disable NAME`` switched the plugin off."""

    def __init__(self, name: str) -> None:
        super().__init__(name, f"is disabled (enable it with: sandchat plugins enable {name})")


class NotInstalled(Refused):
    """Raised when no plugin file has that name; the message lists the names that do."""

    REASON = "unknown"

    def __init__(self, name: str, names: Iterable[str]) -> None:
        super().__init__(name, f"is not installed {available(names)}")


class Ambiguous(Refused):
    """Raised when several plugin files have that name, so none of them is used."""

    REASON = "conflict"

    def __init__(self, name: str, paths: Sequence[Path]) -> None:
        super().__init__(name, f"is ambiguous: {len(paths)} files share that name ({', '.join(map(str, paths))}); rename one")


class BadSetting(Refused):
    """Raised when the plugin's ``[plugins.NAME]`` table in the settings file holds a bad value."""

    REASON = "config"


class ShuttingDown(Refused):
    """Raised for every start asked of a manager that is closing, or closed."""

    REASON = "closed"

    def __init__(self, name: str) -> None:
        super().__init__(name, "cannot start: sandchat is shutting down")
