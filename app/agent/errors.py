"""Agent errors: the one exception root of ``app.agent``, and its kinds.

Every failure to reach or talk to an agent is an ``AgentError``, so a client can fall
back to running the plugin itself on any of them with one ``except``.
"""

from __future__ import annotations


class AgentError(Exception):
    """The agent cannot be used: absent, unsafe, broken, or speaking another protocol."""


class UnsafeDirectory(AgentError):
    """The socket's directory could be entered by someone other than the user."""


class WireError(AgentError):
    """A frame that is cut short, too large, or not a JSON object."""


class VersionMismatch(AgentError):
    """The peer is another sandchat version or agent protocol."""
