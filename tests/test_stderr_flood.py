"""A plugin flooding its stderr costs the host next to no CPU: the reader drains it under a budget.

Past the budget the reader stops reading, so the plugin's writes block on the full pipe:
the back pressure falls on the plugin. Its protocol pipes are separate, so it still
answers calls, its deadlines still hold, and it still stops promptly; a plugin that
writes a few lines per call loses none of them. Real plugin processes through the
public API (handles built from a PluginConfig, no manager), and real pipes (written by a
plain subprocess) for the capture's own counters.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runner import PluginCrashed, PluginTimeout
from runner.cleantext import clean_text
from runner.stderr import StderrCapture
from tests.helpers import FAST, DirectPlugins

pytestmark = pytest.mark.timeout(60)

WINDOW = 3.0  # seconds of flooding measured
#: The bound asserted on the host's CPU over the window, as a fraction of one core; the
#: target is 0.1. Measured: about 0.003 with the budget, 0.99 without it. It does not get
#: flaky on a loaded 2-core machine because it is CPU time, not wall time, that is measured:
#: the host's work is capped by the budget (at most 256 KiB + 64 KiB/s read, about 0.5 MiB
#: over the window, whatever the plugin writes), so a busy machine gives the reader less
#: time, never more work; even a cost per byte several times higher stays under this bound.
CPU_BOUND = 0.05
SUMMARY = re.compile(r" \[sandchat\] (\S+): stderr over budget \(.*\): reading paused ([\d.]+) s(?: \(([\d.]+) s in all\))?; (.*)$")


def host_cpu() -> float:
    """CPU seconds this process (every thread of it, not its children) has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summaries(log: Path) -> list[re.Match[str]]:
    return [m for m in map(SUMMARY.search, log.read_text().splitlines()) if m]


def paused_in_all(log: Path) -> float:
    """The seconds reading was paused, from the last summary line in the log."""
    last = summaries(log)[-1]
    return float(last.group(3) or last.group(2))


def reader_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"stderr-{name}" and t.is_alive()]


# -- a real plugin flooding, through the public API ---------------------------------------------------


@pytest.mark.parametrize("kind", ["plain", "escapes", "tiny", "bytes", "blocks"])
def test_an_idle_plugin_flooding_stderr_costs_the_host_well_under_a_tenth_of_a_core(plugins: DirectPlugins, home: Path, kind: str) -> None:
    client = plugins.handle("stderr_flood")
    assert client.count_tokens("ab") == 2  # started: its start-up is not in the window
    began, cpu = time.monotonic(), host_cpu()
    assert client.generate_response("", f"flood {kind}") == "flooding"  # its thread floods; we idle
    time.sleep(WINDOW)  # the measuring window, of fixed length
    used = (host_cpu() - cpu) / (time.monotonic() - began)
    client.stop()
    assert used < CPU_BOUND, f"the host used {used:.3f} of a core while the plugin flooded ({kind})"
    log = home / "logs" / "stderr_flood.log"
    assert summaries(log), "the log says nothing of the budget"
    assert summaries(log)[-1].group(1) == "stderr_flood"
    assert paused_in_all(log) >= WINDOW / 2  # reading was paused most of the window: the plugin waited
    assert not log.with_name("stderr_flood.log.1").exists()  # well under 1 MiB logged: no churning rotation
    # When it stopped, the rest of its pipe was read: it fits the log, unless it is empty lines
    # (64 KiB of them cost 2 MiB, far more than the 256 KiB the log takes then).
    dropped = summaries(log)[-1].group(4)
    if kind == "tiny":
        amount = re.fullmatch(r"([\d.]+) KiB dropped", dropped)
        assert amount and 1 <= float(amount.group(1)) <= 64 * 2, dropped
    else:
        assert dropped == "nothing dropped"


def test_a_flooding_plugin_still_answers_calls_and_stops_promptly(plugins: DirectPlugins) -> None:
    client = plugins.handle("stderr_flood")
    assert client.generate_response("", "flood") == "flooding"
    slowest = 0.0
    for i in range(30):
        began = time.monotonic()
        assert client.count_tokens("x" * i) == i
        assert client.generate_response("", f"q{i}") == f"flood: q{i}"
        slowest = max(slowest, time.monotonic() - began)
    assert slowest < 1.0  # calls are not held up behind the stderr pipe (they take a millisecond or so)
    assert any("flood: spam" in line for line in client.stderr_tail(5))
    began = time.monotonic()
    client.stop()  # its reader is paused, its flooding thread blocked in write(2)
    assert time.monotonic() - began < 1.0
    assert not reader_threads("stderr_flood")  # the reader saw the writers go and ended


def test_a_plugin_blocked_writing_stderr_in_a_call_meets_its_deadline_and_is_killed(plugins: DirectPlugins) -> None:
    client = plugins.handle("stderr_flood")
    assert client.count_tokens("ab") == 2
    pid = client.pid
    began = time.monotonic()
    with pytest.raises(PluginTimeout) as info:
        client.generate_response("", "block 64")  # 64 MiB of stderr: blocked on the pipe, far over budget
    elapsed = time.monotonic() - began
    assert info.value.phase == "total" and FAST.total * 0.9 <= elapsed < FAST.total + 2
    assert not client.running and not reader_threads("stderr_flood")
    assert any("flood: spam" in line for line in info.value.stderr_tail)
    assert client.count_tokens("abcd") == 4 and client.pid != pid  # a fresh process


def test_a_plugin_crashing_while_over_budget_shows_its_last_words(plugins: DirectPlugins, home: Path) -> None:
    """Its last line sits behind a full pipe when it dies: the reader reads the rest at once."""
    client = plugins.handle("stderr_flood")
    with pytest.raises(PluginCrashed) as info:
        client.generate_response("", "die 256")  # 256 KiB of spam, past the budget, then a last line and exit 3
    assert info.value.exit_code == 3
    assert str(info.value).endswith("(stderr: last words before dying)")
    assert client.stderr_tail(1) == ("last words before dying",)
    assert summaries(home / "logs" / "stderr_flood.log")  # it was over budget: reading had paused
    log = (home / "logs" / "stderr_flood.log").read_text().splitlines()
    assert log[-1].endswith(" [stderr_flood] last words before dying") or log[-2].endswith(" [stderr_flood] last words before dying")


def test_a_chatty_plugin_loses_nothing(plugins: DirectPlugins, home: Path) -> None:
    client = plugins.handle("noisy")
    for i in range(30):
        assert client.generate_response("", f"q{i}") == f"noisy answer to q{i}"
    assert list(client.stream_response("", "q")) == ["one", " two", " three"]
    client.stop()  # the reader reaches EOF: everything written has been read
    tail = client.stderr_tail(40)
    assert sum("noisy: generating" in line for line in tail) == 30
    assert "noisy: hello from import" in tail[0] and tail[-2].endswith("noisy chunk  three")  # then raw bytes, no newline
    log = (home / "logs" / "noisy.log").read_text()
    assert log.count("noisy: generating") == 30 and log.count("noisy chunk") == 3
    assert "noisy: hello from import" in log and "over budget" not in log


# -- the capture on a real pipe, written by a plain subprocess ------------------------------------------


def writer(code: str) -> subprocess.Popen[bytes]:
    """A Python process running ``code`` with ``w`` = its fd 2 (a pipe to us), unbuffered."""
    script = "import os, sys, time\nw = lambda b: os.write(2, b)\n" + code
    return subprocess.Popen([sys.executable, "-I", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, bufsize=0)  # fmt: skip


def finished(proc: subprocess.Popen[bytes], capture: StderrCapture) -> None:
    proc.kill()
    proc.wait()
    capture.join(5)
    proc.stderr.close()  # type: ignore[union-attr]


def test_the_budget_holds_and_the_counters_say_so(tmp_path: Path) -> None:
    proc = writer("line = b'x' * 99 + b'\\n'\nwhile True: w(line)")
    log = tmp_path / "unit.log"
    began = time.monotonic()
    capture = StderrCapture("unit", proc.stderr, log, rate=32 * 1024, burst=64 * 1024)  # type: ignore[arg-type]
    try:
        assert capture.wait_for(lambda s: s["seconds_paused"] >= 1.0, timeout=20)
        stats, elapsed = capture.stats(), time.monotonic() - began
        assert stats["rate"] == 32 * 1024 and stats["burst"] == 64 * 1024
        # what was read: the burst, the rate since, and at most one read beyond (costs are charged after it)
        assert 64 * 1024 <= stats["bytes_read"] <= 64 * 1024 + 32 * 1024 * elapsed + 64 * 1024
        assert stats["lines"] * 100 <= stats["bytes_read"] and stats["bytes_dropped"] == 0
        assert stats["cpu_seconds"] < 0.1 * elapsed and not stats["done"]
        killed = time.monotonic()
        proc.kill()
        assert capture.wait_for(lambda s: s["done"], timeout=5)
        assert time.monotonic() - killed < 1.0  # a paused reader notices the writer gone at once
    finally:
        finished(proc, capture)
    last = summaries(log)[-1]
    assert last.group(1) == "unit" and paused_in_all(log) >= 1.0 and last.group(4) == "nothing dropped"
    assert log.read_text().count(" [unit] " + "x" * 99 + "\n") == capture.stats()["lines"]


def test_a_burst_within_budget_is_read_at_once_and_logged_whole(tmp_path: Path) -> None:
    proc = writer("for i in range(1500): w(b'%05d ' % i + b'y' * 94 + b'\\n')\nw(b'no newline at the end')")
    log = tmp_path / "unit.log"
    capture = StderrCapture("unit", proc.stderr, log)  # type: ignore[arg-type]  # the default budget: 256 KiB at once
    try:
        assert capture.wait_for(lambda s: s["done"], timeout=20)
    finally:
        finished(proc, capture)
    stats = capture.stats()
    assert stats["bytes_read"] == 1500 * 101 + 21 and stats["lines"] == 1501
    assert stats["seconds_paused"] == 0 and stats["bytes_dropped"] == 0
    lines = log.read_text().splitlines()
    assert [line.split(" [unit] ", 1)[1][:5] for line in lines[:1500]] == [f"{i:05d}" for i in range(1500)]
    assert lines[-1].endswith(" [unit] no newline at the end") and len(lines) == 1501  # no summary line
    assert capture.tail(1) == ("no newline at the end",)


def test_long_lines_are_split_and_lines_are_cleaned_one_by_one(tmp_path: Path) -> None:
    hostile = [
        b"\x1b[31mred\x1b[0m plain",
        b"\x1b]0;an OSC left open",  # cleaning must not run on into the next line
        b"the next line survives",
        b"bell\x07 and \x9b2J C1 CSI, \x1bc reset",
        b"\xff\xfe not utf-8",
    ]
    data = b"A" * 10000 + b"\n" + b"\n".join(hostile) + b"\n" + b"B" * 8192 + b"C" * 5
    proc = writer(f"w({data!r})")
    capture = StderrCapture("unit", proc.stderr, tmp_path / "unit.log")  # type: ignore[arg-type]
    try:
        assert capture.wait_for(lambda s: s["done"], timeout=20)
    finally:
        finished(proc, capture)
    expected = ["A" * 4096, "A" * 4096, "A" * 1808]
    expected += [clean_text(line.decode("utf-8", "replace"), keep_newlines=False) for line in hostile]
    expected += ["B" * 4096, "B" * 4096, "C" * 5]
    assert capture.tail(40) == tuple(expected)
    assert expected[3:6] == ["red plain", "", "the next line survives"]
    log = (tmp_path / "unit.log").read_text().splitlines()
    assert [line.split(" [unit] ", 1)[1] for line in log] == expected


def test_a_plugin_writing_a_byte_at_a_time_does_not_make_the_host_read_a_byte_at_a_time(tmp_path: Path) -> None:
    proc = writer("while True: w(b'z')")
    capture = StderrCapture("unit", proc.stderr, None)  # type: ignore[arg-type]
    try:
        assert capture.wait_for(lambda s: s["seconds_paused"] >= 1.0, timeout=20)
        stats = capture.stats()
        assert stats["bytes_read"] >= 256 * 1024 and stats["cpu_seconds"] < 0.2
        assert all(line == "z" * 4096 for line in capture.tail(40))  # split as lines of 4096
    finally:
        finished(proc, capture)


def test_the_host_closing_the_stream_under_a_paused_reader_ends_it_and_counts_the_rest(tmp_path: Path) -> None:
    """What the connection does when a reader has not ended half a second after a kill."""
    proc = writer("while True: w(b'q' * 63 + b'\\n')")
    log = tmp_path / "unit.log"
    capture = StderrCapture("unit", proc.stderr, log, rate=16 * 1024, burst=16 * 1024)  # type: ignore[arg-type]
    try:
        assert capture.wait_for(lambda s: s["paused"], timeout=20)
        closed = time.monotonic()
        proc.stderr.close()  # type: ignore[union-attr]  # the writer is still alive
        assert capture.wait_for(lambda s: s["done"], timeout=5)
        assert time.monotonic() - closed < 1.0
    finally:
        finished(proc, capture)
    assert capture.stats()["bytes_dropped"] >= 32 * 1024  # a full pipe, at least, was left unread
    assert summaries(log)[-1].group(4).endswith(" KiB dropped")


@pytest.mark.timeout(30)
def test_a_ctrl_c_inside_the_readers_start_closes_its_fd_exactly_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thread.start() waits for the new thread, so a Ctrl-C can land after the reader began:
    both used to close the reader's fd, and the second close hit whatever reused the number
    (once the chat's epoll fd, which ended the chat)."""
    import os

    read_end, write_end = os.pipe()
    closed: list[int] = []
    real_close, real_start = os.close, threading.Thread.start

    def counting_close(fd: int) -> None:
        closed.append(fd)
        real_close(fd)

    def start_then_interrupt(self: threading.Thread) -> None:
        real_start(self)
        raise KeyboardInterrupt  # what SIGINT raises in the waiting main thread

    monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
    monkeypatch.setattr(os, "close", counting_close)
    with open(read_end, "rb", buffering=0) as stream, pytest.raises(KeyboardInterrupt):
        StderrCapture("interrupted", stream, None)
    monkeypatch.setattr(threading.Thread, "start", real_start)
    real_close(write_end)  # EOF: a reader that owns the fd ends and closes it
    for thread in [t for t in threading.enumerate() if t.name == "stderr-interrupted"]:
        thread.join(10)
    duplicates = [fd for fd in closed if fd != read_end]
    assert len(duplicates) == 1, closed  # the reader's duplicate, closed once, by whoever owned it
