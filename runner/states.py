"""Plugin states: the one vocabulary a plugin's state is shown in, everywhere.

The CLI, health reports and the selector all use the words of :data:`STATES`.
"""

from __future__ import annotations

__all__ = ["STATES"]

#: One vocabulary for a plugin's state, in the CLI, health reports and the selector.
STATES = ("stopped", "starting", "ready", "busy", "restarting", "quarantined", "failed", "disabled")
