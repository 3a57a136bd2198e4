"""sandchat: a command-line chat whose LLM back-ends are sandboxed plugins.

The public Python API is :class:`PluginManager`; the command line is ``app.cli``.
``PluginManager`` is imported on first access (PEP 562) so that CLI commands which
never run a plugin do not pay for importing the runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.manager import PluginManager

__all__ = ["PluginManager"]


def __getattr__(name: str) -> Any:
    if name == "PluginManager":
        from app.manager import PluginManager

        return PluginManager
    raise AttributeError(f"module 'app' has no attribute {name!r}")
