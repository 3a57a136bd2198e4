"""Shared parts of the benchmark: rows and statistics, placement, the raw-pipe peer, a scratch home."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PYTHON = sys.executable
ROOT = Path(__file__).resolve().parent.parent
PLUGIN_NAME = "benchtrivial"

#: The trivial plugin every figure drives: nothing imported beyond llm_utils, constant-time work.
TRIVIAL_PLUGIN = '''"""sandchat bench: a trivial plugin (no imports beyond llm_utils)."""
from llm_utils import LLMClient


class BenchTrivial(LLMClient):
    """Answers at once: the benchmark measures the runner, not a model."""

    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return user_message

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        chunk = "t"
        for _ in range(max_tokens):
            yield chunk

    def count_tokens(self, text):
        return (len(text) + 3) // 4
'''

#: The other end of the raw-pipe baselines: a plain Python process, no runner, no msgpack.
#: "ping": echo each byte back; "echo N": read exactly N bytes, then write them back.
RAW_PEER = r"""
import os, sys
r, w, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if mode == "ping":
    read, write = os.read, os.write
    while True:
        b = read(r, 1)
        if not b:
            break
        write(w, b)
else:
    size = int(sys.argv[4])
    buf = bytearray(size)
    view = memoryview(buf)
    while True:
        got = 0
        while got < size:
            n = os.readv(r, [view[got:]])
            if not n:
                sys.exit(0)
            got += n
        sent = 0
        while sent < size:
            sent += os.write(w, view[sent:])
"""


@dataclass
class Stat:
    """One measured quantity: median and 99th percentile of its samples."""

    median: float
    p99: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> Stat:
        if not samples:
            return cls(float("nan"), float("nan"), 0)
        xs = sorted(samples)
        n = len(xs)
        mid = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
        return cls(mid, xs[min(n - 1, int(0.99 * n))], n)


@dataclass
class Row:
    """One line of the table: a figure, its baseline, the ratio and the target it must hold."""

    figure: str
    name: str
    unit: str
    subject: Stat
    baseline_name: str
    baseline: Stat | None
    ratio: float | None
    op: str = "<="  # "<=", ">=" or "" (informational)
    limit: float | None = None
    note: str = ""
    placement: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        if self.ratio is None or self.limit is None or not self.op:
            return None
        return self.ratio <= self.limit if self.op == "<=" else self.ratio >= self.limit

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        data = dict(data)
        data.pop("passed", None)
        data["subject"] = Stat(**data["subject"])
        data["baseline"] = Stat(**data["baseline"]) if data.get("baseline") else None
        return cls(**data)


@dataclass
class Settings:
    """How long to measure: ``quick`` is for a smoke run, the default for the README's table."""

    quick: bool = False

    def pick(self, quick: int, full: int) -> int:
        return quick if self.quick else full


def apply_placement(placement: str) -> set[int]:
    """Pin this process (and so every process it starts later) to CPU 0, or free it."""
    cpus = {0} if placement == "one" else set(range(os.cpu_count() or 1))
    os.sched_setaffinity(0, cpus)
    return cpus


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of ``fn`` took."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class PipePeer:
    """A second Python process running ``script`` with two raw pipes: it gets their fds as argv[1:3]."""

    def __init__(self, script: str, *args: str) -> None:
        r1, self.w = os.pipe()
        self.r, w2 = os.pipe()
        self.proc = subprocess.Popen([PYTHON, "-I", "-c", script, str(r1), str(w2), *args], pass_fds=(r1, w2))
        os.close(r1)
        os.close(w2)

    def close(self) -> None:
        for fd in (self.w, self.r):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class RawPeer(PipePeer):
    """The baselines' floor: a plain Python process echoing bytes over two raw pipes."""

    def __init__(self, mode: str, size: int = 0) -> None:
        super().__init__(RAW_PEER, mode, *([str(size)] if size else []))
        self.size = size
        if size:
            self._buf = bytearray(size)
            self._view = memoryview(self._buf)
            self._payload = memoryview(os.urandom(1024) * (size // 1024))

    def ping_samples(self, count: int) -> list[float]:
        """``count`` 1-byte round trips, each timed, in microseconds."""
        w, r, write, read, clock = self.w, self.r, os.write, os.read, time.perf_counter_ns
        out = []
        for _ in range(count):
            t0 = clock()
            write(w, b"x")
            read(r, 1)
            out.append((clock() - t0) / 1000)
        return out

    def echo_once(self) -> float:
        """Send ``size`` bytes and read them back; seconds."""
        size, view, payload = self.size, self._view, self._payload
        t0 = time.perf_counter()
        sent = 0
        while sent < size:
            sent += os.write(self.w, payload[sent:])
        got = 0
        while got < size:
            got += os.readv(self.r, [view[got:]])
        elapsed = time.perf_counter() - t0
        if self._buf[:64] != payload[:64]:
            raise RuntimeError("raw echo returned different bytes")
        return elapsed

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Workspace:
    """A scratch sandchat home with the trivial plugin in a plugin folder; removed on close."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sandchat-bench-"))
        self.plugins = self.dir / "plugins"
        self.home = self.dir / "home"
        self.plugins.mkdir()
        self.home.mkdir()
        (self.plugins / f"{PLUGIN_NAME}_plugin.py").write_text(TRIVIAL_PLUGIN)
        self._managers: list[Any] = []

    def manager(self) -> Any:
        from app import PluginManager  # the public API

        manager = PluginManager(plugin_dirs=[self.plugins], home=self.home)
        self._managers.append(manager)
        return manager

    def client(self) -> Any:
        """A started client of the trivial plugin (the public API: ``PluginManager(...).client``)."""
        client = self.manager().handle(PLUGIN_NAME)
        client.start()
        report = client.hello.get("sandbox", {})
        if report.get("profile") != "untrusted":
            raise RuntimeError(f"the plugin did not run under the untrusted sandbox: {report}")
        return client

    def close(self) -> None:
        for manager in self._managers:
            manager.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sandbox_note(client: Any) -> str:
    """Empty when every sandbox layer is on; otherwise which are missing (the figure is then suspect)."""
    missing = client.hello.get("sandbox", {}).get("missing") or []
    return f"sandbox layers missing: {', '.join(missing)}" if missing else ""


def interleave(reps: int, *blocks: Callable[[], None]) -> None:
    """Run ``blocks`` in turn, ``reps`` times: A B C A B C ... (the first round is a warm-up too)."""
    for _ in range(reps):
        for block in blocks:
            block()
