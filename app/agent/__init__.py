"""The sandchat agent: a per-user process that keeps plugin processes warm between commands.

``paths`` (where the socket lives, and the checks that only the user can reach it), ``wire``
(the length-prefixed, bounded JSON frames and the hello both sides exchange first), ``peer``
(the SO_PEERCRED uid check on each accept), ``decision`` (the digest of a launch decision
that decides reuse, and the decision as JSON data), ``errordata`` (runner errors as data),
``slots`` (one warm plugin per name), ``server`` (``sandchat agent serve``), ``client``
(``AgentClient``, ``RemotePlugin``) and ``errors`` (the package's one exception root).
Imported only by the commands that use the agent (``prompt``, ``tokens``, ``agent``).
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing: see app/__init__.py

if TYPE_CHECKING:
    from typing import Any

    from app.agent.client import AgentClient, RemotePlugin
    from app.agent.errors import AgentError
    from app.agent.paths import AgentPaths

__all__ = ["AgentClient", "AgentError", "AgentPaths", "RemotePlugin"]

_HOMES = {"AgentClient": "client", "RemotePlugin": "client", "AgentError": "errors", "AgentPaths": "paths"}


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'app.agent' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"app.agent.{module}"), name)
