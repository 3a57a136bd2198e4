"""The per-invocation context a command runs in: settings, output, and a lazy PluginManager."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from app.render import Output
from app.settings import Settings

if TYPE_CHECKING:
    from app.manager import PluginManager

__all__ = ["Context"]


class Context:
    """Built once by ``cli.main``; the manager (and the runner) are imported only if used."""

    def __init__(
        self, settings: Settings, output: Output, plugin_dirs: list[str], *, timeout: float | None = None, agent_idle: float = 0.0
    ) -> None:
        self.settings = settings
        self.output = output
        self.plugin_dirs = plugin_dirs
        self.timeout = timeout  # the generation commands' --timeout: the manager caps every reply with it
        self.agent_idle = agent_idle  # seconds the agent lives idle (SANDCHAT_AGENT_IDLE); 0: prompt and tokens never use one
        self._manager: PluginManager | None = None

    @property
    def manager(self) -> PluginManager:
        if self._manager is None:
            from app.manager import PluginManager

            self._manager = PluginManager(self.plugin_dirs, settings=self.settings, timeout=self.timeout)
        return self._manager

    def plugin_name(self, requested: str | None) -> str:
        """The plugin this command uses: the one asked for, else the default, explained once."""
        if requested:
            return requested
        from app.choice import choose_default, explain_once

        name, why = choose_default(self.manager)
        if self.settings.no_plugins:
            return name  # it will not start (safe mode): nothing to explain, nothing to remember
        notice = explain_once(self.manager, name, why)
        if notice:
            self.output.notice(notice)
        return name

    @staticmethod
    def confirm(question: str) -> bool:
        """Ask a yes/no question on the terminal; no terminal means no (scripts must say --yes)."""
        if sys.stdin is None or not sys.stdin.isatty():
            return False  # never grant or install silently
        try:
            return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
        except EOFError:
            return False

    @staticmethod
    def unasked() -> str:
        """Why a refusal happened without a question, for its line: no terminal, so no one was asked."""
        return "" if sys.stdin is not None and sys.stdin.isatty() else " (no terminal to ask on: add --yes to confirm)"

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
