"""The one place that spawns, signals, reaps and sweeps plugin processes.

Each plugin runs as the leader of its own session and process group, so one
``killpg`` reaches everything it started (the sandbox pins the group). ``sweep``
finds anything left in that session afterwards and kills it too.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any

from runner.cgroup import Cage, CageError, CageLimits, open_cage

__all__ = [
    "cage_for", "describe_exit", "fork_session", "harden_host", "kill", "resident_bytes", "session_members",
    "spawn", "spawn_companion", "spawn_detached", "stop", "stop_companion", "stop_detached", "sweep",
]  # fmt: skip

_POLL = 0.005


def harden_host() -> list[str]:
    """Make the host unreadable to same-user plugins and the reaper of their orphans.

    Returns the names of the protections applied; a missing one is not fatal.
    """
    from runner.sandbox import kernel  # ctypes is only paid for when a plugin is about to run

    applied = []
    for name, action in (("non-dumpable", lambda: kernel.set_dumpable(False)), ("subreaper", kernel.set_child_subreaper)):
        try:
            action()
            applied.append(name)
        except OSError:
            pass
    return applied


class _Spawner:
    """A long-lived thread that every plugin process is started from.

    The child asks for SIGKILL when its parent dies (PR_SET_PDEATHSIG), and Linux means
    the parent *thread*: a plugin started from a short-lived worker thread would be
    killed when that thread ends. Starting every child here ties its life to the host
    process instead, whichever thread asked for it.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="sandchat-spawner", daemon=True).start()

    def _run(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)

    def submit(self, job: Callable[[], Any]) -> Any:
        future: Future[Any] = Future()
        self._jobs.put((job, future))
        try:
            return future.result()
        except BaseException:
            # Interrupted (Ctrl-C) while the spawner works: the process it makes has no owner.
            future.add_done_callback(_kill_unclaimed)
            raise


def _kill_unclaimed(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None and isinstance(future.result(), subprocess.Popen):
        kill(future.result())


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def _on_spawner(job: Callable[[], Any]) -> Any:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner.submit(job)


def spawn(
    argv: list[str], env: Mapping[str, str], cwd: str, cage: Cage | None = None, pass_fds: tuple[int, ...] = ()
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with all three streams piped, a clean environment and its own session.

    ``pass_fds`` are inherited under their numbers (the network broker's channel); no other fd is.

    With a ``cage``, the process is moved into it before this returns; the child runs no
    plugin code until the host sends it, so nothing of the plugin's runs uncaged. A
    process that cannot be caged is killed and the failure raised as OSError.
    """
    argv = cage.wrap(argv) if cage is not None and cage.kind == "systemd-scope" else argv
    proc = _on_spawner(lambda: _popen(argv, env, cwd, pass_fds))
    if cage is not None:
        try:
            cage.add(proc.pid)
        except CageError as exc:
            kill(proc, cage)
            raise OSError(str(exc)) from None
    return proc


def spawn_detached(argv: list[str], env: Mapping[str, str], cwd: str, log_path: str | None = None) -> int:
    """Start ``argv`` in a session of its own that outlives the caller; return its pid, never wait.

    For a long-lived helper (the sandchat agent), not a plugin: no pipes to the caller (a
    caller whose output is a pipe must not keep its reader waiting for this process), no
    PDEATHSIG; standard input is /dev/null, standard output and error go to ``log_path``
    (appended, 0600) or /dev/null.
    """
    out = os.open(log_path or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=dict(env), cwd=cwd, close_fds=True, start_new_session=True
        )
    finally:
        os.close(out)
    return proc.pid


def spawn_companion(argv: list[str], env: Mapping[str, str], cwd: str, log_path: str) -> subprocess.Popen[bytes]:
    """Start a helper that lives only as long as its caller (the agent's forker), in a session of its own.

    Its standard input is a pipe from the caller, never written: its end (the caller closed
    it, exited or was killed) tells the helper to leave. Its output is appended to ``log_path``.
    Ended with :func:`stop_companion`.
    """
    out = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=out, stderr=out, env=dict(env), cwd=cwd, close_fds=True, start_new_session=True
        )
    finally:
        os.close(out)


def stop_companion(proc: subprocess.Popen[bytes], grace: float) -> int:
    """End a helper from :func:`spawn_companion`: close its standard input (the order to leave), then stop it."""
    if proc.stdin is not None:
        proc.stdin.close()
    return stop(proc, grace)


def fork_session() -> int:
    """Fork this (single-threaded) process; the child, told by 0, leads a session of its own.

    For the forker's workers: their own session, so stopping the forker (which sweeps its
    session) never cuts a command that is running.
    """
    pid = os.fork()
    if pid == 0:
        os.setsid()
    return pid


def stop_detached(pid: int, grace: float) -> str:
    """End a process started by ``spawn_detached`` (not our child): wait ``grace`` for it to exit
    on its own, then SIGTERM and wait ``grace``, then SIGKILL and wait ``grace``. Returns "exited", "terminated",
    "killed", or "alive" if even SIGKILL did not end it in time.

    Waits on a pidfd, so a pid reused after the exit is never signalled.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return "exited"
    try:
        for sig, outcome in ((None, "exited"), (signal.SIGTERM, "terminated"), (signal.SIGKILL, "killed")):
            if sig is not None:
                try:
                    signal.pidfd_send_signal(fd, sig)
                except ProcessLookupError:
                    return outcome
            if _pidfd_exited(fd, grace):
                return outcome
        return "alive"
    finally:
        os.close(fd)


def _pidfd_exited(fd: int, seconds: float) -> bool:
    import select

    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(seconds * 1000))


def _popen(argv: list[str], env: Mapping[str, str], cwd: str, pass_fds: tuple[int, ...]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        close_fds=True,
        pass_fds=pass_fds,
        start_new_session=True,
        bufsize=0,
    )


def _wait(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    # pgid == pid while the leader is unreaped, so the group cannot have been reused.
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    else:
        for pid in session_members(proc.pid):
            _signal(pid, sig)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill(proc: subprocess.Popen[bytes], cage: Cage | None = None) -> int:
    """SIGKILL the whole group (and cage) now, reap the leader, sweep; return the exit code."""
    _signal_group(proc, signal.SIGKILL)
    if cage is not None:
        cage.close()  # whatever is left in it, then the cgroup itself
    _wait(proc, 5.0)
    sweep(proc.pid)
    return proc.returncode if proc.returncode is not None else -signal.SIGKILL


def stop(proc: subprocess.Popen[bytes], grace: float, cage: Cage | None = None) -> int:
    """Wait ``grace`` for a polite exit, then SIGTERM the group, then SIGKILL it."""
    if not _wait(proc, grace):
        _signal_group(proc, signal.SIGTERM)
        if not _wait(proc, grace):
            return kill(proc, cage)
    _signal_group(proc, signal.SIGKILL)  # the leader left: its descendants go with it
    if cage is not None:
        cage.close()
    sweep(proc.pid)
    return proc.returncode


def session_members(sid: int) -> list[int]:
    """Pids of live (not yet reaped) processes whose session or group is ``sid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and (int(fields[2]) == sid or int(fields[3]) == sid):
            members.append(int(entry.name))
    return members


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].decode("ascii", "replace").split()


def sweep(sid: int, *, deadline: float = 2.0) -> list[int]:
    """Kill every process left in session ``sid`` and reap those that became our children."""
    killed = session_members(sid)
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    _reap(killed, deadline)
    return killed


def _reap(pids: Iterable[int], deadline: float) -> None:
    me = os.getpid()
    pending = {pid for pid in pids if (_stat_fields(pid) or ["", "0"])[1] == str(me)}
    end = time.monotonic() + deadline
    while pending and time.monotonic() < end:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                pending.discard(pid)
        if pending:
            time.sleep(_POLL)


def cage_for(name: str, tasks: int, memory: int) -> Cage | str:
    """A cgroup of its own for one plugin process, or the reason none can be had here."""
    return open_cage(name, CageLimits(tasks=tasks, memory=memory))


def describe_exit(exit_code: int | None, sig: int | None) -> str:
    """How a process ended, in words: 'crashed: killed by SIGSEGV', 'exited with status 3'."""
    if sig is not None:
        try:
            return f"crashed: killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"crashed: killed by signal {sig}"
    if exit_code is None:
        return "closed its output"
    return f"exited with status {exit_code}"


def resident_bytes(pid: int) -> int | None:
    """The process's resident set size, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
