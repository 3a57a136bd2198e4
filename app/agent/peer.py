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


#: What confines a process beyond its uid, as /proc/PID/status shows it.
_STATUS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters")
_NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def confinement(pid: int | str) -> dict[str, str]:
    """Process ``pid``'s namespaces, credentials, capabilities, no_new_privs and seccomp mode (``OSError`` if unreadable)."""
    found: dict[str, str] = {}
    for kind in _NAMESPACES:
        try:
            found[f"{kind} namespace"] = os.readlink(f"/proc/{pid}/ns/{kind}")
        except FileNotFoundError:
            continue  # a kernel without that kind: absent for both sides
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in _STATUS:
                found[key] = " ".join(value.split())
    return found


def confinement_difference(pid: int) -> str | None:
    """How the peer ``pid`` is confined otherwise than this process (an ``unshare -n``, dropped capabilities...), or None.

    The same uid is not the same reach: a client in a network namespace of its own, without
    capabilities or under seccomp must not have a command run, or a plugin called, from here.
    """
    if pid <= 0:
        return "the peer's process is not visible from here (another pid namespace)"
    try:
        theirs, ours = confinement(pid), confinement("self")
    except OSError as error:
        return f"cannot read the peer's process state: {error.strerror}"
    differ = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
    return f"the peer is confined otherwise than this process ({', '.join(differ)})" if differ else None


def require_same_user(sock: socket.socket) -> None:
    """Raise ``ForeignPeer`` unless the peer runs as this process's uid (what a client asks of the agent)."""
    _require_uid(peer_uid(sock))


def _require_uid(uid: int) -> None:
    if uid != os.getuid():
        raise ForeignPeer(f"the peer runs as uid {uid}, not as this user (uid {os.getuid()})")


def require_same_reach(sock: socket.socket) -> None:
    """Raise ``ForeignPeer`` unless the peer runs as this uid and is confined no more than this process.

    What the agent and the forker ask of a client: they act for it (call a plugin, run its
    command), so a client with less reach than theirs runs its command itself, in its own confinement.
    """
    pid, uid, _gid = _credentials(sock)
    _require_uid(uid)
    difference = confinement_difference(pid)
    if difference:
        raise ForeignPeer(difference)
