"""The cgroup file system: control files read and written, mounts and a process's cgroups found, stale cages swept.

Shared by the cage mechanisms (runner/cgroup.py) and the :class:`~runner.cage.Cage`
they make. Directories are named ``sandchat-<hostpid>-<name>-<n>``, so a sweep knows
whose they are. Every function here may raise OSError; its callers decide.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
from collections.abc import Sequence

__all__ = [
    "DEADLINE", "POLL", "ROOT", "base_name", "cgroups_of", "host_dir", "members", "mounts", "read_text", "remove_stale",
    "sigkill_members", "write_control",
]  # fmt: skip

ROOT = "/sys/fs/cgroup"
DEADLINE = 2.0  # a SIGKILLed task is gone in microseconds unless stuck in the kernel
POLL = 0.005
_STALE = re.compile(r"sandchat-(\d+)-")
_serial = itertools.count()  # next() on it is atomic under the GIL


def read_text(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def write_control(path: str, text: str) -> None:
    # Control files act on each write(2), so one unbuffered write.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def mounts() -> list[tuple[str, str, str, set[str]]]:
    """cgroup mounts: (mount point, cgroup path it shows, "cgroup"|"cgroup2", super options)."""
    found = []
    unescape = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)  # noqa: E731
    for line in read_text("/proc/self/mountinfo").splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            options = set(fields[fields.index("-") + 3].split(","))
            found.append((unescape(fields[4]), unescape(fields[3]), fstype, options))
    return found


def cgroups_of(pid: int | str = "self") -> dict[str, str]:
    """A process's cgroup path per v1 controller, and under "" its v2 path."""
    paths = {}
    for line in read_text(f"/proc/{pid}/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def host_dir(mount_point: str, mount_root: str, path: str) -> str | None:
    """Where cgroup ``path`` appears under a mount that shows ``mount_root``; None if it does not."""
    root = mount_root.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        return None  # outside this mount (another cgroup namespace)
    return os.path.join(mount_point, path[len(root) :].lstrip("/")).rstrip("/")


def base_name(name: str) -> str:
    # One name for all of a cage's directories (and its unit): a file and unit name that
    # can never be a kernel attribute, with the host pid for the stale sweep.
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:48] or "plugin"
    return f"sandchat-{os.getpid()}-{label}-{next(_serial)}"


def remove_stale(parent: str) -> None:
    """Remove empty sandchat-* cgroups under ``parent`` whose host process is dead."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for entry in names:
        match = _STALE.match(entry)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):  # its host is dead
            try:
                os.rmdir(os.path.join(parent, entry))  # the kernel refuses one with tasks or children
            except OSError:
                pass


def members(procs_files: Sequence[str]) -> set[int]:
    pids: set[int] = set()
    for path in procs_files:
        try:
            pids.update(int(p) for p in read_text(path).split())
        except (OSError, ValueError):
            pass
    return pids


def sigkill_members(procs_files: Sequence[str]) -> bool:
    """SIGKILL every member once; False when there was none.

    Each pid is pinned with a pidfd *before* membership is read again, so a pid that
    exited and was reused by a process outside the cage is never signalled.
    """
    pinned = {}
    for pid in members(procs_files):
        try:
            pinned[pid] = os.pidfd_open(pid)  # Linux 5.3; Landlock needs 5.13 anyway
        except OSError:
            pass  # already gone
    try:
        still = members(procs_files)
        for pid, fd in pinned.items():
            if pid in still:
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except OSError:
                    pass
        return bool(still)
    finally:
        for fd in pinned.values():
            os.close(fd)
