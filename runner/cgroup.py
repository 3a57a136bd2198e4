"""Cgroups for plugin processes: which mechanism gives a cage here, and opening one.

A cage (runner/cage.py) caps one plugin process's tasks and its memory, shared memory included.

RLIMIT_AS counts neither threads nor memfd/tmpfs/shm pages; a cgroup's pids controller
counts every task and its memory controller charges shmem to the cgroup that allocated
it. ``open_cage`` takes the first mechanism that works here:

``cgroup2``: a child of the host's v2 cgroup (pids.max, memory.max, memory.swap.max=0,
memory.oom.group=1; cgroup.kill). The "no internal processes" rule forbids enabling
pids+memory below a non-root cgroup holding processes; the host then moves *itself*
into a leaf ``sandchat-<pid>-host`` beside its cages (as systemd's CGROUP_DELEGATION.md
tells delegatees to), but only when clearly safe: the cgroup is delegated (systemd's
trusted./user.delegate xattr, or a cgroup namespace root) and holds the host alone.
``cgroup1``: a child of the host's cgroup in the v1 pids and memory hierarchies
(pids.max, memory.limit_in_bytes, memory.memsw.limit_in_bytes; SIGKILL until empty).
``systemd-scope``: ``systemd-run [--user] --scope -p TasksMax= -p MemoryMax= --`` before
the argv; the command is exec'd in a transient scope, so it stays our direct child.
Used only if systemd-run and the manager's private socket exist; nothing here talks to
systemd, so opening cannot hang.

Directories are named ``sandchat-<hostpid>-<name>-<n>``; opening a cage removes empty
ones whose host is dead (runner/cgroupfs.py). No OSError escapes: opening yields a
reason string.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Sequence

from runner.cage import Cage, CageError, CageLimits
from runner.cgroupfs import ROOT, base_name, cgroups_of, host_dir, mounts, read_text, remove_stale, write_control

__all__ = ["Cage", "CageError", "CageLimits", "open_cage", "systemd_scope_argv"]

_v2_lock = threading.Lock()  # one thread at a time may move the host and enable controllers


class _Unavailable(Exception):
    """This mechanism cannot give a cage here; the message says why."""


def _build(kind: str, name: str, limits: CageLimits, parents: dict[str, str], settings: Sequence[tuple[str, str, str, bool]]) -> Cage:
    """Make one directory per distinct parent ({controller: parent}) and write the settings.

    ``settings``: (controller, file, value, optional); an optional file may be absent.
    """
    base = base_name(name)
    made = {parent: os.path.join(parent, base) for parent in parents.values()}
    cage = Cage(kind, limits, list(made.values()), memory_dir=made[parents["memory"]], pids_dir=made[parents["pids"]])
    try:
        for parent, path in made.items():
            remove_stale(parent)
            os.mkdir(path)
        for controller, file, value, optional in settings:
            path = os.path.join(made[parents[controller]], file)
            if not optional or os.path.exists(path):
                write_control(path, value)
    except OSError:
        cage.close()  # removes what was made
        raise
    return cage


def _may_move_host(directory: str, pid: int, at_ns_root: bool) -> bool:
    """Moving ``pid`` out of v2 cgroup ``directory`` is clearly safe: it is delegated, and ``pid`` is all it holds."""
    try:
        if read_text(os.path.join(directory, "cgroup.procs")).split() != [str(pid)]:
            return False
    except OSError:
        return False
    for attr in ("trusted.delegate", "user.delegate"):  # the order systemd's cg_is_delegated reads
        try:
            if os.getxattr(directory, attr) == b"1":
                return True
        except OSError:
            pass
    # A cgroup namespace shows its root as "/"; only the real root has no cgroup.type.
    return at_ns_root and os.path.exists(os.path.join(directory, "cgroup.type"))


def _move_host_into_leaf(host: str, control: str) -> None:
    leaf = os.path.join(host, f"sandchat-{os.getpid()}-host")
    os.makedirs(leaf, exist_ok=True)
    write_control(os.path.join(leaf, "cgroup.procs"), "0")  # "0": the writer, all its threads
    try:
        write_control(control, "+pids +memory")
    except OSError:
        write_control(os.path.join(host, "cgroup.procs"), "0")  # it did not help: put the host back
        os.rmdir(leaf)
        raise


def _v2_parent() -> str:
    """The v2 cgroup whose children get pids+memory, moving the host into a leaf if that is safe."""
    path = cgroups_of().get("")
    dirs = [host_dir(m[0], m[1], path) for m in mounts() if m[2] == "cgroup2" and path is not None]
    host = next((d for d in dirs if d), None)
    if host is None:
        raise _Unavailable("cgroup v2: not mounted, or the host's cgroup is not visible")
    if os.path.basename(host) == f"sandchat-{os.getpid()}-host":
        host = os.path.dirname(host)  # an earlier cage moved the host there
    missing = {"pids", "memory"} - set(read_text(os.path.join(host, "cgroup.controllers")).split())
    if missing:
        raise _Unavailable(f"cgroup v2: no {' or '.join(sorted(missing))} controller in {host}")
    control = os.path.join(host, "cgroup.subtree_control")
    if {"pids", "memory"} <= set(read_text(control).split()):
        return host
    try:
        write_control(control, "+pids +memory")
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise _Unavailable(f"cgroup v2: cannot enable pids+memory in {host}: {exc.strerror}") from None
        if not _may_move_host(host, os.getpid(), path == "/"):
            raise _Unavailable(f"cgroup v2: {host} has other processes or is not delegated") from None
        _move_host_into_leaf(host, control)
    return host


def _cage_v2(name: str, limits: CageLimits) -> Cage:
    with _v2_lock:
        parent = _v2_parent()
    return _build(
        "cgroup2",
        name,
        limits,
        {"pids": parent, "memory": parent},
        [
            ("pids", "pids.max", str(limits.tasks), False),
            ("memory", "memory.max", str(limits.memory), False),
            ("memory", "memory.swap.max", "0", True),  # absent without swap accounting
            ("memory", "memory.oom.group", "1", True),  # an OOM kill takes the whole cage
        ],
    )


def _cage_v1(name: str, limits: CageLimits) -> Cage:
    own = cgroups_of()
    parents = {}
    for mount_point, root, fstype, options in mounts():
        for controller in ("pids", "memory"):
            if fstype == "cgroup" and controller in options and controller in own:
                parents[controller] = host_dir(mount_point, root, own[controller])
    missing = [c for c in ("pids", "memory") if not parents.get(c)]
    if missing:
        raise _Unavailable(f"cgroup v1: no {' or '.join(missing)} hierarchy")
    return _build(
        "cgroup1",
        name,
        limits,
        parents,  # type: ignore[arg-type]
        [
            ("pids", "pids.max", str(limits.tasks), False),
            ("memory", "memory.limit_in_bytes", str(limits.memory), False),
            # After the limit (memsw may not be below it); absent without swap accounting.
            ("memory", "memory.memsw.limit_in_bytes", str(limits.memory), True),
        ],
    )


def systemd_scope_argv(systemd_run: str, unit: str, limits: CageLimits, runtime_dir: str = "") -> list[str]:
    """The argv prefix that runs a command in transient scope ``unit``; the user manager if runtime_dir.

    --user finds its manager through $XDG_RUNTIME_DIR, which a plugin's clean environment
    lacks: ``env`` sets it for systemd-run and unsets it again for the command.
    """
    argv = [
        systemd_run,
        *(["--user"] if runtime_dir else []),
        "--scope",
        "--quiet",
        "--collect",
        "--no-ask-password",
        f"--unit={unit}",
        f"--property=TasksMax={limits.tasks}",
        f"--property=MemoryMax={limits.memory}",
        "--property=MemorySwapMax=0",
        "--",
    ]
    if not runtime_dir:
        return argv
    env = shutil.which("env") or "/usr/bin/env"
    return [env, f"XDG_RUNTIME_DIR={runtime_dir}", *argv, env, "-u", "XDG_RUNTIME_DIR"]


def _scope_manager() -> str:
    """$XDG_RUNTIME_DIR for a reachable user manager, "" for root's system manager; else _Unavailable."""
    if not any(m[0] == ROOT and m[2] == "cgroup2" for m in mounts()):
        raise _Unavailable("systemd: cgroups are not v2-only here, so a scope's limits would not hold")
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime_dir and os.path.exists(os.path.join(runtime_dir, "systemd", "private")):
        uid = os.getuid()  # systemd's layout; when the file is elsewhere, there is nothing to check
        delegated = f"{ROOT}/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers"
        if os.path.exists(delegated) and not {"pids", "memory"} <= set(read_text(delegated).split()):
            raise _Unavailable("systemd: the user manager is not delegated the pids and memory controllers")
        return runtime_dir
    if os.geteuid() == 0 and os.path.exists("/run/systemd/private"):
        return ""
    raise _Unavailable("systemd: no manager reachable ($XDG_RUNTIME_DIR/systemd/private is absent)")


def _cage_scope(name: str, limits: CageLimits) -> Cage:
    systemd_run = shutil.which("systemd-run")
    if not systemd_run:
        raise _Unavailable("systemd: systemd-run not found")
    runtime_dir = _scope_manager()
    unit = base_name(name) + ".scope"
    return Cage("systemd-scope", limits, prefix=systemd_scope_argv(systemd_run, unit, limits, runtime_dir), unit=unit)


def open_cage(name: str, limits: CageLimits) -> Cage | str:
    """A new, empty cage for one plugin process, or one line saying why none can be had."""
    reasons = []
    for label, attempt in (("cgroup v2", _cage_v2), ("cgroup v1", _cage_v1), ("systemd", _cage_scope)):
        try:
            return attempt(name, limits)
        except _Unavailable as exc:
            reasons.append(str(exc))
        except (OSError, ValueError, IndexError) as exc:  # unreadable /proc, a refused mkdir or write
            reasons.append(f"{label}: {exc}")
    return "no cgroup for plugins: " + "; ".join(reasons)
