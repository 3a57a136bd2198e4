"""A bounded soak: many concurrent calls on several plugins while a chaos thread SIGKILLs them.

Every call must end, within its deadline, either with the right answer or with a named
``runner.PluginError``; no call may be lost or hang; each kill may cost at most the one
call it hit; and after ``close()`` no plugin process is left. Some calls are cancelled
from other threads, each through its own token or stream: a cancel ends its own call
only, and costs no process. Meanwhile a second manager on the same home is opened,
used from several threads and closed under them, over and over: nothing it started
outlives its ``close()``.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app import PluginManager
from runner import CancelToken, Deadlines, PluginCancelled, PluginCrashed, PluginError, PluginStartError, PluginUnavailable, RestartPolicy
from tests.helpers import TEST_PLUGINS, cmdline_of
from tests.helpers import live_plugin_processes as plugin_processes

DEADLINES = Deadlines(start=20, first_chunk=2, idle=2, total=4, count_tokens=2, ping=2, cancel_grace=1, stop_grace=1)
#: Never quarantine: chaos is not the plugin's fault, and every call should get its chance.
POLICY = RestartPolicy(backoff_initial=0.01, backoff_max=0.05, max_failures=10_000, window=30, cooldown=0.5, stable_after=0.2)
PLUGINS = ("echo", "sup_jitter", "sup_trickle")
KINDS = ("generate", "stream", "stream_break", "count_tokens", "generate_cancel", "stream_cancel")
CANCELLABLE = ("generate_cancel", "stream_cancel")
MESSAGES = ("hello", "two words", "a slightly longer message of seven words", "ünïcödé ✓ text")
CALLS = 360
WORKERS = 12
KILLS = 12
MARGIN = 2.0  # on top of a call's own deadline: lock queueing behind other calls, restarts, CI slack
GLOBAL_TIMEOUT = 90.0


@dataclass
class Outcome:
    plugin: str
    kind: str
    message: str
    elapsed: float
    result: Any = None
    error: BaseException | None = None


def answer(plugin: str, message: str) -> str:
    return {"echo": "echo: ", "sup_jitter": "jitter: ", "sup_trickle": "trickle: "}[plugin] + message


def deadline_of(kind: str) -> float:
    return DEADLINES.count_tokens if kind == "count_tokens" else DEADLINES.total


def one_call(manager: PluginManager, plugin: str, kind: str, message: str, cancels: Cancels) -> Outcome:
    began = time.monotonic()
    outcome = Outcome(plugin, kind, message, 0.0)
    try:
        client = manager.handle(plugin)
        if kind == "generate":
            outcome.result = client.generate_response("", message)
        elif kind == "generate_cancel":
            token = CancelToken()
            cancels.aim(token.cancel)
            outcome.result = client.generate_response("", message, cancel=token)
        elif kind == "stream_cancel":
            stream = client.stream_response("", message)
            parts = []
            for chunk in stream:
                if not parts:
                    cancels.aim(stream.cancel)  # cancelled from another thread, mid-stream
                parts.append(chunk)
            outcome.result = "".join(parts)
        elif kind == "stream":
            outcome.result = "".join(client.stream_response("", message))
        elif kind == "stream_break":
            for chunk in client.stream_response("", message):
                outcome.result = chunk
                break  # the abandoned stream is cancelled under the lock
        else:
            outcome.result = client.count_tokens(message)
    except BaseException as exc:  # noqa: BLE001 - judged by the test thread
        outcome.error = exc
    outcome.elapsed = time.monotonic() - began
    return outcome


class Cancels:
    """A thread that fires the cancels aimed at it, each after a random short delay."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []

    def aim(self, cancel: Any) -> None:
        with self._lock:
            timer = threading.Timer(self._rng.uniform(0, 0.03), cancel)
            self._timers.append(timer)
        timer.start()

    def join(self) -> int:
        with self._lock:
            timers = list(self._timers)
        for timer in timers:
            timer.join(5)
        return len(timers)


def churn(home: Path, rng: random.Random, done: threading.Event, problems: list[str], rounds: list[int]) -> None:
    """Open a second manager on the same home, use it from three threads, close it under them; repeat."""
    while not done.is_set():
        manager = PluginManager([TEST_PLUGINS], home, deadlines=DEADLINES, restart_policy=POLICY)

        def use(manager: PluginManager = manager) -> None:  # this round's manager, even if the thread outlives the round
            try:
                for _ in range(4):
                    manager.handle(rng.choice(PLUGINS)).count_tokens("churn")
            except PluginUnavailable as exc:
                if exc.reason not in ("closed", "stopped"):
                    problems.append(repr(exc))
            except PluginError:
                pass  # the chaos thread may kill these processes too
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                problems.append(repr(exc))

        users = [threading.Thread(target=use, daemon=True) for _ in range(3)]
        for user in users:
            user.start()
        done.wait(rng.uniform(0, 0.2))  # where the close lands among the users' calls
        manager.close()
        for user in users:
            user.join(10)
        pids = [client.pid for client in manager.handles().values() if client.pid]
        if pids or any(user.is_alive() for user in users):
            problems.append(f"after close(): pids {pids}, users alive {[u.is_alive() for u in users]}")
        rounds.append(1)


def kill_plugin_process(pid: int, marker: str) -> bool:
    """SIGKILL ``pid`` only if it is still one of this test's plugin processes (pidfd: no pid reuse race)."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return False
    try:
        cmdline = cmdline_of(pid)
        if cmdline is None or "runner/child/entry.py" not in cmdline or marker not in cmdline:
            return False
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def chaos(manager: PluginManager, marker: str, rng: random.Random, done: threading.Event, kills: list[tuple[str, int]]) -> None:
    while len(kills) < KILLS and not done.is_set():
        if done.wait(rng.uniform(0.05, 0.35)):
            return
        running = [(name, client.pid) for name, client in manager.handles().items() if client.pid]
        if not running:
            continue
        name, pid = rng.choice(running)
        if kill_plugin_process(pid, marker):  # type: ignore[arg-type]
            kills.append((name, pid))  # type: ignore[arg-type]


@pytest.mark.timeout(150)
def test_concurrent_calls_under_random_kills(home: Path) -> None:
    seed = int(os.environ.get("SOAK_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    marker = str(home)
    manager = PluginManager([TEST_PLUGINS], home, deadlines=DEADLINES, restart_policy=POLICY)
    pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="soak")  # alive until after close()
    done = threading.Event()
    kills: list[tuple[str, int]] = []
    cancels = Cancels(random.Random(rng.random()))
    churn_problems: list[str] = []
    churn_rounds: list[int] = []
    churner = threading.Thread(target=churn, args=(home, random.Random(rng.random()), done, churn_problems, churn_rounds), daemon=True)
    try:
        # Calm first: every plugin answers, and echo's token counts are learned.
        tokens = {}
        for plugin in PLUGINS:
            client = manager.handle(plugin)
            for message in MESSAGES:
                assert client.generate_response("", message) == answer(plugin, message)
                tokens[plugin, message] = client.count_tokens(message)
        for message in MESSAGES:
            assert tokens["sup_jitter", message] == len(message.split())
            assert tokens["sup_trickle", message] == len(message)

        plan = [(rng.choice(PLUGINS), rng.choice(KINDS), rng.choice(MESSAGES)) for _ in range(CALLS)]
        chaos_thread = threading.Thread(target=chaos, args=(manager, marker, rng, done, kills), daemon=True)
        began = time.monotonic()
        futures: list[Future[Outcome]] = [pool.submit(one_call, manager, *call, cancels) for call in plan]
        chaos_thread.start()
        churner.start()
        liveness: list[dict[str, bool]] = []
        while not all(f.done() for f in futures) and time.monotonic() - began < GLOBAL_TIMEOUT:
            liveness.append(manager.check_idle())  # pings race the calls and the kills too
            wait(futures, timeout=0.05)
        finished, unfinished = wait(futures, timeout=max(0.0, GLOBAL_TIMEOUT - (time.monotonic() - began)))
        done.set()
        chaos_thread.join(5)
        churner.join(30)
        aimed = cancels.join()
        assert not unfinished, f"{len(unfinished)} of {CALLS} calls never ended (seed {seed})"
        outcomes = [f.result() for f in futures]  # one_call never raises: nothing is lost
        assert len(outcomes) == CALLS

        wrong, slow, unnamed, errors, cancelled = [], [], [], [], []
        for o in outcomes:
            if o.elapsed >= deadline_of(o.kind) + MARGIN:
                slow.append(o)
            if o.kind in CANCELLABLE and isinstance(o.error, PluginCancelled):
                cancelled.append(o)
                continue
            if o.error is not None:
                (errors if isinstance(o.error, PluginError) else unnamed).append(o)
                continue
            if o.kind == "count_tokens":
                ok = o.result == tokens[o.plugin, o.message]
            elif o.kind == "stream_break":
                ok = isinstance(o.result, str) and o.result != "" and answer(o.plugin, o.message).startswith(o.result)
            elif o.kind in CANCELLABLE:  # the cancel came too late to stop it: a whole, right answer
                ok = o.result == answer(o.plugin, o.message)
            else:
                ok = o.result == answer(o.plugin, o.message)
            if not ok:
                wrong.append(o)
        context = f"(seed {seed}, {len(kills)} kills)"
        assert not unnamed, f"errors outside the runner's tree {context}: {[repr(o.error) for o in unnamed[:5]]}"
        assert not wrong, f"wrong answers {context}: {[(o.plugin, o.kind, o.message, o.result) for o in wrong[:5]]}"
        assert not slow, (
            f"calls past their deadline {context}: {[(o.plugin, o.kind, round(o.elapsed, 2), repr(o.error)) for o in slow[:5]]}"
        )
        # A kill ends the call it hit (or the start it hit): nothing else may fail. A cancel
        # ends only a call that was aimed at (a PluginCancelled anywhere else is in errors).
        kinds = {type(o.error).__name__ for o in errors}
        assert all(isinstance(o.error, (PluginCrashed, PluginStartError)) for o in errors), (
            f"{kinds} {context}: {[str(o.error) for o in errors[:5]]}"
        )
        assert len(errors) <= len(kills), f"{len(errors)} failed calls for {len(kills)} kills {context}: {[str(o.error) for o in errors]}"
        assert len(outcomes) - len(errors) >= 0.9 * CALLS
        assert len(kills) >= KILLS // 2, f"the chaos thread only killed {len(kills)} processes {context}"
        assert all(isinstance(ok, bool) for report in liveness for ok in report.values())
        crashed = sum(manager.events.counts(p).get("crashed", 0) for p in PLUGINS)
        assert crashed <= len(kills)
        # Each kill costs at most one restart; a cancel, honoured by these plugins, costs none,
        # unless it lands while its call is starting the process: that start is then abandoned.
        starts = sum(client.stats.starts for client in manager.handles().values())
        during_start = sum(str(o.error).endswith("was cancelled while starting") for o in cancelled)
        assert starts <= len(PLUGINS) + len(kills) + during_start, (
            f"{starts} starts for {len(kills)} kills and {len(cancelled)} cancels {context}"
        )
        assert aimed > 0
        assert cancelled, f"no cancel landed {context}"
        assert not churn_problems, f"the closing manager {context}: {churn_problems[:3]}"
        assert len(churn_rounds) >= 3
        assert all(manager.events.counts(p).get("quarantined", 0) == 0 for p in PLUGINS)

        # Calm again: every plugin still answers.
        for plugin in PLUGINS:
            assert manager.handle(plugin).generate_response("", "after") == answer(plugin, "after")
    finally:
        done.set()
        manager.close()
        assert plugin_processes(marker) == [], "plugin processes left after close()"
        pool.shutdown(wait=True, cancel_futures=True)
    assert plugin_processes(marker) == []
