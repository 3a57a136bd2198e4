"""Figure 14: a one-shot ``sandchat prompt`` cold (no agent) beside the next command with the agent warm.

Whole processes (the installed ``sandchat`` command beside this interpreter, as a user types
it; ``python -m app`` where it is not installed), from one scratch home, timed to the first byte on standard output and to the exit:

- 14: ``claude`` against the local Messages API stand-in (``tests/fakeapi``: the real SDK,
  HTTP and SSE on 127.0.0.1; the plugin granted that endpoint and its two variables).
- 14b: ``local`` (SmolLM2 through llama.cpp), when the ``[local]`` extra is installed.
- 14c: ``echo``, the floor: a plugin with nothing to import or load.
- 14d: ``sandchat --help`` and 14e: ``plugins list`` beside ``python -I -c pass``: what every
  command pays before a plugin is reached, which the agent's client must not make slower.

Cold is ``SANDCHAT_AGENT_IDLE=0``: the command starts the plugin itself, as without the agent.
Warm is the agent on and the plugin already warm in it (waited for after one command), so
each measured command is "the second command". Targets (issue 18): the warm first byte under
10 % of the cold one, and under 150 ms. No ``XDG_RUNTIME_DIR``: the agent's socket is in the
scratch home, and the bench stops its agent at the end.
"""

from __future__ import annotations

import importlib.util
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import PYTHON, ROOT, Row, Settings, Stat, interleave, timed

BARE = [PYTHON, "-I", "-c", "pass"]
_SCRIPT = Path(PYTHON).parent / "sandchat"
SANDCHAT = [str(_SCRIPT)] if _SCRIPT.is_file() else [PYTHON, "-m", "app"]
WARM_LIMIT_MS = 150.0
PROMPT = "hi"
MAX_TOKENS = 16  # the first byte is the figure; a short reply keeps the local model's generation from loading the machine


class _Home:
    """A scratch home, the environment of the commands run in it, and its agent."""

    def __init__(self, base: Path, extra_env: dict[str, str]) -> None:
        self.home = base / "home"
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SANDCHAT_HOME": str(self.home), **extra_env}

    def run(self, *args: str, agent: bool) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, SANDCHAT_AGENT_IDLE="600" if agent else "0")
        return subprocess.run([*SANDCHAT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)

    def timed_prompt(self, name: str, agent: bool) -> tuple[float, float]:
        """Milliseconds to the first byte of the answer on stdout, and to the exit."""
        env = dict(self.env, SANDCHAT_AGENT_IDLE="600" if agent else "0")
        began = time.perf_counter()
        proc = subprocess.Popen([*SANDCHAT, "prompt", "--max-tokens", str(MAX_TOKENS), "-p", name, PROMPT], env=env, cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        first = time.perf_counter()
        out = os.read(proc.stdout.fileno(), 65536) if ready else b""
        rest, err = proc.communicate(timeout=120)
        end = time.perf_counter()
        if proc.returncode != 0 or not (out + rest).strip():
            raise RuntimeError(f"bench: prompt -p {name} failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
        return (first - began) * 1e3, (end - began) * 1e3

    def wait_warm(self, name: str, seconds: float = 60) -> None:
        """Until the agent reports ``name`` with a live process (status is read the way a person asks)."""
        import json

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            found = self.run("agent", "status", "--json", agent=True)
            doc = json.loads(found.stdout or "{}")
            forker = doc.get("forker") or {}
            warm = any(p.get("name") == name and p.get("pid") for p in doc.get("plugins", []))
            if doc.get("answering") and warm and forker.get("ready"):
                return
            time.sleep(0.1)  # the agent starts in the background: a bench may poll
        raise RuntimeError(f"bench: {name} never became warm in the agent")

    def stop(self) -> None:
        self.run("agent", "stop", agent=True)


def _grant_claude(home: _Home, port: int) -> None:
    done = home.run("plugins", "grant", "claude", "--yes", "--network", f"127.0.0.1:{port}",
                    "--env", "ANTHROPIC_API_KEY", "--env", "ANTHROPIC_BASE_URL", agent=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench: could not grant claude the stand-in: {done.stderr}")


def _figure(figure: str, label: str, home: _Home, name: str, reps: int, placement: str, relative: bool = True) -> list[Row]:
    """Cold and warm ``prompt -p NAME``; ``relative``: the 10 % target applies (echo, with nothing to load, is the floor)."""
    cold: list[tuple[float, float]] = []
    warm: list[tuple[float, float]] = []
    home.timed_prompt(name, agent=True)  # starts the agent with this decision
    home.wait_warm(name)
    interleave(1, lambda: cold.append(home.timed_prompt(name, False)), lambda: warm.append(home.timed_prompt(name, True)))
    cold.clear()
    warm.clear()
    interleave(reps, lambda: cold.append(home.timed_prompt(name, False)), lambda: warm.append(home.timed_prompt(name, True)))
    cold_first, warm_first = Stat.of([c[0] for c in cold]), Stat.of([w[0] for w in warm])
    cold_total, warm_total = Stat.of([c[1] for c in cold]), Stat.of([w[1] for w in warm])
    limit = Stat(WARM_LIMIT_MS, WARM_LIMIT_MS, 1)
    return [
        Row(figure, f"prompt -p {name} ({label}): first byte, agent warm", "ms", warm_first, "cold (no agent)", cold_first,
            warm_first.median / cold_first.median, "<=" if relative else "", 0.10 if relative else None, "", placement),
        Row(f"{figure}m", f"prompt -p {name} ({label}): first byte, agent warm", "ms", warm_first, "the 150 ms target", limit,
            warm_first.median / WARM_LIMIT_MS, "<=", 1.0, "", placement),
        Row(f"{figure}t", f"prompt -p {name} ({label}): whole command, agent warm", "ms", warm_total, "cold (no agent)", cold_total,
            warm_total.median / cold_total.median, "", None, "", placement),
    ]  # fmt: skip


def _startup(home: _Home, reps: int, placement: str) -> list[Row]:
    """--help and plugins list: what every command pays, beside an empty Python."""
    commands = {"14d": ("--help",), "14e": ("plugins", "list")}
    times: dict[str, list[float]] = {key: [] for key in commands}
    bare: list[float] = []
    env = dict(home.env, SANDCHAT_AGENT_IDLE="600")

    def one(key: str) -> None:
        argv = [*SANDCHAT, *commands[key]]
        times[key].append(timed(lambda: subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)) * 1e3)

    blocks = [lambda: bare.append(timed(lambda: subprocess.run(BARE, check=True)) * 1e3)]
    blocks += [lambda key=key: one(key) for key in commands]
    interleave(1, *blocks)
    bare.clear()
    for series in times.values():
        series.clear()
    interleave(reps, *blocks)
    b = Stat.of(bare)
    return [Row(key, f"sandchat {' '.join(argv)}, agent on", "ms", Stat.of(times[key]), "python -I -c pass", b,
                Stat.of(times[key]).median / b.median, "", None, "informational: compare with main's", placement)
            for key, argv in commands.items()]  # fmt: skip


def run(settings: Settings, placement: str) -> list[Row]:
    from tests.fakeapi import FakeAnthropicServer  # the stand-in the tests use: the real wire format, on loopback

    reps = settings.pick(3, 15)
    base = Path(tempfile.mkdtemp(prefix="sandchat-bench-agent-"))
    rows: list[Row] = []
    with FakeAnthropicServer(reply="Hello from the stand-in.", api_key="test-key") as server:
        home = _Home(base, {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": server.base_url})
        try:
            _grant_claude(home, server.port)
            rows += _figure("14", "Messages API stand-in", home, "claude", reps, placement)
            if importlib.util.find_spec("llama_cpp") is not None:
                rows += _figure("14b", "SmolLM2, llama.cpp", home, "local", reps, placement)
            else:
                empty = Stat(float("nan"), float("nan"), 0)
                why = "skipped: llama-cpp-python is not installed (pip install -e '.[local]')"
                rows.append(Row("14b", "prompt -p local: first byte, agent warm", "ms", empty, "", None, None, "", None, why, placement))
            rows += _figure("14c", "nothing to load", home, "echo", reps, placement, relative=False)
            rows += _startup(home, reps, placement)
        finally:
            home.stop()
            shutil.rmtree(base, ignore_errors=True)
    return rows
