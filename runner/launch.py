"""Launching one plugin child: its scratch directory, cgroup, network broker and process.

What :func:`launch` makes it unmakes again when a later step fails (or a Ctrl-C comes),
so a start that fails leaves no process, cgroup or broker behind; once it returns, the
:class:`Launched` parts belong to the Connection that asked for them. Its failures are
start errors, said here: there is no connection yet to say them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from runner import process
from runner.cgroup import Cage
from runner.config import PluginConfig
from runner.egress import Egress, EgressPolicy
from runner.endpoints import Endpoint
from runner.errors import PluginStartError

__all__ = ["Emit", "Launched", "launch"]

#: Told about each network connection a plugin made or was refused: (event, details).
Emit = Callable[[str, dict[str, Any]], None]


class Launched(NamedTuple):
    """A plugin child just spawned, before any byte was exchanged with it."""

    proc: subprocess.Popen[bytes]
    cage: Cage | None
    cage_missing: str  # why there is no cage (for health); "" with one
    egress: Egress | None  # the network broker (network profile only), already serving


def launch(config: PluginConfig, root: Path, emit: Emit | None = None) -> Launched:
    """Spawn the child ``config`` describes, caged and brokered as it allows; PluginStartError if it cannot be."""
    try:
        config.scratch_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PluginStartError(config.name, f"cannot create its scratch directory {config.scratch_dir}: {exc.strerror}") from None
    limits = config.sandbox.limits
    caged = process.cage_for(config.name, limits.tasks, limits.memory)
    cage = caged if not isinstance(caged, str) else None
    egress = _broker(config, emit)
    try:
        fds = (egress.child_fd,) if egress else ()
        argv = config.child_argv(root, caged=cage is not None, egress_fd=fds[0] if fds else None)
        proc = process.spawn(argv, config.env, os.fspath(config.scratch_dir), cage, pass_fds=fds)
    except OSError as exc:
        if cage is not None:
            cage.close()
        if egress:
            egress.close()
        raise PluginStartError(config.name, f"could not be started: {exc}") from exc
    if egress:
        try:
            egress.close_child_end()  # the child has its own copy: EOF reaches the broker when it dies
            egress.start()
        except BaseException:  # a Ctrl-C between the spawn and a usable connection: nobody would own the process
            process.kill(proc, cage)
            egress.close()
            raise
    return Launched(proc, cage, caged if isinstance(caged, str) else "", egress)


def _broker(config: PluginConfig, emit: Emit | None) -> Egress | None:
    sandbox = config.sandbox
    if not sandbox.brokered:
        return None
    endpoints = tuple(e for e in sandbox.endpoints if isinstance(e, Endpoint))  # all of them: parsed at construction
    policy = EgressPolicy(endpoints, sandbox.proxies, sandbox.connect_timeout)
    return Egress(config.name, policy, emit)
