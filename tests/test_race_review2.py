"""A second independent attack on the concurrency contract, aimed at the new FIFO Turn.

Each test states the clause it attacks. Failing tests are left failing on purpose (see
the review report). No test waits for state with a bare sleep; where a window is widened,
the docstring says how.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runner import CancelToken, Deadlines, PluginCancelled, PluginError, PluginUnavailable, RestartPolicy
from runner import channel as channel_mod
from runner import connection as connection_mod
from runner.turn import Turn
from tests.helpers import MARGIN, DirectPlugins, Worker, join_through_ctrl_c, wait_until
from tests.test_race_review import _handles, _manager  # the first review's harness

PROMPT = 0.1  # an admission after a give must be far under one 0.25 s wait slice


class _Holder(threading.Thread):
    """Takes ``turn`` and keeps it until ``release`` is set."""

    def __init__(self, turn: Turn) -> None:
        super().__init__(daemon=True)
        self.turn, self.held, self.release = turn, threading.Event(), threading.Event()

    def run(self) -> None:
        assert self.turn.take(time.monotonic() + 30)
        self.held.set()
        self.release.wait(30)
        self.turn.give()


class _Waiter(threading.Thread):
    """take(deadline) on ``turn``; records when it got in (or gave up); gives at once."""

    def __init__(
        self, turn: Turn, seconds: float, cancel: CancelToken | None = None, log: list[Any] | None = None, tag: Any = None
    ) -> None:
        super().__init__(daemon=True)
        self.turn, self.seconds, self.cancel, self.log, self.tag = turn, seconds, cancel, log, tag
        self.got: bool | None = None
        self.at: float | None = None

    def run(self) -> None:
        self.got = self.turn.take(time.monotonic() + self.seconds, self.cancel)
        self.at = time.monotonic()
        if self.got:
            if self.log is not None:
                self.log.append(self.tag)
            self.turn.give()


def _queue_waiter(turn: Turn, waiter: _Waiter) -> _Waiter:
    before = turn._waiting
    waiter.start()
    wait_until(lambda: turn._waiting > before or waiter.got is not None, 10, "the waiter to queue")
    return waiter


# ---------------------------------------------------------------------------------------
# Ctrl-C while queued: the ticket is neither served nor marked gone
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_turn_ctrl_c_while_queued_does_not_stall_the_queue() -> None:
    """Contract: no leaked turn (after any mix of failures, a new call gets in at once).

    Unit level, no widening: the main thread waits in take() behind a holder and gets a
    SIGINT (Ctrl-C) while it sleeps in the condition. Then the holder gives, a new
    holder takes, a waiter queues behind it, and the new holder gives: the waiter must get in.
    """
    turn = Turn()
    first = _Holder(turn)
    first.start()
    assert first.held.wait(10)
    me = threading.get_ident()
    timer = threading.Timer(0.3, lambda: signal.pthread_kill(me, signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        turn.take(time.monotonic() + 10)
    first.release.set()
    first.join(10)
    second = _Holder(turn)
    second.start()
    assert second.held.wait(10)
    waiter = _queue_waiter(turn, _Waiter(turn, 2.0))
    given_at = time.monotonic()
    second.release.set()
    waiter.join(10)
    state = f"tickets={turn._tickets} serving={turn._serving} gone={turn._gone} waiting={turn._waiting}"
    assert waiter.got, f"a call queued behind a holder that gave after 0 s waited its whole 2 s deadline and was refused ({state})"
    assert waiter.at - given_at < PROMPT, f"admitted {waiter.at - given_at:.3f}s after the give"  # type: ignore[operator]


@pytest.mark.timeout(60)
def test_plugin_ctrl_c_on_a_queued_call_leaves_later_queued_calls_served(home: Path) -> None:
    """Contract: no leaked turn; each call ends within its own deadline, served when its turn comes.

    The main thread's call queues behind a slow call and is interrupted by Ctrl-C. Later,
    a call from another thread queues behind a 0.3 s call: it must get in after 0.3 s,
    not time out at its 3 s deadline "waiting for another call to end".
    """
    deadlines = Deadlines(start=20, first_chunk=3, idle=3, total=3, count_tokens=3, ping=3, cancel_grace=1, stop_grace=1)
    with _handles(home, deadlines) as handles:
        client = handles.handle("sup_timing")
        client.start()
        holder = Worker(lambda: client.generate_response("", "first:1"))
        holder.start()
        wait_until(lambda: client.state == "busy", 10, "the holder to run")
        me = threading.get_ident()
        threading.Timer(0.3, lambda: signal.pthread_kill(me, signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            client.generate_response("", "queued")
        holder.join(10)
        assert holder.error is None, repr(holder.error)
        # Later, ordinary contention between two other threads.
        slow = Worker(lambda: client.generate_response("", "first:0.3"))
        slow.start()
        wait_until(lambda: client.state == "busy", 10, "the second holder to run")
        queued = Worker(lambda: client.count_tokens("abc"))
        began = time.monotonic()
        queued.start()
        slow.join(10)
        queued.join(10)
        took = queued.ended_at - began  # type: ignore[operator]
        assert queued.error is None and queued.result == 3, f"after {took:.2f}s: {queued.error!r}"
        assert took < 0.3 + MARGIN


@pytest.mark.timeout(120)
def test_random_ctrl_c_storm_then_contention_is_still_served(home: Path) -> None:
    """No widening: SIGINTs at random moments of the main thread's queued calls; afterwards
    every call that queues behind a short one must still be served (not time out)."""
    deadlines = Deadlines(start=20, first_chunk=3, idle=3, total=2, count_tokens=2, ping=2, cancel_grace=1, stop_grace=1)
    me = threading.get_ident()
    with _handles(home, deadlines) as handles:
        client = handles.handle("sup_timing")
        client.start()
        stop = threading.Event()
        interrupts = 0

        def busy() -> None:
            while not stop.is_set():
                try:
                    client.generate_response("", "first:0.02")
                except PluginError:
                    pass

        def ctrl_c() -> None:
            rng = random.Random(11)
            while not stop.wait(rng.uniform(0.002, 0.02)):
                signal.pthread_kill(me, signal.SIGINT)

        threads = [threading.Thread(target=busy, daemon=True), threading.Thread(target=ctrl_c, daemon=True)]
        for t in threads:
            t.start()
        end = time.monotonic() + 4
        try:
            while time.monotonic() < end:
                try:
                    client.count_tokens("main")
                except KeyboardInterrupt:
                    interrupts += 1
                except PluginError:
                    pass
        finally:
            stop.set()
            join_through_ctrl_c(threads)
        # Drain any SIGINT still pending.
        for _ in range(3):
            try:
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass
        assert interrupts > 10
        failures = []
        for _ in range(5):
            slow = Worker(lambda: client.generate_response("", "first:0.1"))
            slow.start()
            wait_until(lambda slow=slow: client.state == "busy" or slow.ended_at is not None, 10, "a holder")
            queued = Worker(lambda: client.count_tokens("abcd"))
            queued.start()
            slow.join(10)
            queued.join(10)
            if queued.error is not None:
                failures.append(str(queued.error))
        t = client._turn
        assert not failures, (
            f"after {interrupts} Ctrl-Cs, {len(failures)} of 5 calls queued behind a 0.1 s call failed: {failures[:2]} "
            f"(tickets={t._tickets} serving={t._serving} gone={len(t._gone)})"
        )


# ---------------------------------------------------------------------------------------
# Turn, unit level: order, prompt hand-off after abandoned tickets, random storms
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("abandon", ["none", "first", "middle", "last", "all_but_last", "first_cancel", "middle_cancel"])
def test_turn_hand_off_is_fifo_and_prompt_past_abandoned_tickets(abandon: str) -> None:
    """Contract: queued calls are served in arrival order; a ticket given up (deadline or
    cancel) in any position is skipped, and the next one is admitted at once after a give."""
    turn = Turn()
    holder = _Holder(turn)
    holder.start()
    assert holder.held.wait(10)
    n = 6
    log: list[int] = []
    tokens = [CancelToken() for _ in range(n)]
    quit_ = {"none": set(), "first": {0}, "middle": {2, 3}, "last": {n - 1}, "all_but_last": set(range(n - 1)),
             "first_cancel": {0}, "middle_cancel": {2}}[abandon]  # fmt: skip
    by_cancel = abandon.endswith("_cancel")
    waiters = []
    for i in range(n):
        seconds = 0.3 if (i in quit_ and not by_cancel) else 20.0
        waiters.append(_queue_waiter(turn, _Waiter(turn, seconds, tokens[i], log, i)))
    if by_cancel:
        for i in quit_:
            tokens[i].cancel()
    for i in quit_:
        waiters[i].join(10)
        assert waiters[i].got is False
    given_at = time.monotonic()
    holder.release.set()
    for w in waiters:
        w.join(10)
    expected = [i for i in range(n) if i not in quit_]
    assert log == expected, f"admitted in order {log}, queued in order {expected}"
    first = min(w.at for w in waiters if w.got)  # type: ignore[type-var]
    assert first - given_at < PROMPT, f"the first live waiter got in {first - given_at:.3f}s after the give"
    assert not turn.held and turn._waiting == 0
    assert turn.take_now()
    turn.give()


@pytest.mark.timeout(60)
def test_turn_serving_ticket_timing_out_hands_off_at_once() -> None:
    """The first in line gives up (deadline) while the holder still holds; the holder gives
    immediately after: the second in line gets in at once, not after a slice."""
    for _ in range(20):
        turn = Turn()
        holder = _Holder(turn)
        holder.start()
        assert holder.held.wait(10)
        first = _queue_waiter(turn, _Waiter(turn, 0.05))
        second = _queue_waiter(turn, _Waiter(turn, 10))
        first.join(10)
        given_at = time.monotonic()
        holder.release.set()
        second.join(10)
        assert second.got and second.at - given_at < PROMPT, f"second got in {second.at - given_at:.3f}s after the give"  # type: ignore[operator]


@pytest.mark.timeout(120)
def test_turn_random_storm_one_holder_at_a_time_and_free_afterwards() -> None:
    """Unit storm: threads take with random deadlines and cancels, nest re-entrantly, raise
    inside their turn, and hand some turns to another thread to give back. Never two
    holders at once; afterwards the turn is free and a queued take is admitted promptly."""
    turn = Turn()
    inside = 0
    peak = 0
    count_lock = threading.Lock()
    errors: list[str] = []
    stop = time.monotonic() + 6
    admitted = [0]

    def enter() -> None:
        nonlocal inside, peak
        with count_lock:
            inside += 1
            peak = max(peak, inside)
            if inside > 1:
                errors.append(f"{inside} holders at once")

    def leave() -> None:
        nonlocal inside
        with count_lock:
            inside -= 1

    def body(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            token = CancelToken() if rng.random() < 0.5 else None
            if token is not None and rng.random() < 0.3:
                threading.Timer(rng.uniform(0, 0.01), token.cancel).start()
            if not turn.take(time.monotonic() + rng.uniform(0, 0.03), token):
                continue
            admitted[0] += 1
            enter()
            try:
                for _ in range(rng.randrange(3)):
                    if not turn.take_now():
                        errors.append("the holder's own nested take_now was refused")
                        continue
                    turn.give()
                if rng.random() < 0.1:
                    raise ValueError("boom")
                time.sleep(rng.uniform(0, 0.002))
            except ValueError:
                pass
            finally:
                leave()
                if rng.random() < 0.2:  # hand the give to another thread (a stream finalized elsewhere)
                    giver = threading.Thread(target=turn.give)
                    giver.start()
                    giver.join()
                else:
                    turn.give()

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a storm thread hangs"
    assert not errors, errors[:5]
    assert admitted[0] > 100
    assert not turn.held and turn._waiting == 0 and turn._depth == 0, (turn.held, turn._waiting, turn._depth)
    holder = _Holder(turn)
    holder.start()
    assert holder.held.wait(1), "the turn is not free after the storm"
    waiter = _queue_waiter(turn, _Waiter(turn, 2))
    given_at = time.monotonic()
    holder.release.set()
    waiter.join(10)
    assert waiter.got and waiter.at - given_at < PROMPT  # type: ignore[operator]


# ---------------------------------------------------------------------------------------
# FIFO at the plugin level
# ---------------------------------------------------------------------------------------


def _record_admissions(monkeypatch: pytest.MonkeyPatch, conns: list[Any] | None = None) -> list[str]:
    """Wrap Connection.call: only the turn's holder calls it, so entry order is admission order."""
    order: list[str] = []
    real = connection_mod.Connection.call

    def call(self: Any, method: str, params: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if method == "generate":
            order.append(params["user_message"])
            if conns is not None:
                conns.append(self)
        return real(self, method, params, *args, **kwargs)

    monkeypatch.setattr(connection_mod.Connection, "call", call)
    return order


@pytest.mark.timeout(120)
def test_plugin_calls_queued_from_many_threads_are_served_in_arrival_order(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Contract: calls queued are served in arrival order, also while a newcomer keeps calling."""
    deadlines = Deadlines(start=20, first_chunk=10, idle=10, total=20, count_tokens=10, ping=10, cancel_grace=1, stop_grace=1)
    order = _record_admissions(monkeypatch)
    with _handles(home, deadlines) as handles:
        client = handles.handle("sup_timing")
        client.start()
        holder = Worker(lambda: client.generate_response("", "first:0.5"))
        holder.start()
        wait_until(lambda: client.state == "busy", 10, "the holder")
        workers = []
        for i in range(12):
            w = Worker(lambda i=i: client.generate_response("", f"q{i:02}"))
            w.start()
            wait_until(lambda i=i: client._turn._waiting == i + 1, 10, f"q{i} to queue")
            workers.append(w)
        for w in [holder, *workers]:
            w.join(30)
        errors = [repr(w.error) for w in workers if w.error is not None]
        assert not errors, errors
        assert order[1:] == [f"q{i:02}" for i in range(12)], order


@pytest.mark.timeout(120)
def test_plugin_fifo_survives_holders_killed_mid_call(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Contract: FIFO order and no leaked turn while holders are stopped mid-call; a stop ends
    the running call, and "after any failure that killed it, the next call starts a fresh
    one" (client.py): the calls queued behind it are served by a fresh process.

    Every third call hangs (first:5); another thread calls client.stop() while it runs
    (stop cannot take the turn in 0.05 s, so it kills the process).
    """
    deadlines = Deadlines(start=20, first_chunk=10, idle=10, total=30, count_tokens=10, ping=10, cancel_grace=1, stop_grace=1)
    conns: list[Any] = []
    order = _record_admissions(monkeypatch, conns)
    with _handles(home, deadlines) as handles:
        client = handles.handle("sup_timing")
        client.start()
        workers = []
        for i in range(10):
            text = f"first:5#{i:02}" if i % 3 == 0 else f"q{i:02}"  # every third one hangs and is killed
            w = Worker(lambda text=text: client.generate_response("", text.split("#")[0] if text.startswith("first") else text))
            w.text = text  # type: ignore[attr-defined]
            w.start()
            if i == 0:
                wait_until(lambda: client.state == "busy", 10, "the first holder")
            else:
                wait_until(lambda i=i: client._turn._waiting == i, 10, f"call {i} to queue")
            workers.append(w)
        stop = threading.Event()

        def killer() -> None:
            while not stop.is_set():
                pairs = list(zip(order, conns, strict=False))  # appended to by other threads: one may be ahead
                if pairs and pairs[-1][0].startswith("first:5") and not pairs[-1][1].dead and client._conn is pairs[-1][1]:
                    client.stop()  # the hanging call's process: it cannot change until that call ends
                time.sleep(0.01)

        k = threading.Thread(target=killer, daemon=True)
        k.start()
        for w in workers:
            w.join(60)
        stop.set()
        k.join(5)
        served = ["first:5" if w.text.startswith("first") else w.text for w in workers]  # type: ignore[attr-defined]
        assert order == served, f"admitted {order}, queued {served}"
        survivors = [w for w in workers if not w.text.startswith("first")]  # type: ignore[attr-defined]
        assert all(w.error is None for w in survivors), (order, [(w.text, repr(w.error)) for w in workers], [c.pid for c in conns])  # type: ignore[attr-defined]
        began = time.monotonic()
        assert client.count_tokens("ab") == 2 and time.monotonic() - began < 1


# ---------------------------------------------------------------------------------------
# close() with calls queued behind a stream between chunks
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_close_ends_calls_queued_behind_a_paused_stream_promptly(home: Path) -> None:
    """Contract: close() is final; calls queued at a close end promptly with reason "closed"
    (not at their own deadlines); a call made after close() is refused at once ("closed").

    The turn is held by a stream its reader has stopped reading (between chunks: a UI
    thread busy elsewhere, or a stream kept for later).
    """
    deadlines = Deadlines(start=20, first_chunk=3, idle=3, total=5, count_tokens=5, ping=5, cancel_grace=1, stop_grace=1)
    manager = _manager(home, deadlines)
    client = manager.handle("slow_stream")
    stream = client.stream_response("", "x")
    assert next(stream) == "0 "
    queued = Worker(lambda: client.count_tokens("abc"))
    queued.start()
    wait_until(lambda: client._turn._waiting == 1, 10, "the call to queue")
    closed_at = time.monotonic()
    manager.close()
    after = Worker(lambda: client.count_tokens("later"))
    after.start()
    queued.join(20)
    after.join(20)
    stream.close()
    took_q = queued.ended_at - closed_at  # type: ignore[operator]
    took_a = after.ended_at - closed_at  # type: ignore[operator]
    problems = []
    for what, w, took in (("queued before close", queued, took_q), ("made after close", after, took_a)):
        if not (isinstance(w.error, PluginUnavailable) and w.error.reason == "closed" and took < MARGIN):
            problems.append(f"{what}: ended {took:.2f}s after close() with {w.error!r}")
    assert not problems, problems


@pytest.mark.timeout(60)
def test_close_ends_many_calls_queued_behind_a_running_call_promptly(home: Path) -> None:
    """Held-attack candidate: the holder is an ordinary call (killed by close); every queued
    call ends "closed" well within its deadline, and no process is started after close."""
    deadlines = Deadlines(start=20, first_chunk=10, idle=10, total=10, count_tokens=10, ping=10, cancel_grace=1, stop_grace=1)
    manager = _manager(home, deadlines)
    client = manager.handle("sup_timing")
    client.start()
    holder = Worker(lambda: client.generate_response("", "first:8"))
    holder.start()
    wait_until(lambda: client.state == "busy", 10, "the holder")
    workers = []
    for i in range(8):
        w = Worker(lambda: client.generate_response("", "x"))
        w.start()
        wait_until(lambda i=i: client._turn._waiting == i + 1, 10, "to queue")
        workers.append(w)
    starts = client.stats.starts
    closed_at = time.monotonic()
    manager.close()
    for w in [holder, *workers]:
        w.join(20)
    slow = [(round(w.ended_at - closed_at, 2), repr(w.error)) for w in workers if w.ended_at - closed_at > MARGIN]  # type: ignore[operator]
    wrong = [repr(w.error) for w in workers if not (isinstance(w.error, PluginUnavailable) and w.error.reason == "closed")]
    assert not slow and not wrong, (slow, wrong)
    assert client.stats.starts == starts, "a process was started after close()"
    assert isinstance(holder.error, PluginError)


@pytest.mark.timeout(60)
def test_close_during_a_restart_back_off_ends_the_call_and_starts_nothing(home: Path) -> None:
    """Contract: close() is final (no process starts after it) and ends calls promptly.

    A crash leaves a back-off of 3 s before the restart; the next call sleeps it out
    inside its turn. close() from another thread during that sleep.
    """
    policy = RestartPolicy(backoff_initial=3, backoff_max=3, max_failures=1000, window=30, cooldown=0.5, stable_after=0.2)
    deadlines = Deadlines(start=20, first_chunk=10, idle=10, total=10, count_tokens=10, ping=10, cancel_grace=1, stop_grace=1)
    manager = _manager(home, deadlines, policy)
    client = manager.handle("exit_in_call")
    with pytest.raises(PluginError):
        client.generate_response("", "die")  # exits: one failure, so the next start backs off 3 s
    starts = client.stats.starts
    call = Worker(lambda: client.count_tokens("x"))
    call.start()
    wait_until(lambda: client._turn.held, 10, "the call to take its turn")
    time.sleep(0.3)  # let it reach the back-off (it holds the turn the whole time)
    closed_at = time.monotonic()
    manager.close()
    call.join(20)
    took = call.ended_at - closed_at  # type: ignore[operator]
    extra = client.stats.starts - starts
    assert isinstance(call.error, PluginUnavailable) and call.error.reason == "closed", repr(call.error)
    assert took < MARGIN and extra == 0, f"the call ended {took:.2f}s after close() and started {extra} process(es) after it"


# ---------------------------------------------------------------------------------------
# Thread identity: a reused thread id is taken for the stream's reader
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_thread_reusing_a_dead_stream_readers_id_waits_its_turn(plugins: DirectPlugins) -> None:
    """Contract: calls from other threads wait their turn (only the thread reading a stream
    is refused "busy"); re-entrancy is for the holder's own calls.

    A thread reads one chunk of a stream and ends (the stream is kept for later). Thread
    ids are reused: a new thread with the same id then calls; it is not the stream's reader.
    """
    client = plugins.handle("slow_stream")
    kept: list[Any] = []

    def reader() -> None:
        stream = client.stream_response("", "x")
        assert next(stream) == "0 "
        kept.append((stream, threading.get_ident()))

    t = threading.Thread(target=reader)
    t.start()
    t.join()
    stream, ident = kept[0]
    twin: Worker | None = None
    for _ in range(200):
        w = Worker(lambda: client.count_tokens("abc") if threading.get_ident() == ident else None)
        w.start()
        wait_until(lambda w=w: w.ident is not None, 5, "a thread id")
        if w.ident == ident:
            twin = w
            break
        w.join(5)
    if twin is None:
        stream.close()
        pytest.skip("no thread id was reused")
    wait_until(lambda: client._turn._waiting == 1 or twin.ended_at is not None, 10, "the twin to queue or end")
    stream.close()  # from this thread: the turn is given back, the twin's call gets in
    twin.join(10)
    assert twin.error is None and twin.result == 3, f"a thread that merely reuses the dead reader's id got {twin.error!r}"


# ---------------------------------------------------------------------------------------
# the holder's own nested calls while others wait
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_listener_pinging_from_inside_the_start_while_others_wait(home: Path) -> None:
    """Contract: the holder's re-entrant calls are neither refused nor deadlocked while
    others are queued (check_alive -> ping from the "started" event listener)."""
    results: list[Any] = []
    queued_ready = threading.Event()
    box: dict[str, Any] = {}

    def listener(name: str, event: str, details: dict[str, Any]) -> None:
        if event == "started" and "client" in box:
            queued_ready.wait(5)
            client = box["client"]
            results.append(("waiting", client._turn._waiting))
            results.append(("check_alive", client.check_alive()))
            results.append(("count", client.count_tokens("nested")))

    # the queued calls wait for a 4 s boot, the listener's calls and the first reply: 10 s was crossed on a loaded CI machine
    deadlines = Deadlines(start=30, first_chunk=40, idle=40, total=40, count_tokens=10, ping=10, cancel_grace=1, stop_grace=1)
    manager = _manager(home, deadlines)
    try:
        real_record = manager.events.record

        def record(name: str, event: str, details: dict[str, Any]) -> None:
            real_record(name, event, details)
            listener(name, event, details)

        manager.events.record = record  # type: ignore[method-assign]
        client = manager.handle("race_slow_boot")
        box["client"] = client
        first = Worker(lambda: client.generate_response("", "a"))
        first.start()
        wait_until(lambda: client._turn.held, 10, "the start")
        others = []
        for i in range(3):
            w = Worker(lambda: client.generate_response("", "b"))
            w.start()
            wait_until(lambda i=i: client._turn._waiting == i + 1, 10, "to queue")
            others.append(w)
        queued_ready.set()
        for w in [first, *others]:
            w.join(60)
        assert first.error is None and all(w.error is None for w in others), [repr(w.error) for w in [first, *others]]
        assert results == [("waiting", 3), ("check_alive", True), ("count", 6)], results
    finally:
        manager.close()


# ---------------------------------------------------------------------------------------
# a cancel exactly as a start finishes
# ---------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("when", ["started_event", "after_start"])
def test_a_cancel_as_the_start_finishes_never_reaches_the_plugin(home: Path, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    """Contract: a cancelled call never reaches the plugin; the cancel ends exactly its call
    (PluginCancelled), and the next call gets in at once.

    Widened: the cancel is made from the "started" listener, or just after Lifecycle._start returns.
    """
    token = CancelToken()
    sent: list[str] = []
    real_request = channel_mod.Channel.request

    def request(self: Any, method: str, params: dict[str, Any], seconds: float) -> int:
        sent.append(method)
        return real_request(self, method, params, seconds)

    monkeypatch.setattr(channel_mod.Channel, "request", request)
    manager = _manager(home)
    try:
        real_record = manager.events.record

        def record(name: str, event: str, details: dict[str, Any]) -> None:
            real_record(name, event, details)
            if event == "started" and when == "started_event":
                token.cancel()

        manager.events.record = record  # type: ignore[method-assign]
        client = manager.handle("sup_timing")
        if when == "after_start":
            real_start = client._life._start

            def start(*args: Any, **kwargs: Any) -> Any:
                conn = real_start(*args, **kwargs)
                token.cancel()
                return conn

            monkeypatch.setattr(client._life, "_start", start)
        with pytest.raises(PluginCancelled):
            client.generate_response("", "x", cancel=token)
        assert "generate" not in sent, sent
        began = time.monotonic()
        assert client.count_tokens("abc") == 3 and time.monotonic() - began < 1
    finally:
        manager.close()


@pytest.mark.timeout(60)
def test_turn_newcomer_spinning_on_take_now_never_barges_a_queued_waiter() -> None:
    """Contract: a queued call is never overtaken by a later one (the fast path refuses to barge)."""
    barged = 0
    for _ in range(200):
        turn = Turn()
        holder = _Holder(turn)
        holder.start()
        assert holder.held.wait(10)
        log: list[str] = []
        waiter = _queue_waiter(turn, _Waiter(turn, 10, log=log, tag="waiter"))
        go = threading.Event()

        def newcomer(go: threading.Event = go, turn: Turn = turn, log: list[str] = log) -> None:
            go.wait()
            end = time.monotonic() + 1
            while time.monotonic() < end:
                if turn.take_now():
                    log.append("newcomer")
                    turn.give()
                    return

        n = threading.Thread(target=newcomer, daemon=True)
        n.start()
        go.set()
        holder.release.set()
        waiter.join(10)
        n.join(10)
        barged += log[:1] == ["newcomer"]
    assert barged == 0, f"the newcomer got in before the queued waiter {barged} times in 200"


@pytest.mark.timeout(60)
def test_turn_foreign_give_racing_the_owners_nested_take_keeps_one_holder() -> None:
    """Contract: give() may come from another thread (a stream finalized by gc) while the
    owner thread makes its own nested calls (check_alive from the thread that abandoned
    the stream). The depth must stay right: after the foreign final give and the owner's
    nested give, the turn is free, and never held by two.

    Widened: a tiny switch interval, many rounds.
    """
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    bad: list[str] = []
    try:
        for r in range(300):
            turn = Turn()
            assert turn.take_now()
            start = threading.Barrier(2)

            def foreign_give(start: threading.Barrier = start, turn: Turn = turn) -> None:
                start.wait()
                turn.give()  # the stream's last give, from the collector's thread

            b = threading.Thread(target=foreign_give)
            b.start()
            start.wait()
            try:
                for _ in range(50):  # the owner's own nested calls, on the owner thread
                    if turn.take_now():  # re-entrant while it is still ours, else a fresh take
                        turn.give()
            except RuntimeError as exc:
                bad.append(f"round {r}: the owner's give raised {exc!r}")
            b.join(10)
            if bad:
                break
            if turn.held or turn._depth != 0:
                bad.append(f"round {r}: held={turn.held} depth={turn._depth} owner={turn._owner}")
                break
    finally:
        sys.setswitchinterval(old)
    assert not bad, bad


@pytest.mark.timeout(60)
def test_turn_foreign_final_give_and_owners_nested_take_now_widened() -> None:
    """Contract: one call at a time; give() may come from another thread.

    The owner thread (which abandoned a stream that still holds its turn) calls
    check_alive() -> take_now() just as the garbage collector, on another thread, runs the
    stream's final give(). give() lowers the depth to 0 and only then clears the owner;
    take_now() in between sees "owner == me" and counts itself re-entrant. Widened: the
    owner is cleared slowly (a point between two bytecodes of give()).
    """
    in_give, done = threading.Event(), threading.Event()

    class SlowTurn(Turn):
        @property  # type: ignore[override]
        def _owner(self) -> int | None:
            return self.__dict__.get("_o")

        @_owner.setter
        def _owner(self, value: int | None) -> None:
            if value is None and threading.current_thread().name == "collector":
                in_give.set()
                done.wait(0.2)
            self.__dict__["_o"] = value

    turn = SlowTurn()
    assert turn.take_now()  # the stream's turn, taken on this thread
    collector = threading.Thread(target=turn.give, name="collector")
    collector.start()
    assert in_give.wait(5)
    nested = turn.take_now()  # this thread's check_alive(), "re-entrant"
    done.set()
    collector.join(5)
    other = Worker(turn.take_now)  # another thread's call, now
    other.start()
    other.join(5)
    problems = []
    if nested and other.result:
        problems.append("two holders at once: this thread's nested take_now and another thread's take both hold the turn")
    try:
        if nested:
            turn.give()  # the end of this thread's nested call
    except RuntimeError as exc:
        problems.append(f"the owner's nested give raised {exc!r}")
    if other.result and not turn.held:
        problems.append("this thread's nested give released the other thread's turn")
    assert not problems, problems
