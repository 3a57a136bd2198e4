"""sandchat's plugin runner: run one plugin file in a sandboxed subprocess, safely.

The runner knows nothing about the product. The app builds a :class:`PluginConfig`
and talks to the plugin through a :class:`Plugin` handle, an ``LLMClient`` whose calls
cross a msgpack pipe into a sandboxed child. Everything not listed here is private.
"""

from runner.client import Plugin, PluginStats
from runner.config import DEFAULT_MAX_REPLY, PROFILES, Deadlines, Limits, PluginConfig, SandboxPolicy
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
from runner.process import harden_host, resident_bytes
from runner.protocol import MAX_SOURCE, PROTOCOL_VERSION
from runner.stderr import clean_text
from runner.supervisor import STATES, RestartPolicy

__all__ = [
    "DEFAULT_MAX_REPLY",
    "Deadlines",
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
    "RestartPolicy",
    "STATES",
    "SandboxPolicy",
    "clean_text",
    "harden_host",
    "resident_bytes",
]
