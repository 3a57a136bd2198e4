"""Cages: a control group per plugin process, capping its tasks and its memory, shared memory included.

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
ones whose host is dead. No OSError escapes: opening yields a reason string, ``add``
raises CageError, readers return None, ``close`` is best effort.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import shlex
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Cage", "CageError", "CageLimits", "open_cage", "systemd_scope_argv"]

_ROOT = "/sys/fs/cgroup"
_DEADLINE = 2.0  # a SIGKILLed task is gone in microseconds unless stuck in the kernel
_POLL = 0.005
_STALE = re.compile(r"sandchat-(\d+)-")
_serial = itertools.count()  # next() on it is atomic under the GIL
_v2_lock = threading.Lock()  # one thread at a time may move the host and enable controllers


class CageError(RuntimeError):
    """A process could not be moved into its cage (it must not run uncaged)."""


class _Unavailable(Exception):
    """This mechanism cannot give a cage here; the message says why."""


@dataclass(frozen=True)
class CageLimits:
    """What one cage may hold: tasks (processes and threads) and bytes of memory."""

    tasks: int
    memory: int  # bytes; page cache and shmem (memfd, tmpfs, SysV shm) count

    def __post_init__(self) -> None:
        for key in ("tasks", "memory"):
            value = getattr(self, key)
            if type(value) is not int or value <= 0:
                raise ValueError(f"CageLimits.{key} must be a positive int, got {value!r}")


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def _write(path: str, text: str) -> None:
    # Control files act on each write(2), so one unbuffered write.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """cgroup mounts: (mount point, cgroup path it shows, "cgroup"|"cgroup2", super options)."""
    found = []
    unescape = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)  # noqa: E731
    for line in _read("/proc/self/mountinfo").splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            options = set(fields[fields.index("-") + 3].split(","))
            found.append((unescape(fields[4]), unescape(fields[3]), fstype, options))
    return found


def _cgroups(pid: int | str = "self") -> dict[str, str]:
    """A process's cgroup path per v1 controller, and under "" its v2 path."""
    paths = {}
    for line in _read(f"/proc/{pid}/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _host_dir(mount_point: str, mount_root: str, path: str) -> str | None:
    """Where cgroup ``path`` appears under a mount that shows ``mount_root``; None if it does not."""
    root = mount_root.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        return None  # outside this mount (another cgroup namespace)
    return os.path.join(mount_point, path[len(root) :].lstrip("/")).rstrip("/")


def _base_name(name: str) -> str:
    # One name for all of a cage's directories (and its unit): a file and unit name that
    # can never be a kernel attribute, with the host pid for the stale sweep.
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:48] or "plugin"
    return f"sandchat-{os.getpid()}-{label}-{next(_serial)}"


def _remove_stale(parent: str) -> None:
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


def _members(procs_files: Sequence[str]) -> set[int]:
    pids: set[int] = set()
    for path in procs_files:
        try:
            pids.update(int(p) for p in _read(path).split())
        except (OSError, ValueError):
            pass
    return pids


def _sigkill_members(procs_files: Sequence[str]) -> bool:
    """SIGKILL every member once; False when there was none.

    Each pid is pinned with a pidfd *before* membership is read again, so a pid that
    exited and was reused by a process outside the cage is never signalled.
    """
    pinned = {}
    for pid in _members(procs_files):
        try:
            pinned[pid] = os.pidfd_open(pid)  # Linux 5.3; Landlock needs 5.13 anyway
        except OSError:
            pass  # already gone
    try:
        still = _members(procs_files)
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


class Cage:
    """One plugin process's control group(s). Made by :func:`open_cage`; ``close`` it."""

    def __init__(
        self,
        kind: str,
        limits: CageLimits,
        dirs: Sequence[str] = (),
        *,
        memory_dir: str = "",
        pids_dir: str = "",
        prefix: Sequence[str] = (),
        unit: str = "",
    ) -> None:
        self.kind = kind  # "cgroup2" | "cgroup1" | "systemd-scope"
        self.limits = limits
        self._dirs = tuple(dirs)  # ours to remove; a scope's cgroup is systemd's
        self._memory_dir, self._pids_dir = memory_dir, pids_dir
        self._prefix, self._unit = tuple(prefix), unit
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"<Cage {self.kind} {self.paths or self._unit} tasks={self.limits.tasks} memory={self.limits.memory}>"

    @property
    def paths(self) -> tuple[str, ...]:
        """The cgroup directories; a systemd scope's is known once its process is in it."""
        self._find_scope()
        return tuple(dict.fromkeys(d for d in (*self._dirs, self._memory_dir) if d))

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """The argv to spawn in place of ``argv``: it enters the cage, then execs ``argv``.

        For cgroups, /bin/sh writes its own pid into each cgroup.procs and then execs, so
        not one instruction of ``argv`` runs uncaged (``add`` after spawning leaves a
        window); if a write fails, sh exits 1 or 2 and ``argv`` never runs.
        """
        if self.kind == "systemd-scope":
            return [*self._prefix, *argv]
        enter = " && ".join(f"echo $$ > {shlex.quote(d + '/cgroup.procs')}" for d in self._dirs)
        return ["/bin/sh", "-c", f'{enter} && exec "$@"', "sandchat-cage", *argv]

    def add(self, pid: int) -> None:
        """Move a running process (all its threads) in; CageError if that fails.

        For a systemd scope it only records the pid: systemd-run moves itself, then execs.
        """
        self._pid = pid
        if self.kind == "systemd-scope":
            return
        for d in self._dirs:
            try:
                _write(os.path.join(d, "cgroup.procs"), str(pid))
            except OSError as exc:
                raise CageError(f"cannot move pid {pid} into {d}: {exc.strerror}") from None

    def memory_bytes(self) -> int | None:
        """Memory charged to the cage (anonymous, page cache, shmem/memfd), or None."""
        name = "memory.usage_in_bytes" if self.kind == "cgroup1" else "memory.current"
        return self._read_int(self._find_scope(), name)

    def tasks(self) -> int | None:
        """Tasks counted against the limit: threads, and zombies not yet reaped."""
        self._find_scope()
        return self._read_int(self._pids_dir, "pids.current")

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer has killed a task in the cage."""
        name = "memory.oom_control" if self.kind == "cgroup1" else "memory.events"
        directory = self._find_scope()
        try:
            text = _read(os.path.join(directory, name)) if directory else ""
        except OSError:
            return False
        return any(line.split()[1:] != ["0"] for line in text.splitlines() if line.startswith("oom_kill "))

    def kill(self) -> bool:
        """SIGKILL every task in the cage, waiting (bounded) until none is left; True if none is."""
        if self.kind == "systemd-scope" and not self._find_scope():
            return self._kill_unscoped()
        if self.kind == "cgroup2":  # atomic even against a forking task (not used on systemd's cgroups)
            try:
                _write(os.path.join(self._dirs[0], "cgroup.kill"), "1")
            except OSError:
                pass  # kernel < 5.14: signal each member below
        procs = [os.path.join(d, "cgroup.procs") for d in self.paths]
        end = time.monotonic() + _DEADLINE
        while _sigkill_members(procs):
            if time.monotonic() > end:
                return False
            time.sleep(_POLL)
        return True

    def close(self) -> None:
        """Kill everything inside, then remove the cgroup directories. Idempotent; any thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.kill()
            except Exception:
                pass  # a cage that broke must not break the caller's stop
            end = time.monotonic() + _DEADLINE
            for d in self._dirs:
                while os.path.isdir(d):
                    try:
                        os.rmdir(d)
                    except OSError as exc:
                        # EBUSY: a killed task not yet off the cgroup; any other error is final.
                        if exc.errno != errno.EBUSY or time.monotonic() > end:
                            break
                        time.sleep(_POLL)

    def _read_int(self, directory: str, name: str) -> int | None:
        try:
            return int(_read(os.path.join(directory, name))) if directory else None
        except (OSError, ValueError):
            return None

    def _find_scope(self) -> str:
        """The memory cgroup; a scope's is read from /proc/PID/cgroup once the pid is in it."""
        if self.kind == "systemd-scope" and not self._memory_dir and self._pid is not None:
            try:
                path = _cgroups(self._pid).get("", "")
            except (OSError, ValueError):
                path = ""
            if os.path.basename(path) == self._unit:
                self._memory_dir = self._pids_dir = _ROOT + path
        return self._memory_dir

    def _kill_unscoped(self) -> bool:
        # Not in its scope yet, so systemd-run has not exec'd the command: the pid is all
        # there is. Signal it only while it is our unreaped child, never a reused pid.
        try:
            with open(f"/proc/{self._pid}/stat", "rb") as f:
                if int(f.read().rsplit(b")", 1)[1].split()[1]) == os.getpid():
                    os.kill(self._pid, signal.SIGKILL)  # type: ignore[arg-type]
        except (OSError, ValueError, IndexError):
            pass
        return True


def _build(kind: str, name: str, limits: CageLimits, parents: dict[str, str], settings: Sequence[tuple[str, str, str, bool]]) -> Cage:
    """Make one directory per distinct parent ({controller: parent}) and write the settings.

    ``settings``: (controller, file, value, optional); an optional file may be absent.
    """
    base = _base_name(name)
    made = {parent: os.path.join(parent, base) for parent in parents.values()}
    cage = Cage(kind, limits, list(made.values()), memory_dir=made[parents["memory"]], pids_dir=made[parents["pids"]])
    try:
        for parent, path in made.items():
            _remove_stale(parent)
            os.mkdir(path)
        for controller, file, value, optional in settings:
            path = os.path.join(made[parents[controller]], file)
            if not optional or os.path.exists(path):
                _write(path, value)
    except OSError:
        cage.close()  # removes what was made
        raise
    return cage


def _may_move_host(directory: str, pid: int, at_ns_root: bool) -> bool:
    """Moving ``pid`` out of v2 cgroup ``directory`` is clearly safe: it is delegated, and ``pid`` is all it holds."""
    try:
        if _read(os.path.join(directory, "cgroup.procs")).split() != [str(pid)]:
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
    _write(os.path.join(leaf, "cgroup.procs"), "0")  # "0": the writer, all its threads
    try:
        _write(control, "+pids +memory")
    except OSError:
        _write(os.path.join(host, "cgroup.procs"), "0")  # it did not help: put the host back
        os.rmdir(leaf)
        raise


def _v2_parent() -> str:
    """The v2 cgroup whose children get pids+memory, moving the host into a leaf if that is safe."""
    path = _cgroups().get("")
    dirs = [_host_dir(m[0], m[1], path) for m in _mounts() if m[2] == "cgroup2" and path is not None]
    host = next((d for d in dirs if d), None)
    if host is None:
        raise _Unavailable("cgroup v2: not mounted, or the host's cgroup is not visible")
    if os.path.basename(host) == f"sandchat-{os.getpid()}-host":
        host = os.path.dirname(host)  # an earlier cage moved the host there
    missing = {"pids", "memory"} - set(_read(os.path.join(host, "cgroup.controllers")).split())
    if missing:
        raise _Unavailable(f"cgroup v2: no {' or '.join(sorted(missing))} controller in {host}")
    control = os.path.join(host, "cgroup.subtree_control")
    if {"pids", "memory"} <= set(_read(control).split()):
        return host
    try:
        _write(control, "+pids +memory")
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
    own = _cgroups()
    parents = {}
    for mount_point, root, fstype, options in _mounts():
        for controller in ("pids", "memory"):
            if fstype == "cgroup" and controller in options and controller in own:
                parents[controller] = _host_dir(mount_point, root, own[controller])
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
    if not any(m[0] == _ROOT and m[2] == "cgroup2" for m in _mounts()):
        raise _Unavailable("systemd: cgroups are not v2-only here, so a scope's limits would not hold")
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime_dir and os.path.exists(os.path.join(runtime_dir, "systemd", "private")):
        uid = os.getuid()  # systemd's layout; when the file is elsewhere, there is nothing to check
        delegated = f"{_ROOT}/user.slice/user-{uid}.slice/user@{uid}.service/cgroup.controllers"
        if os.path.exists(delegated) and not {"pids", "memory"} <= set(_read(delegated).split()):
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
    unit = _base_name(name) + ".scope"
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
