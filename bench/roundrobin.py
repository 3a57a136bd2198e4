"""Figures 10 and 11: many warm plugins, called in turn (round-robin) and then left idle.

Forty copies of the trivial plugin run under one ``PluginManager``, each started and
used before anything is measured.

* Figure 10: ``count_tokens`` round-robin over the forty (each call goes to the next
  plugin), against one hot client (the first of them, called back to back), in
  interleaved blocks. Target: round-robin within 1.5× of the hot client. 10b, for
  reference: the CPU the forty children used per call in each kind of block, read
  from ``/proc/PID/stat`` (a child that spins after a reply shows here).
* Figure 11: the CPU the forty children used over an idle window (10 s; 1 s quick)
  right after each was called once, as a fraction of one core: ``utime + stime`` from
  ``/proc/PID/stat``. Target: at most 1 % of one core for the forty together. 11b, for
  reference: the host's own CPU (``getrusage(RUSAGE_SELF)``, every host thread) in the
  same window.

Round-robin costs more than a hot client even where nothing spins (one CPU): each call
switches to another process, whose caches and TLB entries are cold. 10c, for
reference, is that floor: a raw 1-byte pipe ping-pong round-robin over forty plain
Python peers against one of them, in the same run.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any

from bench.common import TRIVIAL_PLUGIN, RawPeer, Row, Settings, Stat, Workspace, interleave, sandbox_note

PLUGINS = 40
SHORT_TEXT = "hello world"
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (every thread), in seconds: fields 14 and 15 of its stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICK


def children_cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def host_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_plugins(ws: Workspace, count: int) -> list[Any]:
    """``count`` started clients of the trivial plugin under one manager, each called once."""
    names = [f"benchrr{i:02d}" for i in range(count)]
    for name in names:
        (ws.plugins / f"{name}_plugin.py").write_text(TRIVIAL_PLUGIN)
    manager = ws.manager()
    clients = [manager.handle(name) for name in names]
    expected = (len(SHORT_TEXT) + 3) // 4
    for client in clients:
        client.start()
        if client.hello.get("sandbox", {}).get("profile") != "untrusted" or client.count_tokens(SHORT_TEXT) != expected:
            raise RuntimeError(f"plugin {client.hello.get('plugin')} did not start sandboxed and answer")
    return clients


def idle_share(clients: list[Any], seconds: float) -> tuple[float, float]:
    """The fraction of one core the children, then the host, used over ``seconds`` of idleness."""
    for client in clients:
        client.count_tokens(SHORT_TEXT)  # each used once, just before the window
    pids = [client.pid for client in clients]
    children, host, began = children_cpu(pids), host_cpu(), time.monotonic()
    time.sleep(seconds)
    children, host, elapsed = children_cpu(pids) - children, host_cpu() - host, time.monotonic() - began
    return children / elapsed, host / elapsed


def raw_blocks(peers: list[RawPeer], count: int, samples: dict[str, list[float]]) -> None:
    """``count`` raw 1-byte round trips to the first peer, then ``count`` to each peer in turn."""
    samples["raw_hot"].extend(peers[0].ping_samples(count))
    out, clock, write, read = samples["raw_rr"].append, time.perf_counter_ns, os.write, os.read
    for i in range(count):
        peer = peers[i % len(peers)]
        t0 = clock()
        write(peer.w, b"x")
        read(peer.r, 1)
        out((clock() - t0) / 1000)


def run(settings: Settings, placement: str) -> list[Row]:
    reps = settings.pick(3, 15)
    block = settings.pick(400, 2000)  # calls per block: 10 or 50 rounds of the forty
    window = settings.pick(1, 10)
    samples: dict[str, list[float]] = {"hot": [], "rr": [], "hot_cpu": [], "rr_cpu": [], "raw_hot": [], "raw_rr": []}
    with Workspace() as ws:
        clients = start_plugins(ws, PLUGINS)
        idle, host = idle_share(clients, window)
        pids = [client.pid for client in clients]
        calls = [client.count_tokens for client in clients]
        clock = time.perf_counter_ns

        def timed_block(name: str, order: list[Any]) -> None:
            out = samples[name].append
            cpu = children_cpu(pids)
            for count in order:
                t0 = clock()
                count(SHORT_TEXT)
                out((clock() - t0) / 1000)
            samples[name + "_cpu"].append((children_cpu(pids) - cpu) / len(order) * 1e6)

        hot_order = [calls[0]] * block
        rr_order = [calls[i % PLUGINS] for i in range(block)]
        peers = [RawPeer("ping") for _ in range(PLUGINS)]
        blocks = (lambda: timed_block("hot", hot_order), lambda: timed_block("rr", rr_order),
                  lambda: raw_blocks(peers, block, samples))  # fmt: skip
        try:
            interleave(1, *blocks)  # warm-up
            for kept in samples.values():
                kept.clear()
            interleave(reps, *blocks)
        finally:
            for peer in peers:
                peer.close()
        note = sandbox_note(clients[0])
    hot, rr = Stat.of(samples["hot"]), Stat.of(samples["rr"])
    hot_cpu, rr_cpu = Stat.of(samples["hot_cpu"]), Stat.of(samples["rr_cpu"])
    raw_hot, raw_rr = Stat.of(samples["raw_hot"]), Stat.of(samples["raw_rr"])
    idle_stat, host_stat = Stat(idle * 100, idle * 100, 1), Stat(host * 100, host * 100, 1)
    return [
        Row("10", f"count_tokens round-robin over {PLUGINS} warm plugins", "µs", rr, "one hot client", hot,
            rr.median / hot.median, "<=", 1.5, note, placement),
        Row("10b", f"  the {PLUGINS} children's CPU per round-robin call", "µs", rr_cpu, "per hot-client call", hot_cpu,
            None, "", None, "informational: figure 10b is from /proc/PID/stat (10 ms ticks), per block", placement),
        Row("10c", f"  floor: raw 1-byte ping-pong round-robin over {PLUGINS} peers", "µs", raw_rr, "one raw peer", raw_hot,
            raw_rr.median / raw_hot.median, "", None, "", placement),
        Row("11", f"CPU of {PLUGINS} warm plugins left idle ({window} s)", "% of a core", idle_stat, "-", None,
            idle, "<=", 0.01, note or f"figure 11's ratio is the fraction of one core, not a ratio to a baseline; it counts "
            f"{1000 / _TICK:g} ms ticks, so 0 means under {100 / _TICK / window:.2g} % of a core", placement),
        Row("11b", f"  the host's own CPU in that window ({window} s)", "% of a core", host_stat, "-", None,
            None, "", None, "", placement),
    ]  # fmt: skip
