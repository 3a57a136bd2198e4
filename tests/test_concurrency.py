"""Many threads on plugin handles: deadlines that hold, cancels that hit their own call; one
PluginManager's final close.

Real plugin processes throughout, their handles built from a PluginConfig where only the
runner is tested. The raw children (the raw_plugin fixture, written from the protocol
document) misbehave on the wire in ways no LLMClient can: notifications that are not
chunks, cancel replies that do not end the call.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app import PluginManager
from runner import (
    CancelToken,
    Deadlines,
    Plugin,
    PluginCancelled,
    PluginError,
    PluginTimeout,
    PluginUnavailable,
    RestartPolicy,
)  # fmt: skip
from tests.helpers import FAST, MARGIN, TEST_PLUGINS, DirectPlugins, Worker, plugin_processes, wait_until

POLICY = RestartPolicy(backoff_initial=0.01, backoff_max=0.05, max_failures=1000, window=30, cooldown=0.5, stable_after=0.2)


@pytest.fixture
def sup(home: Path) -> Iterator[PluginManager]:
    with PluginManager([TEST_PLUGINS], home, deadlines=FAST, restart_policy=POLICY) as m:
        yield m


@pytest.fixture
def sup_plugins(home: Path) -> Iterator[DirectPlugins]:
    """As ``sup``, without the manager: runner.Plugin handles built from a PluginConfig."""
    with DirectPlugins(home, deadlines=FAST, policy=POLICY) as plugins:
        yield plugins


# A stream request is answered by an unknown notification every 0.3 s, forever (until stdin closes).
KEEPALIVE = """
import select
def handle(m):
    if m[2] != "stream":
        return w(pack([1, m[1], None, 1]))
    {first}
    while not select.select([0], [], [], 0.3)[0]:
        w(pack([2, "tick", {{"n": 1}}]))
"""


@pytest.mark.timeout(30)
@pytest.mark.parametrize("first, phase", [("", "first_chunk"), ("w(pack([2, 'chunk', [m[1], 'one']]))", "idle")])
def test_unknown_notifications_do_not_keep_a_stream_alive(raw_plugin: Callable[..., Plugin], first: str, phase: str) -> None:
    plugin = raw_plugin(KEEPALIVE.format(first=first), Deadlines(start=20, first_chunk=1, idle=1, total=8, cancel_grace=1, stop_grace=1))
    plugin.start()
    received: list[str] = []
    began = time.monotonic()
    with pytest.raises(PluginTimeout) as info:
        received.extend(plugin.stream_response("", "x"))
    elapsed = time.monotonic() - began
    assert info.value.phase == phase and info.value.seconds == 1
    assert str(info.value) == f"plugin 'raw' timed out after 1s (the {phase.replace('_', ' ')} deadline)"
    assert 1.0 <= elapsed < 1.0 + MARGIN  # far from the 8 s total the ticks used to stretch it to
    assert received == (["one"] if first else [])


# Answers a cancel (true) but never ends the stream it names.
DEAF_TO_CANCEL = """
def handle(m):
    if m[2] == "cancel":
        w(pack([1, m[1], None, True]))
    elif m[2] != "stream":
        w(pack([1, m[1], None, 1]))
"""


@pytest.mark.timeout(30)
def test_a_cancel_leaves_the_first_chunk_deadline_where_it_was(raw_plugin: Callable[..., Plugin]) -> None:
    # first chunk 2 s; the cancel at 1.5 s gives 5 s of grace: the first-chunk deadline fires first,
    # at 2 s from the request (a deadline restarted by the cancel's reply would fire at 3.5 s).
    plugin = raw_plugin(DEAF_TO_CANCEL, Deadlines(start=20, first_chunk=2, idle=2, total=8, cancel_grace=5, stop_grace=1))
    plugin.start()
    stream = plugin.stream_response("", "x")
    timer = threading.Timer(1.5, stream.cancel)  # schedules the attack; the test waits on the stream
    began = time.monotonic()
    timer.start()
    with pytest.raises(PluginTimeout) as info:
        list(stream)
    elapsed = time.monotonic() - began
    timer.join()
    assert info.value.phase == "first_chunk" and str(info.value) == "plugin 'raw' timed out after 2s (the first chunk deadline)"
    assert 2.0 <= elapsed < 3.0
    assert not plugin.running  # a missed deadline costs the process


@pytest.mark.timeout(60)
def test_a_cancel_aimed_at_the_running_call_spares_the_queued_one(sup_plugins: DirectPlugins) -> None:
    client = sup_plugins.handle("sup_timing")
    client.start()
    pid = client.pid
    token = CancelToken()
    first = Worker(lambda: client.generate_response("", "first:0.8", cancel=token))  # ends within the cancel's grace
    first.start()
    wait_until(lambda: client.state == "busy", 10, "the first call to run")
    second = Worker(lambda: client.generate_response("", "second"))
    second.start()
    wait_until(lambda: client._turn._waiting == 1, 10, "the second call to queue")
    token.cancel()
    first.join(10)
    second.join(10)
    assert isinstance(first.error, PluginCancelled) and str(first.error) == "plugin 'sup_timing' reply was cancelled"
    assert second.error is None and second.result == "timing: second"
    assert client.pid == pid and client.stats.errors == 0  # the plugin honoured it: same process


@pytest.mark.timeout(60)
def test_a_cancel_aimed_at_the_queued_call_spares_the_running_one(sup_plugins: DirectPlugins) -> None:
    client = sup_plugins.handle("sup_timing")
    client.start()
    pid = client.pid
    first = Worker(lambda: client.generate_response("", "first:1.5"))
    first.start()
    wait_until(lambda: client.state == "busy", 10, "the first call to run")
    token = CancelToken()
    second = Worker(lambda: client.generate_response("", "second", cancel=token))
    second.start()
    wait_until(lambda: client._turn._waiting == 1, 10, "the second call to queue")
    token.cancel()
    second.join(10)
    first.join(10)
    assert isinstance(second.error, PluginCancelled)
    assert str(second.error) == "plugin 'sup_timing' was cancelled while waiting for another call to end"
    assert second.ended_at is not None and first.ended_at is not None and second.ended_at < first.ended_at
    assert first.error is None and first.result == "timing: first:1.5"
    assert client.pid == pid and client.generate_response("", "after") == "timing: after"


@pytest.mark.timeout(60)
def test_a_cancel_of_a_finished_call_touches_no_other(sup_plugins: DirectPlugins) -> None:
    client = sup_plugins.handle("slow_stream")
    token = CancelToken()
    assert client.generate_response("", "x", cancel=token) == "slow"
    conn = client._conn
    assert conn is not None
    finished = conn._channel.last_id  # the id the finished call had
    received: list[str] = []
    for chunk in client.stream_response("", "go"):
        received.append(chunk)
        if len(received) == 3:
            token.cancel()  # the finished call's token...
            assert conn.cancel(finished) is False  # ...and a cancel naming its id: both reach nothing
        if len(received) == 20:
            break
    assert received == [f"{i} " for i in range(20)]
    # A token cancelled before its call: that call ends at once, without reaching the plugin.
    calls = client.stats.calls
    with pytest.raises(PluginCancelled, match="was cancelled before it started"):
        client.generate_response("", "x", cancel=token)
    assert client.stats.calls == calls and client.generate_response("", "y") == "slow"


@pytest.mark.timeout(60)
def test_a_call_queued_behind_a_slow_one_times_out_within_its_own_deadline(sup_plugins: DirectPlugins) -> None:
    client = sup_plugins.handle("sup_timing")
    client.start()
    pid = client.pid
    slow = Worker(lambda: client.generate_response("", "first:4"))  # past count_tokens' 3 s, within the 5 s total
    slow.start()
    wait_until(lambda: client.state == "busy", 10, "the slow call to run")
    began = time.monotonic()
    with pytest.raises(PluginTimeout) as info:
        client.count_tokens("queued")
    elapsed = time.monotonic() - began
    seconds = FAST.count_tokens
    assert (
        str(info.value) == f"plugin 'sup_timing' timed out after {seconds:g}s (the count tokens deadline) waiting for another call to end"
    )
    assert info.value.phase == "count_tokens" and seconds <= elapsed < seconds + MARGIN
    slow.join(10)
    assert slow.error is None and slow.result == "timing: first:4"
    assert client.pid == pid  # waiting too long is the caller's loss, not the process's
    assert client.count_tokens("abc") == 3


@pytest.mark.timeout(60)
def test_a_stream_queued_behind_a_slow_call_counts_the_wait_against_its_total(home: Path) -> None:
    deadlines = Deadlines(start=20, first_chunk=3, idle=3, total=2, count_tokens=3, ping=3, cancel_grace=1, stop_grace=1)
    with DirectPlugins(home, deadlines=deadlines, policy=POLICY) as plugins:
        client = plugins.handle("sup_timing")
        client.start()
        slow = Worker(lambda: client.generate_response("", "first:1.5"))
        slow.start()
        wait_until(lambda: client.state == "busy", 10, "the slow call to run")
        began = time.monotonic()
        with pytest.raises(PluginTimeout) as info:
            list(client.stream_response("", "idle:1"))  # 1.5 s of waiting + 1 s of stream > 2 s total
        elapsed = time.monotonic() - began
        slow.join(10)
        assert info.value.phase == "total" and 2.0 <= elapsed < 2.0 + MARGIN
        assert slow.error is None


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _race_client_against_close(home: Path, rng: random.Random) -> list[BaseException]:
    """Threads take handles and call while the main thread closes; returns what they raised."""
    manager = PluginManager([TEST_PLUGINS], home, deadlines=FAST, restart_policy=POLICY)
    errors: list[BaseException] = []
    go = threading.Barrier(5)

    def use() -> None:
        go.wait()
        try:
            for _ in range(3):
                client = manager.handle(rng.choice(("echo", "sup_jitter")))
                client.count_tokens("a few words")
        except PluginUnavailable as exc:
            if exc.reason not in ("closed", "stopped"):
                errors.append(exc)
        except PluginError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    go.wait()
    if rng.random() < 0.7:
        time.sleep(rng.uniform(0, 0.15))  # where the close lands in the threads' work: the race itself
    manager.close()
    for thread in threads:
        thread.join(30)
    for client in manager.handles().values():
        assert client.state == "stopped" and client.pid is None
    return errors


@pytest.mark.timeout(240)
def test_client_racing_close_leaves_no_process_and_no_fd(home: Path) -> None:
    rng = random.Random(int(os.environ.get("SOAK_SEED", random.randrange(2**32))))
    _race_client_against_close(home, rng)  # the first round imports and opens what stays open (sqlite, bytecode)
    before = _open_fds()
    for _ in range(25):
        assert _race_client_against_close(home, rng) == []
        assert plugin_processes(str(home)) == []
    assert _open_fds() - before == set()


@pytest.mark.timeout(30)
def test_a_closed_manager_refuses_handles_and_calls(sup: PluginManager) -> None:
    client = sup.handle("echo")
    assert client.generate_response("", "hi") == "echo: hi"
    sup.close()
    with pytest.raises(PluginUnavailable) as info:
        client.generate_response("", "again")
    assert info.value.reason == "closed"
    with pytest.raises(PluginUnavailable) as info:
        sup.handle("echo")
    assert info.value.reason == "closed" and str(info.value) == "plugin 'echo' cannot start: sandchat is shutting down"
    sup.close()  # twice is fine


@pytest.mark.timeout(30)
def test_home_reads_config_toml(home: Path) -> None:
    (home / "config.toml").write_text(
        'default_plugin = "echo"\ndisabled = ["sup_deaf"]\nallow_unsandboxed = true\n[plugins.echo]\ntotal = 1.5\nmax_reply = 1000\n'
    )
    with PluginManager([TEST_PLUGINS], home) as manager:
        assert manager.settings.default_plugin == "echo" and manager.settings.allow_unsandboxed
        assert manager.is_disabled("sup_deaf") and manager.state("sup_deaf") == "disabled"
        config = manager.launch_config("echo")
        assert config.deadlines.total == 1.5 and config.max_reply == 1000
        assert manager.handle("echo").generate_response("", "hi") == "echo: hi"
    with PluginManager([TEST_PLUGINS], home, environ={"SANDCHAT_DISABLE_PLUGINS": "echo"}) as manager:
        assert manager.is_disabled("echo") and manager.is_disabled("sup_deaf")
