"""Figures 4 and 5: plugin start-up (spawn to hello, full sandbox) and the plugin process's memory.

Baseline for both: ``python -I -c "import msgpack"`` (the bare interpreter plus the one
library the protocol needs), started, run and reaped by this process; for memory, the
same interpreter held alive after the import.
"""

from __future__ import annotations

import subprocess

from bench.common import PYTHON, Row, Settings, Stat, Workspace, interleave, sandbox_note, timed

BARE = [PYTHON, "-I", "-c", "import msgpack"]
BARE_HELD = [PYTHON, "-I", "-c", "import msgpack, sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()"]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def bare_rss() -> float:
    proc = subprocess.Popen(BARE_HELD, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        proc.stdout.readline()  # type: ignore[union-attr]
        return rss_mib(proc.pid)
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait()


def run(settings: Settings, placement: str) -> list[Row]:
    reps = settings.pick(5, 25)
    bare: list[float] = []
    starts: list[float] = []
    bare_mem: list[float] = []
    plugin_mem: list[float] = []
    with Workspace() as ws:
        client = ws.client()  # the first start also compiles the runner's bytecode: not measured

        def baseline() -> None:
            bare.append(timed(lambda: subprocess.run(BARE, check=True)) * 1e3)
            bare_mem.append(bare_rss())

        def subject() -> None:
            client.stop()
            starts.append(timed(client.start) * 1e3)
            for _ in range(100):
                client.count_tokens("warm the process up like a real one")
            plugin_mem.append(rss_mib(client.pid))

        interleave(1, baseline, subject)  # warm-up (page cache, bytecode)
        for series in (bare, starts, bare_mem, plugin_mem):
            series.clear()
        interleave(reps, baseline, subject)
        note = sandbox_note(client)
    b, s = Stat.of(bare), Stat.of(starts)
    bm, pm = Stat.of(bare_mem), Stat.of(plugin_mem)
    return [
        Row("4", "start-up (spawn to hello, full sandbox)", "ms", s, "python -I -c 'import msgpack'", b,
            s.median / b.median, "<=", 2.0, note, placement),
        Row("5", "memory (plugin process RSS)", "MiB", pm, "python -I + msgpack, idle", bm,
            pm.median / bm.median, "<=", 1.5, note, placement),
    ]  # fmt: skip
