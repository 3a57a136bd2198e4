"""sandchat's plugin runner: run one plugin file in a sandboxed subprocess, safely.

The runner knows nothing about the product. The app builds a :class:`PluginConfig`
and talks to the plugin through a :class:`Plugin` handle, an ``LLMClient`` whose calls
cross a msgpack pipe into a sandboxed child. Everything not listed here is private.

Names are imported from their modules on first use, so that ``runner.cleantext`` (which
the app's output needs for every command) costs only itself, not the process machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.calls import CancelToken, Stream
    from runner.cleantext import StreamCleaner, clean_text
    from runner.client import Plugin, PluginStats
    from runner.config import DEFAULT_MAX_REPLY, Deadlines, Limits, PluginConfig, SandboxPolicy
    from runner.constants import LOG_HOST, LOG_PREFIX, LOG_TIME_FORMAT, MAX_SOURCE, PROFILES, PROTOCOL_VERSION, STDOUT_TAG
    from runner.egress import EgressUse
    from runner.endpoints import Endpoint, EndpointError, Proxies, parse_endpoint, proxies_from
    from runner.errors import (
        PluginCancelled,
        PluginCrashed,
        PluginError,
        PluginLoadError,
        PluginProtocolError,
        PluginRaised,
        PluginResultError,
        PluginSandboxError,
        PluginStartError,
        PluginStartTimeout,
        PluginTimeout,
        PluginUnavailable,
        PluginVersionError,
    )
    from runner.methods import Readiness
    from runner.process import fork_session, harden_host, resident_bytes, spawn_companion, spawn_detached, stop_companion, stop_detached
    from runner.restarts import RestartPolicy
    from runner.states import STATES

_HOMES = {
    "calls": ("CancelToken", "Stream"),
    "client": ("Plugin", "PluginStats"),
    "cleantext": ("StreamCleaner", "clean_text"),
    "config": ("DEFAULT_MAX_REPLY", "Deadlines", "Limits", "PluginConfig", "SandboxPolicy"),
    "constants": ("LOG_HOST", "LOG_PREFIX", "LOG_TIME_FORMAT", "MAX_SOURCE", "PROFILES", "PROTOCOL_VERSION", "STDOUT_TAG"),
    "egress": ("EgressUse",),
    "endpoints": ("Endpoint", "EndpointError", "Proxies", "parse_endpoint", "proxies_from"),
    "errors": (
        "PluginCancelled", "PluginCrashed", "PluginError", "PluginLoadError", "PluginProtocolError", "PluginRaised",
        "PluginResultError", "PluginSandboxError", "PluginStartError", "PluginStartTimeout", "PluginTimeout",
        "PluginUnavailable", "PluginVersionError",
    ),
    "methods": ("Readiness",),
    "process": ("fork_session", "harden_host", "resident_bytes", "spawn_companion", "spawn_detached", "stop_companion", "stop_detached"),
    "restarts": ("RestartPolicy",),
    "states": ("STATES",),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "CancelToken",
    "DEFAULT_MAX_REPLY",
    "Deadlines",
    "EgressUse",
    "Endpoint",
    "EndpointError",
    "LOG_HOST",
    "LOG_PREFIX",
    "LOG_TIME_FORMAT",
    "Limits",
    "MAX_SOURCE",
    "PROFILES",
    "PROTOCOL_VERSION",
    "Plugin",
    "PluginCancelled",
    "PluginConfig",
    "PluginCrashed",
    "PluginError",
    "PluginLoadError",
    "PluginProtocolError",
    "PluginRaised",
    "PluginResultError",
    "PluginSandboxError",
    "PluginStartError",
    "PluginStartTimeout",
    "PluginStats",
    "PluginTimeout",
    "PluginUnavailable",
    "PluginVersionError",
    "Proxies",
    "Readiness",
    "RestartPolicy",
    "STATES",
    "STDOUT_TAG",
    "SandboxPolicy",
    "Stream",
    "StreamCleaner",
    "clean_text",
    "fork_session",
    "harden_host",
    "parse_endpoint",
    "proxies_from",
    "resident_bytes",
    "spawn_companion",
    "spawn_detached",
    "stop_companion",
    "stop_detached",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"runner.{module}"), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
