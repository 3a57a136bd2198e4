"""Plugin states: the lifecycle enum a plugin handle is in, and the one vocabulary it is shown in.

:class:`LifeStage` is where a :class:`~runner.client.Plugin` handle is in its life, the
single source of its state (as httpx's ``ClientState`` is of a client's); only
``runner/lifecycle.py`` moves it. :func:`state_of` words it in :data:`STATES`, the
vocabulary the CLI, health reports and the selector all use, adding what the stage
alone does not say: whether a call is running, and what the restart gate says now
(quarantined until its cool-down ends; restarting while failures are counted).
"""

from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.restarts import RestartGate

__all__ = ["STATES", "LifeStage", "state_of"]

#: One vocabulary for a plugin's state, in the CLI, health reports and the selector.
STATES = ("stopped", "starting", "ready", "busy", "restarting", "quarantined", "failed", "disabled")


class LifeStage(enum.Enum):
    """Where one plugin handle is in its life. CLOSED is final: nothing leaves it."""

    IDLE = "idle"  # no process: never started, stopped, or ended by a failure
    STARTING = "starting"  # a process is being spawned and handshaken
    RUNNING = "running"  # a live process takes calls (its connection is usable)
    BROKEN = "broken"  # its code failed to load: no start until the code changes
    CLOSED = "closed"  # closed for good: no start, no call


def state_of(stage: LifeStage, busy: bool, gate: RestartGate) -> str:
    """The word of :data:`STATES` for a handle at ``stage`` (all but ``disabled``, which is the app's)."""
    if stage is LifeStage.CLOSED:
        return "stopped"
    if gate.is_quarantined(time.monotonic()):
        return "quarantined"
    if stage is LifeStage.RUNNING:
        return "busy" if busy else "ready"
    if stage is LifeStage.STARTING:
        return "starting"
    if stage is LifeStage.BROKEN:
        return "failed"
    return "restarting" if gate.failures else "stopped"
