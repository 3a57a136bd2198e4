"""Figure 12 (12, 12b, 12c, 12d): a network-profile plugin's connects, made by the host.

A network-profile child creates no socket: each connect is asked of the host over the
egress channel (``runner/child/netshim.py`` in the child, ``runner/egress.py`` on the host),
which connects and passes the socket back with SCM_RIGHTS. A loopback listener (a
thread of this process) accepts each connection and closes it at once.

* Figure 12: ``socket.create_connection(("127.0.0.1", P))`` and ``close()``, timed per
  connect inside a sandboxed network-profile plugin granted ``127.0.0.1:P``, against
  the same loop in a plain ``python -I`` process (no runner, no sandbox, real sockets),
  in interleaved blocks. Target (issue 7's figure 12): the median through the host at
  most 2× the direct median plus 1 ms; the row shows the ratio that allows.
* Figure 12b: the same with ``("localhost", P)`` (granted ``localhost:P``): the host
  checks the name against the grant and resolves it (a literal needs no lookup).
* Figure 12c: a plugin that uses no network pays nothing for the egress code: the
  network-profile plugin's ``count_tokens`` round trip (no connects) against the
  untrusted trivial plugin's, interleaved. Target: within 1.2×.
* Figure 12d: the first 200 connects of a fresh plugin process, measured before the
  blocks of figure 12; same target. The host records a health-log event (SQLite, from a
  thread of its own) for each of a process's first 200 connections: these are the
  connects a chat plugin makes, figures 12 and 12b the broker alone.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bench.common import PLUGIN_NAME, TRIVIAL_PLUGIN, PipePeer, Row, Settings, Stat, Workspace, interleave, sandbox_note
from runner.egress import _MAX_EVENTS

if TYPE_CHECKING:
    from runner import Plugin

EGRESS_NAME = "benchegress"
SHORT_TEXT = "hello world"
LOGGED = _MAX_EVENTS  # a process's first connections (and refusals) each write a health-log event

#: The loop both sides run: the plugin child (through the host) and the direct peer.
CONNECT_LOOP = '''
def connect_loop(host, port, count):
    """``count`` connects to (host, port), each closed at once: microseconds each."""
    clock, connect, out = time.perf_counter_ns, socket.create_connection, []
    for _ in range(count):
        t0 = clock()
        connect((host, port)).close()
        out.append((clock() - t0) / 1000)
    return out
'''

#: The trivial plugin, plus the connect loop behind generate_response ("HOST PORT COUNT").
EGRESS_PLUGIN = (
    TRIVIAL_PLUGIN.replace("from llm_utils import LLMClient", "import json\nimport socket\nimport time\n\nfrom llm_utils import LLMClient")
    .replace("class BenchTrivial(LLMClient):", CONNECT_LOOP + "\n\nclass BenchEgress(LLMClient):")
    .replace("        return user_message\n", "        host, port, count = user_message.split()\n"
             "        return json.dumps(connect_loop(host, int(port), int(count)))\n", 1)
)  # fmt: skip
if "class BenchEgress" not in EGRESS_PLUGIN or "return json.dumps(connect_loop(" not in EGRESS_PLUGIN:
    raise RuntimeError("bench.common.TRIVIAL_PLUGIN changed: bench/egress.py could not add its connect loop to it")

#: The baseline: a plain Python process running the same loop on request, one JSON line back.
DIRECT_PEER = (
    "import json, os, socket, sys, time\n"
    + CONNECT_LOOP
    + r"""
r, w = int(sys.argv[1]), int(sys.argv[2])
with os.fdopen(r, "r") as asks, os.fdopen(w, "w") as answers:
    for line in asks:
        host, port, count = line.split()
        answers.write(json.dumps(connect_loop(host, int(port), int(count))) + "\n")
        answers.flush()
"""
)


class Listener:
    """A loopback TCP listener; its thread accepts each connection and closes it at once."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, name="bench-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()
            self.accepted += 1

    def drain(self, at_least: int) -> None:
        """Wait (at most 5 s) until ``at_least`` connections were accepted: every connect timed was real."""
        deadline = time.monotonic() + 5
        while self.accepted < at_least:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the listener accepted {self.accepted} connections, fewer than the {at_least} timed")
            time.sleep(0.01)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._thread.join(5)
        self.sock.close()


class DirectPeer(PipePeer):
    """The baseline's process: ``connect_loop`` in plain Python, asked over two pipes."""

    def __init__(self) -> None:
        super().__init__(DIRECT_PEER)
        self._buffered = b""

    def loop(self, host: str, port: int, count: int) -> list[float]:
        os.write(self.w, f"{host} {port} {count}\n".encode())
        while b"\n" not in self._buffered:
            chunk = os.read(self.r, 1 << 16)
            if not chunk:
                raise RuntimeError("the direct peer exited")
            self._buffered += chunk
        line, _, self._buffered = self._buffered.partition(b"\n")
        return json.loads(line)

    def __enter__(self) -> DirectPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_clients(ws: Workspace, port: int) -> tuple[Plugin, Plugin]:
    """The untrusted trivial plugin and the network-profile one granted ``127.0.0.1:P`` and ``localhost:P``."""
    from app.grants import file_sha256

    path = ws.plugins / f"{EGRESS_NAME}_plugin.py"
    path.write_text(EGRESS_PLUGIN)
    manager = ws.manager()
    manager.grants.grant(EGRESS_NAME, file_sha256(path), network=(f"127.0.0.1:{port}", f"localhost:{port}"), env=())
    untrusted, network = manager.handle(PLUGIN_NAME), manager.handle(EGRESS_NAME)
    for client, profile in ((untrusted, "untrusted"), (network, "network")):
        client.start()
        if client.hello.get("sandbox", {}).get("profile") != profile:
            raise RuntimeError(f"{client.hello.get('plugin')} did not start in the {profile} profile: {client.hello.get('sandbox')}")
    return untrusted, network


def connect_target(direct: float) -> float:
    """The ratio figure 12's target allows: (2 × direct + 1 ms) / direct, rounded down to 0.01."""
    return math.floor((2 + 1000 / direct) * 100) / 100


def measure_connects(settings: Settings, network: Plugin, port: int) -> dict[str, list[float]]:
    """A fresh process's first (logged) connects, then interleaved blocks: direct and through the host."""
    reps, block = settings.pick(2, 15), settings.pick(40, 200)
    samples: dict[str, list[float]] = {"direct": [], "host": [], "direct_name": [], "host_name": []}
    ask = network.generate_response
    samples["first"] = json.loads(ask("", f"127.0.0.1 {port} {LOGGED}"))  # quick or not: figure 12 starts after these
    with DirectPeer() as peer:

        def through_host(host: str, key: str) -> None:
            samples[key].extend(json.loads(ask("", f"{host} {port} {block}")))

        blocks = (lambda: samples["direct"].extend(peer.loop("127.0.0.1", port, block)),
                  lambda: through_host("127.0.0.1", "host"),
                  lambda: samples["direct_name"].extend(peer.loop("localhost", port, block)),
                  lambda: through_host("localhost", "host_name"))  # fmt: skip
        interleave(1, *blocks)  # warm-up, not kept
        for key in ("direct", "host", "direct_name", "host_name"):
            samples[key].clear()
        interleave(reps, *blocks)
    return samples


def measure_calls(settings: Settings, untrusted: Plugin, network: Plugin) -> tuple[list[float], list[float]]:
    """Interleaved blocks of ``count_tokens`` round trips to each plugin: µs per call."""
    reps, block = settings.pick(3, 20), settings.pick(200, 500)
    kept: tuple[list[float], list[float]] = ([], [])
    clock = time.perf_counter_ns

    def calls(count: Callable[[str], int], out: list[float]) -> None:
        add = out.append
        for _ in range(block):
            t0 = clock()
            count(SHORT_TEXT)
            add((clock() - t0) / 1000)

    blocks = (lambda: calls(untrusted.count_tokens, kept[0]), lambda: calls(network.count_tokens, kept[1]))
    interleave(1, *blocks)  # warm-up
    for out in kept:
        out.clear()
    interleave(reps, *blocks)
    return kept


def run(settings: Settings, placement: str) -> list[Row]:
    listener = Listener()
    try:
        with Workspace() as ws:
            untrusted, network = start_clients(ws, listener.port)
            samples = measure_connects(settings, network, listener.port)
            plain, brokered = measure_calls(settings, untrusted, network)
            note = sandbox_note(network)
        listener.drain(sum(len(kept) for kept in samples.values()))
    finally:
        listener.close()
    direct, host = Stat.of(samples["direct"]), Stat.of(samples["host"])
    direct_name, host_name = Stat.of(samples["direct_name"]), Stat.of(samples["host_name"])
    first, base_calls, net_calls = Stat.of(samples["first"]), Stat.of(plain), Stat.of(brokered)
    p90 = {key: _p90(values) for key, values in samples.items()}
    logged = (
        f"figure 12d: the host records a health-log event (SQLite, from a thread of its own) for each of a "
        f"process's first {LOGGED} connections; figures 12 and 12b are measured after those"
    )
    target = "figure 12's target is the direct median × 2 + 1 ms, shown as the ratio to the direct median it allows in that run"
    return [
        Row("12", "connect + close through the host, 127.0.0.1:P", "µs", host, "direct connect, plain python -I", direct,
            host.median / direct.median, "<=", connect_target(direct.median), _join(note, target), placement,
            {"p90": p90["host"], "baseline_p90": p90["direct"]}),
        Row("12b", "connect + close through the host, localhost:P (host resolves)", "µs", host_name,
            "direct connect, plain python -I", direct_name, host_name.median / direct_name.median, "<=",
            connect_target(direct_name.median), _join(note, target), placement,
            {"p90": p90["host_name"], "baseline_p90": p90["direct_name"]}),
        Row("12c", "count_tokens, network-profile plugin (no connects)", "µs", net_calls, "untrusted plugin", base_calls,
            net_calls.median / base_calls.median, "<=", 1.2, note, placement, {"p90": _p90(brokered), "baseline_p90": _p90(plain)}),
        Row("12d", f"a fresh plugin process's first {first.n} connects, 127.0.0.1:P", "µs", first,
            "direct connect, plain python -I", direct, first.median / direct.median, "<=", connect_target(direct.median),
            _join(note, logged), placement, {"p90": p90["first"]}),
    ]  # fmt: skip


def _p90(values: list[float]) -> float:
    xs = sorted(values)
    return xs[min(len(xs) - 1, int(0.9 * len(xs)))] if xs else float("nan")


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)
