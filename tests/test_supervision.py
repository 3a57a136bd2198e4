"""Supervision with real plugin processes: restarts, quarantine, deadlines, cancel, stop, liveness, health.

Every test drives purpose-built plugins (``tests/plugins/sup_*_plugin.py`` and a few
older ones) with a small RestartPolicy: through ``runner.Plugin`` handles built straight
from a config where only the runner is tested, through a PluginManager where its states,
health log, liveness checks or close are. It waits on conditions with deadlines, never
on fixed sleeps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from app import PluginManager
from app.health import HEALTH_KEYS, probe_all
from runner import (
    CancelToken,
    Deadlines,
    PluginCancelled,
    PluginCrashed,
    PluginStartTimeout,
    PluginTimeout,
    PluginUnavailable,
    RestartPolicy,
)
from tests import helpers
from tests.helpers import FAST, MARGIN, TEST_PLUGINS, DirectPlugins, Worker, gone, wait_until
from tests.helpers import live_plugin_processes as plugin_processes

POLICY = RestartPolicy(backoff_initial=0.01, backoff_max=0.1, max_failures=3, window=30, cooldown=0.5, stable_after=0.2)
#: Short deadlines for the deadline tests; start stays generous (imports on a busy box).
QUICK = Deadlines(start=20, first_chunk=0.5, idle=0.5, total=1.5, count_tokens=0.5, ping=0.5, cancel_grace=0.5, stop_grace=0.5)


@pytest.fixture
def sup(home: Path) -> Iterator[PluginManager]:
    with PluginManager([TEST_PLUGINS], home, deadlines=FAST, restart_policy=POLICY) as m:
        yield m


@pytest.fixture
def quick(home: Path) -> Iterator[PluginManager]:
    with PluginManager([TEST_PLUGINS], home, deadlines=QUICK, restart_policy=POLICY) as m:
        yield m


@pytest.fixture
def sup_plugins(home: Path) -> Iterator[DirectPlugins]:
    """As ``sup``, without the manager: runner.Plugin handles built from a PluginConfig."""
    with DirectPlugins(home, deadlines=FAST, policy=POLICY) as plugins:
        yield plugins


@pytest.fixture
def quick_plugins(home: Path) -> Iterator[DirectPlugins]:
    """As ``quick``, without the manager."""
    with DirectPlugins(home, deadlines=QUICK, policy=POLICY) as plugins:
        yield plugins


def scratch(manager: PluginManager | DirectPlugins, name: str) -> Path:
    """The plugin's working directory: the test steers sup_flaky with files in it."""
    if isinstance(manager, DirectPlugins):
        return manager.scratch(name)
    path = manager.paths.scratch / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def events_of(manager: PluginManager | DirectPlugins, name: str) -> list[str]:
    """What the plugin's handle reported: from the manager's health log, or as the handle reported it."""
    if isinstance(manager, DirectPlugins):
        return manager.events(name)
    return [e["event"] for e in manager.events.events(name, limit=1000)]


# -- restarts and quarantine -----------------------------------------------------------


@pytest.mark.timeout(60)
def test_crashing_every_call_is_quarantined_then_recovers_after_cooldown(sup: PluginManager) -> None:
    client = sup.handle("sup_flaky")
    assert client.generate_response("", "hi") == "flaky: hi"
    (scratch(sup, "sup_flaky") / "crash").touch()

    for n in range(1, POLICY.max_failures + 1):
        with pytest.raises(PluginCrashed) as info:
            client.generate_response("", "x")
        assert info.value.exit_code == 13 and "exited with status 13 during generate" in str(info.value)
        assert "sup_flaky: crashing in generate_response" in str(info.value)  # the last stderr line
        expected = "quarantined" if n == POLICY.max_failures else "restarting"
        assert client.state == expected and sup.state("sup_flaky") == expected
    assert client.stats.starts == POLICY.max_failures and not client.running

    # Quarantined: every kind of call fails fast, names the plugin and why, starts nothing.
    for call in (
        lambda: client.generate_response("", "x"),
        lambda: client.count_tokens("x"),
        lambda: list(client.stream_response("", "x")),
        client.start,
    ):
        began = time.monotonic()
        with pytest.raises(PluginUnavailable) as unavailable:
            call()
        assert time.monotonic() - began < 0.25  # no back-off sleep, no start (see stats.starts below)
        assert unavailable.value.reason == "quarantined"
        message = str(unavailable.value)
        assert message.startswith(f"plugin 'sup_flaky' is quarantined after {POLICY.max_failures} failures")
        assert "may start again in" in message and "exited with status 13" in message
    assert client.stats.starts == POLICY.max_failures

    # After the cool-down one probe start is allowed; it still crashes: straight back to quarantine.
    wait_until(lambda: client.state != "quarantined", POLICY.cooldown + 5, "the cool-down to end")
    assert client.state == "restarting"
    with pytest.raises(PluginCrashed):
        client.generate_response("", "probe")
    assert client.state == "quarantined"
    assert client.restart_gate.quarantines == 2

    # Fixed: after the next cool-down the probe succeeds and the plugin is ready again.
    (scratch(sup, "sup_flaky") / "crash").unlink()
    wait_until(lambda: client.state != "quarantined", POLICY.cooldown + 5, "the second cool-down to end")
    assert client.generate_response("", "back") == "flaky: back"
    assert client.state == "ready" and sup.state("sup_flaky") == "ready"

    # The circuit is closed again: one more crash is a restart, not an instant quarantine.
    (scratch(sup, "sup_flaky") / "crash_once").touch()
    with pytest.raises(PluginCrashed):
        client.count_tokens("a b")
    assert client.state == "restarting"
    assert client.count_tokens("a b") == 2
    assert client.state == "ready"

    events = events_of(sup, "sup_flaky")
    assert events.count("quarantined") == 2
    assert events.count("crashed") == POLICY.max_failures + 2


@pytest.mark.timeout(60)
def test_crashing_once_recovers_on_the_next_call_and_counts_the_restart(sup: PluginManager) -> None:
    client = sup.handle("sup_flaky")
    assert client.count_tokens("one two") == 2
    first_pid = client.pid
    assert client.state == "ready"
    (scratch(sup, "sup_flaky") / "crash_once").touch()

    with pytest.raises(PluginCrashed) as info:
        list(client.stream_response("", "x"))
    assert "crashing once in stream_response" in str(info.value)
    assert client.state == "restarting" and sup.state("sup_flaky") == "restarting"
    assert not client.running and gone(first_pid)  # type: ignore[arg-type]

    assert list(client.stream_response("", "again")) == ["flaky: ", "again"]
    assert client.state == "ready"
    assert client.pid != first_pid
    assert client.stats.starts == 2 and client.restart_gate.restarts == 1 and client.restart_gate.quarantines == 0

    report = probe_all(sup, ["sup_flaky"])[0]
    assert report["healthy"] and report["state"] == "ready"
    assert report["restarts"] == 1 and report["restarts_24h"] == 1
    assert report["crashes_24h"] == 1 and report["quarantines_24h"] == 0
    assert "crashing once" in report["last_error"]
    assert events_of(sup, "sup_flaky") == ["starting", "started", "crashed", "restarting", "started"]


@pytest.mark.timeout(60)
def test_back_to_back_generations_are_never_refused_as_busy(sup_plugins: DirectPlugins) -> None:
    """The next request goes out the moment a reply is read: the child must already be free."""
    client = sup_plugins.handle("sup_flaky")
    client.start()
    pid = client.pid
    for i in range(300):
        if i % 3 == 2:
            assert list(client.stream_response("", str(i))) == ["flaky: ", str(i)]
        else:
            assert client.generate_response("", str(i)) == f"flaky: {i}"
    assert client.pid == pid and client.stats.errors == 0 and client.stats.starts == 1


# -- deadlines -------------------------------------------------------------------------


def _stream(client: Any, message: str, received: list[str]) -> None:
    for chunk in client.stream_response("", message):
        received.append(chunk)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("call", "message", "phase", "seconds", "chunks"),
    [
        ("stream", "first:30", "first_chunk", QUICK.first_chunk, 0),
        ("stream", "idle:30", "idle", QUICK.idle, 1),
        ("stream", "flood", "total", QUICK.total, 20),
        ("generate", "first:30", "total", QUICK.total, 0),
        ("count_tokens", "hang", "count_tokens", QUICK.count_tokens, 0),
    ],
)
def test_each_deadline_fires_with_its_own_phase(
    quick_plugins: DirectPlugins, call: str, message: str, phase: str, seconds: float, chunks: int
) -> None:
    client = quick_plugins.handle("sup_timing")
    client.start()
    pid = client.pid
    received: list[str] = []
    began = time.monotonic()
    with pytest.raises(PluginTimeout) as info:
        if call == "stream":
            _stream(client, message, received)
        elif call == "generate":
            client.generate_response("", message)
        else:
            client.count_tokens(message)
    elapsed = time.monotonic() - began
    error = info.value
    assert type(error) is PluginTimeout
    assert error.phase == phase and error.seconds == seconds
    what = phase.replace("_", " ")
    assert str(error) == f"plugin 'sup_timing' timed out after {seconds:g}s (the {what} deadline)"
    assert seconds <= elapsed < seconds + MARGIN
    assert len(received) >= chunks and (chunks or not received)
    assert not client.running and gone(pid)  # type: ignore[arg-type]
    assert client.stats.timeouts == 1
    assert "deadline" in events_of(quick_plugins, "sup_timing")
    assert client.generate_response("", "fine") == "timing: fine"  # a fresh process answers
    assert client.pid != pid


@pytest.mark.timeout(60)
def test_start_deadline_is_a_start_timeout(home: Path) -> None:
    deadlines = dataclasses.replace(QUICK, start=1.5)
    with DirectPlugins(home, deadlines=deadlines, policy=POLICY) as plugins:
        client = plugins.handle("slow_start")
        began = time.monotonic()
        with pytest.raises(PluginStartTimeout) as info:
            client.count_tokens("x")
        elapsed = time.monotonic() - began
        assert isinstance(info.value, PluginTimeout) and info.value.phase == "start" and info.value.seconds == 1.5
        assert str(info.value) == "plugin 'slow_start' sent no hello within 1.5s"
        assert 1.5 <= elapsed < 1.5 + MARGIN
        assert not client.running and client.state == "restarting"
        assert plugins.events("slow_start").count("start_failed") == 1
        assert plugin_processes(str(home)) == []


@pytest.mark.timeout(60)
def test_ping_deadline_fires_for_a_frozen_process(quick_plugins: DirectPlugins) -> None:
    client = quick_plugins.handle("sup_flaky")
    client.start()
    pid = client.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    began = time.monotonic()
    with pytest.raises(PluginTimeout) as info:
        client.ping()
    elapsed = time.monotonic() - began
    assert info.value.phase == "ping" and str(info.value) == "plugin 'sup_flaky' timed out after 0.5s (the ping deadline)"
    assert QUICK.ping <= elapsed < QUICK.ping + MARGIN
    assert gone(pid)
    assert client.count_tokens("x y") == 2 and client.pid != pid


# -- cancel ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_cancel_from_another_thread_stops_the_stream_and_keeps_the_process(sup_plugins: DirectPlugins) -> None:
    client = sup_plugins.handle("slow_stream")
    client.start()
    pid = client.pid
    received: list[str] = []
    canceller: Worker | None = None
    stream = client.stream_response("", "go")
    with pytest.raises(PluginCancelled) as info:
        for chunk in stream:
            received.append(chunk)
            if len(received) == 3:
                canceller = Worker(stream.cancel)
                canceller.start()
            assert len(received) < 200, "the cancel did not stop the stream"
    ended = time.monotonic()
    assert canceller is not None
    canceller.join(5)
    assert canceller.error is None and canceller.ended_at is not None
    assert ended - canceller.ended_at < FAST.cancel_grace  # honoured, not waited out
    assert info.value.chars == len("".join(received))  # the runner counts; the caller holds the text
    assert received[:3] == ["0 ", "1 ", "2 "]
    assert received == [f"{i} " for i in range(len(received))]  # nothing lost or reordered
    assert str(info.value) == "plugin 'slow_stream' reply was cancelled"
    # The plugin honoured the cancel: same process, no restart, no error counted.
    assert client.running and client.pid == pid and client.state == "ready"
    assert client.generate_response("", "next") == "slow"
    assert client.pid == pid and client.stats.starts == 1 and client.stats.errors == 0
    assert client.restart_gate.consecutive == 0
    assert "restarting" not in events_of(sup_plugins, "slow_stream")


@pytest.mark.timeout(60)
def test_cancel_reply_read_before_it_is_registered_is_not_a_protocol_error(
    sup_plugins: DirectPlugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The canceller can lose the CPU right after writing its cancel request.

    The reading thread then meets the reply to that cancel first. It must still be
    recognised as the reply to a cancel (not taken for the stream's own answer, which
    would be a protocol error and cost the process). The pause below only widens that
    window so the race happens every time.
    """
    from runner.channel import Channel

    original = Channel.send

    def preempted_send(self: Channel, method: str, params: dict[str, Any], *args: Any, **kwargs: Any) -> int:
        msgid = original(self, method, params, *args, **kwargs)
        if method == "cancel":
            time.sleep(0.3)  # widen the race window; not a wait for state
        return msgid

    monkeypatch.setattr(Channel, "send", preempted_send)
    client = sup_plugins.handle("slow_stream")
    client.start()
    pid = client.pid
    received: list[str] = []
    stream = client.stream_response("", "go")
    with pytest.raises(PluginCancelled) as info:
        for chunk in stream:
            received.append(chunk)
            if len(received) == 2:
                Worker(stream.cancel).start()
            assert len(received) < 200, "the cancel did not stop the stream"
    assert info.value.chars == len("".join(received))  # the runner counts; the caller holds the text
    assert client.pid == pid and client.generate_response("", "next") == "slow"


@pytest.mark.timeout(60)
def test_breaking_out_of_a_stream_cancels_it_and_the_plugin_answers_next(sup_plugins: DirectPlugins) -> None:
    client = sup_plugins.handle("slow_stream")
    client.start()
    pid = client.pid
    received = []
    began = time.monotonic()
    for chunk in client.stream_response("", "go"):
        received.append(chunk)
        if len(received) == 2:
            break
    elapsed = time.monotonic() - began
    assert received == ["0 ", "1 "]
    # The abandoned generator was closed at the break: the call is over, the lock is free.
    assert client.state == "ready" and not client._turn.held
    assert elapsed < FAST.cancel_grace + MARGIN
    assert client.generate_response("", "next") == "slow"
    assert client.pid == pid and client.stats.starts == 1 and client.stats.errors == 0
    # Also an explicit close() of a stream that is still in its first chunk.
    stream = client.stream_response("", "go")
    assert next(stream) == "0 "
    stream.close()
    assert client.count_tokens("abc") == 3 and client.pid == pid


@pytest.mark.timeout(60)
def test_plugin_ignoring_a_cancel_is_killed_within_the_grace(sup_plugins: DirectPlugins) -> None:
    client = sup_plugins.handle("sup_deaf")
    client.start()
    pid = client.pid
    assert pid is not None
    marker = scratch(sup_plugins, "sup_deaf") / "blocking"
    marker.unlink(missing_ok=True)
    cancelled_at: list[float] = []

    def cancel_when_blocked() -> None:
        wait_until(marker.exists, 10, "the plugin to block")  # the request has arrived
        cancelled_at.append(time.monotonic())
        token.cancel()

    token = CancelToken()
    canceller = Worker(cancel_when_blocked)
    canceller.start()
    with pytest.raises(PluginCancelled) as info:
        client.generate_response("", "block", cancel=token)
    ended = time.monotonic()
    canceller.join(5)
    assert canceller.error is None and cancelled_at
    assert str(info.value) == f"plugin 'sup_deaf' ignored a cancel for {FAST.cancel_grace:g}s and was stopped"
    assert FAST.cancel_grace * 0.9 <= ended - cancelled_at[0] < FAST.cancel_grace + MARGIN
    assert gone(pid) and not client.running
    assert client.generate_response("", "hi") == "deaf: hi"
    assert client.pid not in (None, pid)


# -- stop and shutdown -----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_stop_of_a_plugin_ignoring_sigterm_ends_within_two_graces(sup_plugins: DirectPlugins, home: Path) -> None:
    client = sup_plugins.handle("sup_unstoppable")
    assert client.generate_response("", "hi") == "unstoppable: hi"
    pid = client.pid
    assert pid is not None
    began = time.monotonic()
    client.stop()
    elapsed = time.monotonic() - began
    # The polite request and SIGTERM were each given stop_grace; then SIGKILL.
    assert FAST.stop_grace <= elapsed < 2 * FAST.stop_grace + MARGIN
    assert gone(pid) and not client.running and client.state == "stopped"
    assert plugin_processes(str(home)) == []
    assert "stopped" in events_of(sup_plugins, "sup_unstoppable")


def _generating(client: Any, kind: str, first_chunk: threading.Event) -> Callable[[], Any]:
    def stream() -> list[str]:
        out = []
        for chunk in client.stream_response("", "go"):
            out.append(chunk)
            first_chunk.set()
        return out

    def generate() -> str:
        return client.generate_response("", "block")

    return stream if kind == "stream" else generate


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "kind"), [("slow_stream", "stream"), ("sup_deaf", "generate")])
def test_close_during_a_generation_stops_everything_and_restarts_nothing(home: Path, name: str, kind: str) -> None:
    manager = PluginManager([TEST_PLUGINS], home, deadlines=FAST, restart_policy=POLICY)
    try:
        client = manager.handle(name)
        client.start()  # started here, generated on another thread
        pid = client.pid
        marker = scratch(manager, name) / "blocking"
        marker.unlink(missing_ok=True)
        first_chunk = threading.Event()
        worker = Worker(_generating(client, kind, first_chunk))
        worker.start()
        if kind == "stream":
            assert first_chunk.wait(10), "no chunk arrived"
        else:
            wait_until(marker.exists, 10, "the plugin to block")
        closed_at = time.monotonic()
        manager.close()
        worker.join(10)
        assert not worker.is_alive(), "the generating thread is still blocked after close()"
        assert worker.ended_at is not None and worker.ended_at - closed_at < 1.0
        assert isinstance(worker.error, PluginUnavailable), worker.error or worker.result
        assert str(worker.error).startswith(f"plugin '{name}' was stopped during")
        assert gone(pid)  # type: ignore[arg-type]
        assert plugin_processes(str(home)) == []
        assert client.state == "stopped"
        with pytest.raises(PluginUnavailable) as info:
            client.count_tokens("x")
        assert info.value.reason == "closed"
        with pytest.raises(PluginUnavailable) as info:
            manager.handle(name)
        assert info.value.reason == "closed"
        assert plugin_processes(str(home)) == []  # nothing came back
        events = events_of(manager, name)
        assert "restarting" not in events and "crashed" not in events and "quarantined" not in events
        assert events.count("started") == 1
    finally:
        manager.close()


@pytest.mark.timeout(60)
def test_close_while_a_plugin_is_starting_leaves_no_process(home: Path) -> None:
    manager = PluginManager([TEST_PLUGINS], home, deadlines=FAST, restart_policy=POLICY)
    try:
        client = manager.handle("sup_slow_boot")  # 1.5 s to import
        worker = Worker(lambda: client.generate_response("", "hi"))
        worker.start()
        wait_until(lambda: client.state == "starting" and plugin_processes(str(home)), 10, "the start to begin")
        closed_at = time.monotonic()
        manager.close()
        worker.join(10)
        assert not worker.is_alive()
        assert isinstance(worker.error, PluginUnavailable), worker.error or worker.result
        assert worker.ended_at is not None and worker.ended_at - closed_at < 1.0  # not after the import
        assert plugin_processes(str(home)) == []
        assert client.state == "stopped"
        events = events_of(manager, "sup_slow_boot")
        assert "restarting" not in events and "quarantined" not in events and "start_failed" not in events
    finally:
        manager.close()


@pytest.mark.timeout(60)
def test_stop_while_a_plugin_is_starting_is_not_a_failure(sup_plugins: DirectPlugins, home: Path) -> None:
    client = sup_plugins.handle("sup_slow_boot")
    worker = Worker(lambda: client.generate_response("", "hi"))
    worker.start()
    wait_until(lambda: client.state == "starting" and plugin_processes(str(home)), 10, "the start to begin")
    stopped_at = time.monotonic()
    client.stop()
    worker.join(10)
    assert not worker.is_alive() and worker.ended_at is not None and worker.ended_at - stopped_at < 1.0
    assert isinstance(worker.error, PluginUnavailable) and worker.error.reason == "stopped", worker.error
    assert plugin_processes(str(home)) == []
    # A deliberate stop is no crash: no failure counted, no back-off, the next call just starts it.
    assert client.state == "stopped" and client.restart_gate.consecutive == 0 and client.stats.errors == 0
    assert client.generate_response("", "again") == "slow_boot: again"
    assert client.state == "ready"


# -- liveness --------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_check_idle_pings_running_idle_plugins_only(sup: PluginManager) -> None:
    assert sup.check_idle() == {}
    echo, flaky = sup.handle("echo"), sup.handle("sup_flaky")
    sup.handle("sup_timing")  # a handle, but never started: not pinged, not started
    echo.start()
    flaky.start()
    calls = (echo.stats.calls, flaky.stats.calls)
    assert sup.check_idle() == {"echo": True, "sup_flaky": True}
    assert (echo.stats.calls, flaky.stats.calls) == (calls[0] + 1, calls[1] + 1)
    assert not sup.handle("sup_timing").running


@pytest.mark.timeout(60)
def test_frozen_plugin_fails_the_liveness_ping_and_is_restarted(quick: PluginManager) -> None:
    echo, frozen = quick.handle("echo"), quick.handle("sup_flaky")
    echo.start()
    frozen.start()
    pid = frozen.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    began = time.monotonic()
    assert quick.check_idle() == {"echo": True, "sup_flaky": False}
    assert time.monotonic() - began < QUICK.ping + MARGIN
    assert gone(pid) and frozen.state == "restarting"
    assert frozen.stats.timeouts == 1 and "deadline" in events_of(quick, "sup_flaky")
    assert frozen.count_tokens("a b c") == 3 and frozen.pid != pid
    assert frozen.state == "ready"


@pytest.mark.timeout(60)
def test_busy_plugin_is_skipped_by_the_liveness_check(sup: PluginManager) -> None:
    busy, echo = sup.handle("slow_stream"), sup.handle("echo")
    busy.start()
    echo.start()
    pid = busy.pid
    chunks = threading.Event()
    stop = threading.Event()
    received: list[str] = []

    def consume() -> None:
        for chunk in busy.stream_response("", "go"):
            received.append(chunk)
            chunks.set()
            if stop.is_set():
                break

    worker = Worker(consume)
    worker.start()
    assert chunks.wait(10)
    assert busy.state == "busy"
    assert busy.check_alive() is None
    assert sup.check_idle() == {"echo": True}
    stop.set()
    worker.join(10)
    assert worker.error is None and not worker.is_alive()
    assert received == [f"{i} " for i in range(len(received))]
    assert busy.pid == pid and busy.check_alive() is True


@pytest.mark.timeout(60)
def test_liveness_check_from_the_thread_that_is_streaming_skips_the_busy_plugin(sup: PluginManager) -> None:
    """A UI loop may run its periodic check between two chunks, on the streaming thread.

    The plugin lock is re-entrant for that thread, so "can I take the lock" alone does
    not tell a busy plugin from an idle one; a ping sent in the middle of the stream
    would eat its chunks.
    """
    client = sup.handle("slow_stream")
    client.start()
    pid = client.pid
    received: list[str] = []
    results = []
    for chunk in client.stream_response("", "go"):
        received.append(chunk)
        if len(received) in (2, 4):
            results.append(client.check_alive())
            results.append(sup.check_idle())
        if len(received) == 6:
            break
    assert results == [None, {}, None, {}]
    assert received == [f"{i} " for i in range(6)]
    assert client.pid == pid and client.stats.errors == 0


# -- the health log --------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_crashes_restarts_and_quarantines_are_kept_in_health_db_across_runs(home: Path) -> None:
    with PluginManager([TEST_PLUGINS], home, deadlines=FAST, restart_policy=POLICY) as first:
        client = first.handle("sup_flaky")
        client.start()
        crash_file = scratch(first, "sup_flaky") / "crash"
        crash_file.touch()
        for _ in range(POLICY.max_failures):
            with pytest.raises(PluginCrashed):
                client.count_tokens("x")
        assert client.state == "quarantined"
        counts = first.events.counts("sup_flaky")
        assert counts["crashed"] == POLICY.max_failures
        assert counts["restarting"] == POLICY.max_failures - 1
        assert counts["quarantined"] == 1
        report = probe_all(first, ["sup_flaky"])[0]
        assert not report["healthy"] and report["state"] == "quarantined"
        assert "quarantined" in report["last_error"]
        assert (report["crashes_24h"], report["restarts_24h"], report["quarantines_24h"]) == (3, 2, 1)
        crash_file.unlink()

    # A later sandchat run: a new manager on the same home still sees the last 24 hours.
    with PluginManager([TEST_PLUGINS], home, deadlines=FAST, restart_policy=POLICY) as later:
        assert later.state("sup_flaky") == "stopped"  # quarantine is per run; the history is not
        counts = later.events.counts("sup_flaky")
        assert (counts["crashed"], counts["restarting"], counts["quarantined"]) == (3, 2, 1)
        report = probe_all(later, ["sup_flaky"])[0]
        assert report["healthy"] and report["state"] == "ready"
        assert report["crashes_24h"] == 3 and report["restarts_24h"] == 2 and report["quarantines_24h"] == 1
        assert report["restarts"] == 0  # this run's process has not been restarted
        assert later.events.counts("sup_flaky", since=time.time() + 60) == {}


# -- the CLI ---------------------------------------------------------------------------


def sandchat(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``sandchat --plugins-dir tests/plugins ARGS``."""
    return helpers.sandchat(home, "--plugins-dir", str(TEST_PLUGINS), *args)


@pytest.mark.timeout(120)
def test_cli_health_exit_status_json_keys_and_width(home: Path) -> None:
    healthy = sandchat(home, "plugins", "health", "echo", "sup_flaky")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.splitlines()[0].split()[:2] == ["NAME", "STATE"]

    (home / "scratch" / "sup_flaky").mkdir(parents=True, exist_ok=True)
    (home / "scratch" / "sup_flaky" / "crash").touch()
    names = ["echo", "sup_flaky", "syntax_error", "hard_exit_at_import", "init_raises", "slow_stream"]
    result = sandchat(home, "plugins", "health", *names)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[0] == "NAME"
    table = {line.split()[0]: line.split() for line in lines[1 : 1 + len(names)]}
    assert table["echo"][1] == "ready" and table["sup_flaky"][1] in ("restarting", "quarantined")
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, too_wide
    assert any(line.startswith("  sup_flaky: ") and "status 13" in line for line in lines)

    as_json = sandchat(home, "plugins", "health", "--json", *names)
    assert as_json.returncode == 1
    reports = json.loads(as_json.stdout)
    assert [r["name"] for r in reports] == names
    for report in reports:
        assert list(report) == list(HEALTH_KEYS), report["name"]
    by_name = {r["name"]: r for r in reports}
    assert by_name["echo"]["healthy"] is True and not by_name["syntax_error"]["healthy"]
    assert by_name["sup_flaky"]["crashes_24h"] >= 1  # at least the previous run's crash
    assert all(isinstance(r["stderr_tail"], list) for r in reports)

    only_bad = sandchat(home, "plugins", "health", "syntax_error")
    assert only_bad.returncode == 1
    unknown = sandchat(home, "plugins", "health", "no_such_plugin")
    assert unknown.returncode == 2 and "unknown plugin(s): no_such_plugin" in unknown.stderr


@pytest.mark.timeout(120)
def test_cli_disable_enable_and_logs(home: Path) -> None:
    assert sandchat(home, "prompt", "-p", "sup_flaky", "hi").stdout == "flaky: hi\n"

    disabled = sandchat(home, "plugins", "disable", "sup_flaky")
    assert disabled.returncode == 0 and "disabled" in disabled.stdout
    listing = json.loads(sandchat(home, "plugins", "list", "--json").stdout)
    assert {p["name"]: p["state"] for p in listing["plugins"]}["sup_flaky"] == "disabled"
    with PluginManager([TEST_PLUGINS], home) as manager:
        assert manager.state("sup_flaky") == "disabled"

    refused = sandchat(home, "prompt", "-p", "sup_flaky", "hi")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert "'sup_flaky'" in refused.stderr and "sandchat plugins enable sup_flaky" in refused.stderr
    health = sandchat(home, "plugins", "health", "--json", "sup_flaky")
    assert health.returncode == 1 and json.loads(health.stdout)[0]["state"] == "disabled"

    assert sandchat(home, "plugins", "enable", "sup_flaky").returncode == 0
    (home / "scratch" / "sup_flaky" / "crash_once").touch()
    crashed = sandchat(home, "prompt", "-p", "sup_flaky", "hi")
    assert crashed.returncode == 1 and "exited with status 13" in crashed.stderr

    logs = sandchat(home, "plugins", "logs", "sup_flaky")
    assert logs.returncode == 0, logs.stderr
    log_lines = logs.stdout.splitlines()
    assert sum("[sup_flaky] sup_flaky: ready in pid" in line for line in log_lines) == 2
    assert any(line.endswith("[sup_flaky] sup_flaky: crashing once in stream_response") for line in log_lines)
    assert len(sandchat(home, "plugins", "logs", "-n", "1", "sup_flaky").stdout.splitlines()) == 1
    no_log = sandchat(home, "plugins", "logs", "echo")
    assert no_log.returncode == 1 and "has no log yet" in no_log.stderr
