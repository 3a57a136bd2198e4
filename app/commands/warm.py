"""Warm handles: the agent's ``RemotePlugin`` for ``prompt`` and ``tokens`` when it answers, else the direct handle.

The launch decision is the caller's, made now (``manager.handle`` decides it, refusals
included, before anything is sent), so the agent reuses a warm process only for exactly it.
With the agent off (``SANDCHAT_AGENT_IDLE=0``), absent, of another version or not answering
within 0.2 s, the command runs the plugin itself, as before; when it did start a plugin,
:func:`finish` starts the agent in the background with that decision, so the next command
finds the plugin warm.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import runner
from app.agent import decision, wire
from app.agent.client import AgentClient, RemotePlugin
from app.agent.errors import AgentError
from app.agent.paths import AgentPaths, choose, ensure_private
from app.context import Context
from app.version import build

if TYPE_CHECKING:
    from app.settings import Settings

__all__ = ["Handle", "agent_paths", "finish", "forget", "handle", "prober"]

Handle: TypeAlias = "runner.Plugin | RemotePlugin"  # a string: runner.Plugin would import the runner's process machinery
#: What the agent itself is given of the caller's environment (each plugin's is in its decision):
#: XDG_RUNTIME_DIR because the runner finds the user's systemd manager (a plugin's cgroup) through it;
#: the locale because the forker's workers run a command only for a client of the same locale.
_AGENT_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "XDG_RUNTIME_DIR")
APP_ROOT = Path(__file__).resolve().parent.parent.parent  # holds the app package: `python -m app` from here


def agent_paths(settings: Settings) -> AgentPaths:
    return choose(settings.environ.get("XDG_RUNTIME_DIR"), settings.paths.data_dir)


def handle(context: Context, name: str) -> Handle:
    """The handle this command uses for plugin ``name``: the agent's when it answers now."""
    manager = context.manager
    if not context.agent_idle:
        return manager.handle(name)
    config = manager.decide(name)  # refused now if the plugin may not start, as handle() would
    client = AgentClient(agent_paths(context.settings), build())
    return client.plugin(config, lambda: manager.handle(name), os.fspath(context.settings.paths.health_db)) or manager.handle(name)


def prober(context: Context) -> Callable[[runner.Plugin], dict[str, Any] | None] | None:
    """For ``plugins health``: a probe run by the agent, on the process it keeps warm, when one answers."""
    if not context.agent_idle:
        return None
    client = AgentClient(agent_paths(context.settings), build())
    events = os.fspath(context.settings.paths.health_db)
    return lambda direct: client.probe(direct.config, events)


def forget(context: Context, name: str | None) -> None:
    """Ask a running agent to close plugin ``name``'s warm process (every one when None); never fails.

    After a command that changes what a plugin may get (disable, revoke, a key): the agent
    would restart it at its next call anyway, but must not keep the old one running till then.
    """
    request: dict[str, Any] = {"op": "forget", "names": None if name is None else [name]}
    AgentClient(agent_paths(context.settings), build()).ask(request)  # any build's agent holds processes: see serve


def finish(context: Context, used: Handle | None) -> None:
    """After the command: if it started a plugin itself, start the agent with that decision (never fails)."""
    if not context.agent_idle or used is None or isinstance(used, RemotePlugin) or used.stats.starts == 0:
        return  # off, no plugin reached, an agent answered (a call it could not carry ran directly), or nothing started
    direct = used
    try:
        paths = ensure_private(agent_paths(context.settings))
        warm = _warm_file(paths, direct.config, os.fspath(context.settings.paths.health_db))
        argv = [sys.executable, "-m", "app", "agent", "serve", "--dir", os.fspath(paths.directory), "--idle", f"{context.agent_idle:g}"]
        env = {key: value for key, value in context.settings.environ.items() if key in _AGENT_ENV}
        runner.spawn_detached(argv + (["--warm", warm] if warm else []), env, os.fspath(APP_ROOT), os.fspath(paths.log))
    except (AgentError, OSError):
        pass  # the next command runs the plugin itself again: nothing is lost but time


def _warm_file(paths: AgentPaths, config: runner.PluginConfig, events: str) -> str | None:
    """The decision for the new agent to start, in a 0600 file of the private directory (it holds keys)."""
    request = {"op": "start", "name": config.name, "config": decision.to_plain(config), "events": events, "args": {}}
    try:
        body = wire.encode(request)[4:]
    except AgentError:
        return None  # too large for the agent's frames: it will run the plugin for no one
    import secrets  # only here, after the answer: hmac and OpenSSL cost a warm command's first byte

    path = paths.directory / f"warm-{secrets.token_hex(8)}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(body)
    return os.fspath(path)
