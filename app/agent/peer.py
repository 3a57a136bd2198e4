"""Agent peer check: the uid of the process at the other end of a unix socket (SO_PEERCRED).

The agent refuses every connection whose peer is not its own uid. The directory's mode
already keeps others out; this is the second wall, checked on every accept, because the
agent holds plugin processes that were given keys.
"""

from __future__ import annotations

import os
import socket
import struct

from app.agent.errors import AgentError

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ForeignPeer(AgentError):
    """A connection from another uid (or one whose credentials cannot be read)."""


def _credentials(sock: socket.socket) -> tuple[int, int, int]:
    """The connected peer's (pid, uid, gid), as the kernel recorded them at connect time."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError as error:
        raise ForeignPeer(f"cannot read the peer's credentials: {error.strerror}") from error
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


def peer_uid(sock: socket.socket) -> int:
    """The connected peer's uid."""
    return _credentials(sock)[1]


def peer_pid(sock: socket.socket) -> int:
    """The connected peer's pid (for a client: the process that listens)."""
    return _credentials(sock)[0]


def require_same_user(sock: socket.socket) -> None:
    """Raise ``ForeignPeer`` unless the peer runs as this process's uid."""
    uid = peer_uid(sock)
    if uid != os.getuid():
        raise ForeignPeer(f"the peer runs as uid {uid}, not as this user (uid {os.getuid()})")
