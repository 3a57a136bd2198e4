"""Plugin work that Ctrl-C can cancel without the interrupt landing inside it.

Python raises KeyboardInterrupt wherever the main thread happens to be. Inside the
runner's start of a plugin (a thread start, a cgroup write, a wait for the spawner)
it leaves a process, a cgroup or a half-built Connection behind, and can close an fd
twice: the second close then takes the number from whoever reused it (the next
prompt's event loop, which dies of EBADF and ends the chat). Inside ``threading``'s
own waits (``Event.wait``, ``Thread.start``) it can leave a Condition's lock released
and surface as "RuntimeError: release unlocked lock" instead. So the chat's commands
run their plugin work on a thread of its own, started without waiting, while the main
thread waits on a bare lock: the interrupt lands in that wait or in this module's loop,
and the work is ended the way the runner supports from any thread (a stop), or left to
finish with nobody waiting for it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["interruptible", "launch", "prepare"]

T = TypeVar("T")

#: How often the waiting thread wakes without news. The kernel may hand SIGINT to any
#: thread; Python then only flags it, and a thread asleep in a lock wait sees the flag
#: when it wakes: this bounds how late a Ctrl-C can be.
_SIGNAL_LATENCY = 0.05

_jobs: queue.SimpleQueue[tuple[Callable[[], object], str]] | None = None
_jobs_lock = threading.Lock()


def prepare() -> None:
    """Start the launcher thread now, outside any command, so no command waits for that start."""
    global _jobs
    with _jobs_lock:
        if _jobs is None:
            _jobs = queue.SimpleQueue()
            threading.Thread(target=_launch_forever, args=(_jobs,), name="launcher", daemon=True).start()


def launch(target: Callable[[], object], name: str) -> None:
    """Run ``target`` on a new thread; the caller does not wait for it to begin (Thread.start would)."""
    prepare()
    assert _jobs is not None
    _jobs.put((target, name))  # a C call: no interrupt lands half way through it


def _launch_forever(jobs: queue.SimpleQueue[tuple[Callable[[], object], str]]) -> None:
    while True:
        target, name = jobs.get()
        threading.Thread(target=target, name=name, daemon=True).start()


def interruptible(work: Callable[[], T], on_cancel: Callable[[], object] | None = None, *, name: str = "command") -> T:
    """``work()``, run on a thread of its own; its result, or its exception, is raised here.

    Ctrl-C (KeyboardInterrupt) returns at once: ``on_cancel`` is called on yet another
    thread (so a second Ctrl-C cannot cut it short either) and the interrupt is re-raised.
    ``work`` then runs on to its end unobserved, so it must not write to the terminal:
    it returns what to show, and the caller shows it.
    """
    outcome: list[tuple[bool, Any]] = []
    finished = threading.Lock()  # held until the work ends: a bare lock, whose wait an interrupt leaves clean
    finished.acquire()

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # raised again in the waiting thread, which reports it
            outcome.append((False, exc))
        finally:
            finished.release()

    try:
        launch(run, name)
        while not finished.acquire(timeout=_SIGNAL_LATENCY):
            pass
    except KeyboardInterrupt:
        if on_cancel is not None:
            launch(on_cancel, f"cancel-{name}")
        raise
    ok, value = outcome[0]
    if not ok:
        raise value
    return value
