"""Which plugin answers when the user names none: the configured one, Claude, local, echo.

The choice is explained once: a notice is printed when it differs from the last one
explained (remembered in the data directory), not on every run.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.manager import PluginManager

__all__ = ["choose_default", "explain_once"]


def choose_default(manager: PluginManager) -> tuple[str, str]:
    """Return ``(name, why)`` for the plugin to use when none was named."""
    settings = manager.settings
    names = {name for name in manager.names() if not manager.is_disabled(name)}  # config, env and `plugins disable`
    if settings.default_plugin:
        return settings.default_plugin, "it is your configured default"
    if "claude" in names and manager.keys.resolve(("ANTHROPIC_API_KEY",), settings.environ):
        return "claude", "an Anthropic API key is set"
    if "local" in names and importlib.util.find_spec("llama_cpp") is not None:
        return "local", "the local model is installed and no API key is set"
    if "echo" in names:
        local = "is disabled" if "local" in manager.names() and manager.is_disabled("local") else "is not installed"
        return "echo", f"no API key is set and the local model {local}"
    if names:
        first = sorted(names)[0]
        return first, "it is the first plugin found"
    return "echo", "no plugins were found"


def explain_once(manager: PluginManager, name: str, why: str) -> str | None:
    """The notice to print for this choice, or None when it was already explained."""
    marker = manager.paths.data_dir / "default-plugin"
    try:
        if marker.read_text(encoding="utf-8").strip() == name:
            return None
    except OSError:
        pass
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(name + "\n", encoding="utf-8")
    except OSError:
        pass
    return f"using plugin {name!r} because {why} (choose another with -p NAME)"
