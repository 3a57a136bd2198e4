"""An independent attack on the concurrency contract ("Many threads, one manager").

Each test states the clause it attacks. Some widen a real race window by monkeypatching
an internal (a sleep or a hold at a point the scheduler, the garbage collector or a signal
can reach anyway); none waits for state with a sleep.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import runner
from app import PluginManager
from app.health import probe_all
from runner import CancelToken, Deadlines, PluginCancelled, PluginError, PluginTimeout, PluginUnavailable, RestartPolicy
from runner import connection as connection_mod
from runner import process as process_mod
from runner import turn as turn_mod
from tests.helpers import FAST, MARGIN, TEST_PLUGINS, DirectPlugins, Worker, join_through_ctrl_c, plugin_processes, wait_until

POLICY = RestartPolicy(backoff_initial=0.01, backoff_max=0.05, max_failures=1000, window=30, cooldown=0.5, stable_after=0.2)


def _manager(home: Path, deadlines: Deadlines = FAST, policy: RestartPolicy = POLICY) -> PluginManager:
    return PluginManager([TEST_PLUGINS], home, deadlines=deadlines, restart_policy=policy)


def _handles(home: Path, deadlines: Deadlines = FAST, policy: RestartPolicy = POLICY) -> DirectPlugins:
    """As ``_manager``, without the manager: for the clauses of a plugin handle's own contract."""
    return DirectPlugins(home, deadlines=deadlines, policy=policy)


@pytest.fixture
def handles(home: Path) -> Iterator[DirectPlugins]:
    with _handles(home) as made:
        yield made


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------------------------------
# close() racing a start: the killed-before-handshake connection writes into a reused fd
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_close_during_spawn_never_writes_into_a_reused_fd(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Contract: fds are closed only when nobody can use them (no reused fd number is read
    or written); a start racing close() kills its own process and fails "closed".

    Window widened: the spawn is held until close() has run, and the handshake of the
    connection the start just killed is held until this thread has opened a few files
    (what any other thread of the app may do at that moment: sqlite, another plugin).
    """
    spawned, closed, killed, reused = (threading.Event() for _ in range(4))
    real_spawn, real_handshake = process_mod.spawn, connection_mod.Connection.handshake

    def spawn(*args: Any, **kwargs: Any) -> Any:
        proc = real_spawn(*args, **kwargs)
        spawned.set()
        closed.wait(10)
        return proc

    def handshake(self: Any, code: bytes) -> Any:
        if self.dead:
            killed.set()
            reused.wait(10)
        return real_handshake(self, code)

    monkeypatch.setattr(process_mod, "spawn", spawn)
    monkeypatch.setattr(connection_mod.Connection, "handshake", handshake)
    manager = _manager(home)
    client = manager.handle("sup_timing")
    worker = Worker(lambda: client.generate_response("", "hello"))
    worker.start()
    assert spawned.wait(20)
    manager.close()
    closed.set()
    assert killed.wait(10), "the start did not kill its own process"
    files = []
    for i in range(8):  # the lowest free fd numbers: those the killed connection just closed
        path = tmp_path / f"victim{i}"
        files.append((path, os.open(path, os.O_RDWR | os.O_CREAT, 0o600)))
    reused.set()
    worker.join(20)
    try:
        written = {str(p.name): p.stat().st_size for p, _ in files if p.stat().st_size}
    finally:
        for _, fd in files:
            os.close(fd)
    assert not written, (
        f"the killed connection wrote the plugin's code into files it does not own: {written}; the call got {worker.error!r}"
    )
    assert isinstance(worker.error, PluginUnavailable), repr(worker.error)
    assert worker.error.reason == "closed", f"reason {worker.error.reason!r}: {worker.error}"


# ---------------------------------------------------------------------------------------
# cancels and starts
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_an_already_cancelled_call_starts_no_process(handles: DirectPlugins) -> None:
    """Contract: a call made with a cancelled token never reaches the plugin (ends at once)."""
    client = handles.handle("race_slow_boot")
    token = CancelToken()
    token.cancel()
    began = time.monotonic()
    with pytest.raises(PluginCancelled):
        client.generate_response("", "x", cancel=token)
    elapsed = time.monotonic() - began
    assert client.stats.starts == 0 and not client.running, f"started the plugin's code for a cancelled call (starts={client.stats.starts})"
    assert elapsed < 0.5, f"a call with a cancelled token took {elapsed:.2f}s"


@pytest.mark.timeout(60)
def test_a_stream_cancelled_before_its_first_next_starts_no_process(handles: DirectPlugins) -> None:
    client = handles.handle("race_slow_boot")
    stream = client.stream_response("", "x")
    stream.cancel()
    began = time.monotonic()
    with pytest.raises(PluginCancelled):
        next(stream)
    assert time.monotonic() - began < 0.5 and client.stats.starts == 0


@pytest.mark.timeout(60)
def test_a_call_cancelled_while_its_process_starts_ends_within_cancel_grace(home: Path) -> None:
    """Contract: a cancelled call ends with PluginCancelled within cancel_grace, or its process is killed."""
    deadlines = Deadlines(start=20, first_chunk=3, idle=3, total=30, count_tokens=3, ping=3, cancel_grace=0.5, stop_grace=1)
    with _handles(home, deadlines) as handles:
        client = handles.handle("race_slow_boot")  # 4 s to import
        token = CancelToken()
        worker = Worker(lambda: client.generate_response("", "x", cancel=token))
        worker.start()
        wait_until(lambda: client.state == "starting", 10, "the start")
        cancelled_at = time.monotonic()
        token.cancel()
        worker.join(30)
        took = worker.ended_at - cancelled_at  # type: ignore[operator]
        assert isinstance(worker.error, PluginCancelled), repr(worker.error)
        assert took < deadlines.cancel_grace + MARGIN, (
            f"the cancelled call ended {took:.2f}s after its cancel (grace 0.5s); process still running: {client.running}"
        )


# ---------------------------------------------------------------------------------------
# a stream abandoned and finalized by the garbage collector on another thread
# ---------------------------------------------------------------------------------------


def _abandon_in_a_cycle(client: runner.Plugin, cancel: CancelToken | None = None) -> None:
    """Start a stream, read one chunk, and drop it inside a reference cycle (only gc frees it)."""
    stream = client.stream_response("", "x", cancel=cancel)
    assert next(stream) == "0 "
    cycle: list[Any] = [stream]
    cycle.append(cycle)


@pytest.mark.timeout(60)
def test_an_abandoned_stream_collected_on_another_thread_frees_the_turn(handles: DirectPlugins) -> None:
    """Held attack (control): gc on a third thread finalizes the stream and a queued call gets in."""
    client = handles.handle("slow_stream")
    gc.disable()
    try:
        _abandon_in_a_cycle(client)
        assert client._turn.held
        queued = Worker(lambda: client.count_tokens("abc"))
        queued.start()
        wait_until(lambda: client._turn._waiting == 1, 10, "the call to queue")
        collector = Worker(gc.collect)
        collector.start()
        collector.join(10)
        queued.join(10)
    finally:
        gc.enable()
    assert queued.error is None and queued.result == 3, repr(queued.error)


@pytest.mark.timeout(60)
def test_gc_finalizing_an_abandoned_stream_inside_token_cancel_does_not_deadlock(handles: DirectPlugins) -> None:
    """Contract: token.cancel() from any thread; a shared token ends every call made with it.

    The abandoned stream (made with the shared token) is finalized by gc on the thread in
    token.cancel(), which holds the token's lock; the stream's finally unwatches the token
    under that same lock. Widened: the collection is forced in Event.set(), which cancel()
    calls under its lock (it allocates, so gc can run there).
    """
    client = handles.handle("slow_stream")
    token = CancelToken()

    class CollectingEvent(threading.Event):
        def set(self) -> None:
            gc.collect()
            super().set()

    gc.disable()
    try:
        _abandon_in_a_cycle(client, token)
        token._event = CollectingEvent()
        canceller = Worker(token.cancel)
        canceller.start()
        canceller.join(FAST.cancel_grace + MARGIN + 2)
    finally:
        gc.enable()
    hung = canceller.is_alive()
    if hung:
        token._lock.release()  # let the stuck thread through so teardown can close the plugin
        canceller.join(10)
    assert not hung, "token.cancel() deadlocked: gc ran the abandoned stream's finally, which takes the token lock cancel() holds"
    assert canceller.error is None, repr(canceller.error)


@pytest.mark.timeout(60)
def test_gc_finalizing_an_abandoned_stream_inside_a_waiters_turn_wait_does_not_deadlock(
    handles: DirectPlugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contract (turn.py): a stream's generator "can be closed by the garbage collector anywhere".

    Here gc runs on the thread queued for the turn, while it holds the Turn's condition
    lock (turn.py take(): any allocation there can trigger a collection). Widened: the
    collection is forced at the time.monotonic() read inside that locked region.
    """
    client = handles.handle("slow_stream")
    armed = threading.Event()

    class Clock:
        @staticmethod
        def monotonic() -> float:
            if armed.is_set() and client._turn._cond._is_owned():
                armed.clear()
                gc.collect()
            return time.monotonic()

    gc.disable()
    try:
        _abandon_in_a_cycle(client)
        monkeypatch.setattr(turn_mod, "time", Clock)
        armed.set()
        queued = Worker(lambda: client.count_tokens("abc"))
        queued.start()
        queued.join(FAST.count_tokens + MARGIN + 2)
    finally:
        gc.enable()
    hung = queued.is_alive()
    if hung:  # unstick it (it sits inside gc.collect(), which stops every later collection in the process)
        client._turn._cond._lock.release()
        queued.join(10)
    assert not hung, (
        "the queued call deadlocked: gc finalized the stream on its thread, and Turn.give() waits on the condition lock that thread holds"
    )
    assert queued.error is None and queued.result == 3, repr(queued.error)


# ---------------------------------------------------------------------------------------
# Ctrl-C in the middle of a call
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_ctrl_c_as_a_queued_call_gets_the_turn_does_not_leak_the_turn(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Contract: every failure frees the turn; calls on this plugin from other threads go on.

    A SIGINT (Ctrl-C) lands just as the main thread's queued call leaves the queue with
    the turn (in take()'s finally, where it unwatches its token). Widened: the signal is
    raised from inside CancelToken._unwatch, a Python call where the handler may run.
    """
    deadlines = Deadlines(start=20, first_chunk=3, idle=3, total=2, count_tokens=2, ping=2, cancel_grace=1, stop_grace=1)
    with _handles(home, deadlines) as handles:
        client = handles.handle("sup_timing")
        client.start()
        holder = Worker(lambda: client.generate_response("", "first:0.5"))
        holder.start()
        wait_until(lambda: client.state == "busy", 10, "the holder to run")
        real_unwatch = CancelToken._unwatch

        def unwatch(self: CancelToken, key: int) -> None:
            real_unwatch(self, key)
            if client._turn._owner is threading.current_thread():
                monkeypatch.setattr(CancelToken, "_unwatch", real_unwatch)
                signal.raise_signal(signal.SIGINT)

        monkeypatch.setattr(CancelToken, "_unwatch", unwatch)
        with pytest.raises(KeyboardInterrupt):
            client.generate_response("", "queued", cancel=CancelToken())
        holder.join(10)
        other = Worker(lambda: client.generate_response("", "other"))
        other.start()
        other.join(10)
        leaked = client._turn._owner is threading.current_thread()
        if leaked:
            client._turn.give()
        assert not leaked, f"Ctrl-C left the turn held by the interrupted thread; another thread's call got: {other.error}"
        assert other.error is None and other.result == "timing: other"


@pytest.mark.timeout(120)
def test_random_ctrl_c_storm_on_queued_calls_never_leaks_the_turn(home: Path) -> None:
    """No widening: SIGINT at random moments while the main thread makes queued calls."""
    deadlines = Deadlines(start=20, first_chunk=3, idle=3, total=3, count_tokens=3, ping=3, cancel_grace=1, stop_grace=1)
    me = threading.current_thread()
    with _handles(home, deadlines) as handles:
        client = handles.handle("echo")
        client.start()
        stop = threading.Event()
        leaks = interrupts = 0

        def busy() -> None:  # keeps the turn taken often, so the main thread's calls queue
            while not stop.is_set():
                try:
                    client.count_tokens("background words")
                except PluginError:
                    pass

        def ctrl_c() -> None:
            rng = random.Random(7)
            while not stop.wait(rng.uniform(0.0005, 0.004)):
                signal.pthread_kill(me.ident, signal.SIGINT)  # type: ignore[arg-type]

        threads = [threading.Thread(target=busy, daemon=True) for _ in range(2)] + [threading.Thread(target=ctrl_c, daemon=True)]
        for t in threads:
            t.start()
        end = time.monotonic() + 8
        try:
            while time.monotonic() < end:
                try:
                    client.generate_response("", "main", cancel=CancelToken())
                except KeyboardInterrupt:
                    interrupts += 1
                except PluginError:
                    pass
                try:
                    if client._turn._owner is me and client._streaming is None:
                        leaks += 1
                        while client._turn._owner is me:
                            client._turn.give()
                except KeyboardInterrupt:
                    interrupts += 1
        finally:
            stop.set()
            join_through_ctrl_c(threads)
        assert interrupts > 50
        assert leaks == 0, f"{leaks} of {interrupts} Ctrl-Cs left the turn held by the main thread after its call ended"


# ---------------------------------------------------------------------------------------
# Stream.close() / next() from other threads
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_stream_close_from_another_thread_raises_only_plugin_errors(handles: DirectPlugins) -> None:
    """Contract: nothing but a PluginError escapes; a stream is ended from any thread.

    (Stream.close's docstring says "from the reading thread"; the brief asks what happens
    otherwise: a ValueError "generator already executing" is not a PluginError.)
    """
    client = handles.handle("slow_stream")
    stream = client.stream_response("", "x")
    first = threading.Event()
    got: list[str] = []

    def read() -> None:
        for chunk in stream:
            got.append(chunk)
            first.set()

    reader = Worker(read)
    reader.start()
    assert first.wait(10)
    error: BaseException | None = None
    try:
        stream.close()
    except BaseException as exc:  # noqa: BLE001
        error = exc
    if error is not None:
        stream.cancel()
    reader.join(10)
    assert error is None or isinstance(error, PluginError), f"Stream.close() from another thread raised {error!r}"
    assert reader.error is None or isinstance(reader.error, PluginError), repr(reader.error)


@pytest.mark.timeout(60)
def test_stream_cancel_from_many_threads_before_during_after(handles: DirectPlugins) -> None:
    """Held attack: cancel() from 16 threads at once mid-stream, after exhaustion, before next()."""
    client = handles.handle("slow_stream")
    for _ in range(5):
        stream = client.stream_response("", "x")
        assert next(stream) == "0 "
        go = threading.Barrier(16)
        cancellers = [Worker(lambda go=go, stream=stream: (go.wait(), stream.cancel())) for _ in range(16)]
        for c in cancellers:
            c.start()
        with pytest.raises(PluginCancelled) as info:
            for _ in stream:
                pass
        for c in cancellers:
            c.join(10)
            assert c.error is None
        assert info.value.chars >= 2
        assert client.generate_response("", "y") == "slow"
    echo = handles.handle("echo")
    done = echo.stream_response("", "a b c")
    assert "".join(done) == "echo: a b c"
    done.cancel()  # after exhaustion: nothing
    assert echo.generate_response("", "d") == "echo: d"


# ---------------------------------------------------------------------------------------
# cancels racing the end of one call and the start of the next
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_cancel_racing_call_end_never_hits_the_next_call(handles: DirectPlugins) -> None:
    """Contract: a cancel of a finished call does nothing to any other call."""
    client = handles.handle("echo")
    other = handles.handle("sup_jitter")
    shared = [CancelToken()]
    stop = threading.Event()
    wrong: list[str] = []
    hits = [0]
    starved: list[str] = []  # a turn wait that timed out: allowed by the contract, reported

    def victim() -> None:  # calls without a token on both plugins: must never be cancelled
        n = 0
        while not stop.is_set():
            n += 1
            try:
                got = client.generate_response("", f"v{n}")
                if got != f"echo: v{n}":
                    wrong.append(got)
            except PluginCancelled as exc:
                hits[0] += 1
                wrong.append(str(exc))
            except PluginTimeout as exc:
                (starved if "waiting for another call to end" in str(exc) else wrong).append(str(exc))
            except PluginError as exc:
                wrong.append(str(exc))

    def canceller() -> None:
        rng = random.Random(3)
        while not stop.is_set():
            time.sleep(rng.uniform(0, 0.002))
            shared[0].cancel()

    threads = [threading.Thread(target=victim, daemon=True) for _ in range(2)] + [threading.Thread(target=canceller, daemon=True)]
    for t in threads:
        t.start()
    cancelled = ok = 0
    for i in range(1000):  # the soak (tests/test_soak.py) runs this kind of storm for longer
        token = shared[0] = CancelToken()
        try:
            target = client if i % 3 else other
            target.generate_response("", f"a{i}", cancel=token)
            ok += 1
        except PluginCancelled:
            cancelled += 1
        except PluginError as exc:
            wrong.append(f"aimed call: {exc}")
    stop.set()
    for t in threads:
        t.join(10)
    print(f"aimed: {ok} ok, {cancelled} cancelled; victims starved in the turn queue: {len(starved)}")
    assert not wrong, f"{hits[0]} untargeted calls were cancelled; wrong: {wrong[:5]}"
    assert cancelled > 0 and ok > 0


@pytest.mark.timeout(120)
def test_one_token_shared_by_calls_on_two_plugins_cancels_both_and_nothing_after(handles: DirectPlugins) -> None:
    a, b = handles.handle("slow_stream"), handles.handle("sup_timing")
    a.start(), b.start()
    for _ in range(10):
        token = CancelToken()
        sa = Worker(lambda token=token: list(a.stream_response("", "x", cancel=token)))
        sb = Worker(lambda token=token: b.generate_response("", "first:0.6", cancel=token))
        sa.start(), sb.start()
        wait_until(lambda: a.state == "busy" and b.state == "busy", 10, "both calls")
        token.cancel()
        sa.join(5), sb.join(5)
        assert isinstance(sa.error, PluginCancelled) and isinstance(sb.error, PluginCancelled), (sa.error, sb.error)
        token.cancel()
        assert a.generate_response("", "y") == "slow" and b.generate_response("", "z") == "timing: z"
        with pytest.raises(PluginCancelled, match="before it started"):
            a.generate_response("", "reuse", cancel=token)


# ---------------------------------------------------------------------------------------
# queued calls while the holder's process is SIGKILLed
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_queued_calls_end_within_their_own_deadlines_when_the_holder_is_killed(home: Path) -> None:
    deadlines = Deadlines(start=20, first_chunk=3, idle=3, total=1.5, count_tokens=0.7, ping=0.5, cancel_grace=0.5, stop_grace=1)
    policy = RestartPolicy(backoff_initial=0.4, backoff_factor=2, backoff_max=2, max_failures=1000, window=30, cooldown=1, stable_after=5)
    with _handles(home, deadlines, policy) as handles:
        client = handles.handle("sup_timing")
        for rnd in range(4):
            client.start()
            holder = Worker(lambda: client.generate_response("", "first:5"))
            holder.start()
            wait_until(lambda: client.state == "busy", 10, "the holder")
            jobs = [
                (deadlines.count_tokens, lambda: client.count_tokens("abc")),
                (deadlines.ping, client.ping),
                (deadlines.total, lambda: client.generate_response("", "q")),
                (deadlines.total, lambda: "".join(client.stream_response("", "q"))),
            ] * 3
            workers = []
            for seconds, job in jobs:
                w = Worker(job)
                w.seconds, w.began = seconds, time.monotonic()  # type: ignore[attr-defined]
                workers.append(w)
                w.start()
            wait_until(lambda: client._turn._waiting >= 6, 10, "callers to queue")
            os.kill(client.pid, signal.SIGKILL)  # type: ignore[arg-type]
            holder.join(10)
            assert isinstance(holder.error, runner.PluginCrashed), repr(holder.error)
            for w in workers:
                w.join(30)
                took = w.ended_at - w.began  # type: ignore[attr-defined,operator]
                limit = w.seconds + MARGIN + (client.stats.startup_seconds or 0)  # type: ignore[attr-defined]
                assert took < limit, f"round {rnd}: a queued call ({w.seconds}s deadline) took {took:.2f}s: {w.error!r}"
                assert w.error is None or isinstance(w.error, PluginError), repr(w.error)
                if isinstance(w.error, PluginTimeout):
                    assert f"timed out after {w.seconds:g}s" in str(w.error), str(w.error)
                    assert str(w.error).startswith("plugin 'sup_timing' ")


# ---------------------------------------------------------------------------------------
# deadlines named in errors
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_start_queued_behind_a_call_names_its_deadline(home: Path) -> None:
    """Contract: the error names the deadline and its value (as the other queue waits do)."""
    deadlines = Deadlines(start=1, first_chunk=3, idle=3, total=5, count_tokens=3, ping=3, cancel_grace=1, stop_grace=1)
    with _handles(home, deadlines) as handles:
        client = handles.handle("sup_timing")
        client.start()
        holder = Worker(lambda: client.generate_response("", "first:2.5"))
        holder.start()
        wait_until(lambda: client.state == "busy", 10, "the holder")
        with pytest.raises(PluginTimeout) as info:
            client.start()
        holder.join(10)
        assert info.value.phase == "start" and info.value.seconds == 1
        assert str(info.value) == "plugin 'sup_timing' timed out after 1s (the start deadline) waiting for another call to end"


# ---------------------------------------------------------------------------------------
# close(): from a listener, from the watcher, racing everything; fds and threads
# ---------------------------------------------------------------------------------------


class _Listener:
    """Stands in for the health log: runs ``action`` at the first ``event``."""

    def __init__(self, event: str, action: Any) -> None:
        self.event, self.action, self.fired = event, action, threading.Event()
        self.raised: list[BaseException] = []

    def record(self, plugin: str, event: str, details: dict[str, Any] | None = None) -> None:
        if event == self.event and not self.fired.is_set():
            self.fired.set()
            try:
                self.action()
            except BaseException as exc:  # noqa: BLE001
                self.raised.append(exc)

    def counts(self, plugin: str, since: float | None = None) -> dict[str, int]:
        return {}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("event", ["starting", "started"])
def test_close_from_inside_an_event_listener(home: Path, event: str) -> None:
    """Contract: close() is final from any thread (here: the calling thread, inside its own start)."""
    manager = _manager(home)
    listener = _Listener(event, manager.close)
    manager._events = listener  # type: ignore[assignment]
    client = manager.handle("sup_timing")
    with pytest.raises(PluginUnavailable) as info:
        client.generate_response("", "x")
    assert listener.fired.is_set() and not listener.raised, listener.raised
    assert not client.running and not plugin_processes(str(home))
    assert info.value.reason == "closed", f"reason {info.value.reason!r}: {info.value}"
    with pytest.raises(PluginUnavailable) as again:
        client.generate_response("", "x")
    assert again.value.reason == "closed"
    manager.close()


@pytest.mark.timeout(60)
def test_close_from_the_watch_callback(home: Path) -> None:
    manager = _manager(home)
    manager.handle("echo").start()
    plugins = home / "plugins"
    plugins.mkdir(exist_ok=True)
    changed = threading.Event()

    def on_change(changes: Any) -> None:
        manager.close()
        changed.set()

    manager.watch(on_change, interval=0.05)
    (plugins / "race_new_plugin.py").write_text((TEST_PLUGINS / "sup_jitter_plugin.py").read_text())
    assert changed.wait(10)
    watcher = manager._watcher
    assert watcher is not None
    watcher.join(5)
    assert not watcher.is_alive()
    manager.close()
    with pytest.raises(PluginUnavailable) as info:
        manager.handle("echo").count_tokens("x")
    assert info.value.reason == "closed"


@pytest.mark.timeout(240)
def test_close_racing_stop_forget_check_idle_health_refresh(home: Path) -> None:
    """Contract: close() is final and idempotent; only PluginErrors escape; no process after it."""
    rng = random.Random(11)
    names = ("echo", "sup_jitter", "slow_stream")
    for rnd in range(12):
        manager = _manager(home)
        unexpected: list[BaseException] = []
        go = threading.Barrier(8)  # seven jobs and this thread

        def guard(job: Any, go: threading.Barrier = go, unexpected: list[BaseException] = unexpected) -> Any:
            def run() -> None:
                go.wait()
                for _ in range(4):
                    try:
                        job()
                    except PluginError:
                        pass
                    except BaseException as exc:  # noqa: BLE001
                        unexpected.append(exc)

            return run

        jobs = [  # each bound to this round's manager: a job thread may outlive its round
            lambda manager=manager: manager.handle(rng.choice(names)).count_tokens("words"),
            lambda manager=manager: "".join(manager.handle("slow_stream").stream_response("", "x", cancel=_timer_token(0.05))),
            lambda manager=manager: manager.handle(rng.choice(names)).stop(),
            lambda manager=manager: manager.forget(rng.choice(names)),
            lambda manager=manager: manager.check_idle(),
            lambda manager=manager: probe_all(manager, [rng.choice(names)]),
            lambda manager=manager: manager.refresh(),
        ]
        threads = [threading.Thread(target=guard(j), daemon=True) for j in jobs]
        for t in threads:
            t.start()
        go.wait()
        time.sleep(rng.uniform(0, 0.3))  # where close lands: the race itself
        closers = [threading.Thread(target=manager.close) for _ in range(3)]
        for c in closers:
            c.start()
        for c in closers + threads:
            c.join(30)
            assert not c.is_alive(), f"round {rnd}: a thread hung after close()"
        assert not unexpected, f"round {rnd}: {unexpected!r}"
        for name in names:
            try:
                handle = manager.handle(name)
            except PluginUnavailable as exc:
                assert exc.reason == "closed"
            else:  # pragma: no cover - client() after close must refuse
                raise AssertionError(f"client({name!r}) after close gave {handle}")
        for handle in manager.handles().values():
            with pytest.raises(PluginUnavailable) as info:
                handle.count_tokens("x")
            assert info.value.reason == "closed" and not handle.running
        assert not plugin_processes(str(home)), f"round {rnd}: processes after close"


def _timer_token(seconds: float) -> CancelToken:
    token = CancelToken()
    timer = threading.Timer(seconds, token.cancel)
    timer.daemon = True
    timer.start()
    return token


@pytest.mark.timeout(240)
def test_many_manager_cycles_leak_no_fd_and_no_thread(home: Path) -> None:
    """Contract: close() releases every fd and thread the manager owns."""

    def cycle(i: int) -> None:
        with _manager(home) as manager:
            manager.watch(interval=0.05)
            a, b = manager.handle("echo"), manager.handle("slow_stream")
            assert a.count_tokens("a b") > 0
            s = b.stream_response("", "x")
            next(s)
            s.close()
            if i % 2:
                os.kill(a.pid, signal.SIGKILL)  # type: ignore[arg-type]
                with pytest.raises(PluginError):
                    a.count_tokens("x")
            manager.check_idle()

    cycle(0)  # warm-up: imports, caches, the sqlite module
    gc.collect()
    fds, threads = _fds(), threading.active_count()
    for i in range(1, 25):
        cycle(i)
    gc.collect()
    names = sorted(t.name for t in threading.enumerate())
    assert threading.active_count() <= threads, f"threads after 24 cycles: {names}"
    assert _fds() <= fds, f"fds: {fds} before, {_fds()} after 24 cycles: {sorted(os.listdir('/proc/self/fd'))}"


@pytest.mark.timeout(60)
def test_home_config_toml_is_read_like_the_cli(home: Path) -> None:
    """Contract: PluginManager(home=H) reads H/config.toml (per-plugin deadlines, disabled)."""
    (home / "config.toml").write_text('disabled = ["slow_stream"]\n[plugins.sup_timing]\ntotal = 1\n')
    with PluginManager([TEST_PLUGINS], home, deadlines=FAST, restart_policy=POLICY) as manager:
        with pytest.raises(PluginUnavailable) as off:
            manager.handle("slow_stream")
        assert off.value.reason == "disabled"
        client = manager.handle("sup_timing")
        began = time.monotonic()
        with pytest.raises(PluginTimeout) as info:
            client.generate_response("", "first:3")
        assert str(info.value) == "plugin 'sup_timing' timed out after 1s (the total deadline)"
        assert time.monotonic() - began < 1 + MARGIN + (client.stats.startup_seconds or 0)
