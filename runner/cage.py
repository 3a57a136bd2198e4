"""Cage: one plugin process's control group(s), made by runner/cgroup.py's ``open_cage``.

It moves a process in (or wraps its argv so it enters before it runs), reads what the
cgroup charges (tasks, memory, OOM kills), and kills everything inside and removes the
directories on ``close``. No OSError escapes: ``add`` raises CageError, readers return
None, ``close`` is best effort.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from runner.cgroupfs import DEADLINE, POLL, ROOT, cgroups_of, read_text, sigkill_members, write_control

__all__ = ["Cage", "CageError", "CageLimits"]


class CageError(RuntimeError):
    """A process could not be moved into its cage (it must not run uncaged)."""


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
                write_control(os.path.join(d, "cgroup.procs"), str(pid))
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
            text = read_text(os.path.join(directory, name)) if directory else ""
        except OSError:
            return False
        return any(line.split()[1:] != ["0"] for line in text.splitlines() if line.startswith("oom_kill "))

    def kill(self) -> bool:
        """SIGKILL every task in the cage, waiting (bounded) until none is left; True if none is."""
        if self.kind == "systemd-scope" and not self._find_scope():
            return self._kill_unscoped()
        if self.kind == "cgroup2":  # atomic even against a forking task (not used on systemd's cgroups)
            try:
                write_control(os.path.join(self._dirs[0], "cgroup.kill"), "1")
            except OSError:
                pass  # kernel < 5.14: signal each member below
        procs = [os.path.join(d, "cgroup.procs") for d in self.paths]
        end = time.monotonic() + DEADLINE
        while sigkill_members(procs):
            if time.monotonic() > end:
                return False
            time.sleep(POLL)
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
            end = time.monotonic() + DEADLINE
            for d in self._dirs:
                while os.path.isdir(d):
                    try:
                        os.rmdir(d)
                    except OSError as exc:
                        # EBUSY: a killed task not yet off the cgroup; any other error is final.
                        if exc.errno != errno.EBUSY or time.monotonic() > end:
                            break
                        time.sleep(POLL)

    def _read_int(self, directory: str, name: str) -> int | None:
        try:
            return int(read_text(os.path.join(directory, name))) if directory else None
        except (OSError, ValueError):
            return None

    def _find_scope(self) -> str:
        """The memory cgroup; a scope's is read from /proc/PID/cgroup once the pid is in it."""
        if self.kind == "systemd-scope" and not self._memory_dir and self._pid is not None:
            try:
                path = cgroups_of(self._pid).get("", "")
            except (OSError, ValueError):
                path = ""
            if os.path.basename(path) == self._unit:
                self._memory_dir = self._pids_dir = ROOT + path
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
