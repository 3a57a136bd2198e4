"""Fuzz the host's side of the protocol with frames a real child sends through a real pipe.

A child process (``tests/fuzz/frames.py``) writes 100,000 seeded frames: valid messages,
the same with fields swapped for other types, raw mutations (flipped, inserted, cut,
duplicated bytes), deep nesting, millions of empty containers, oversized lengths, ext
types. The host decodes each with a fresh hostile decoder, split across reads the way
a pipe may split it, and judges it as the connection would (shape, response, chunk,
hello). Every outcome must be a message or a ProtocolViolation / PluginError, the host's
peak RSS must stay within a stated bound, and a plugin beside it (a runner.Plugin handle)
answers.
Then a shorter run sends fuzzed replies through a real plugin's ``Connection``.
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
from pathlib import Path

import pytest

import runner
from bench.fuzz import decode, read_exactly
from bench.fuzz import status as _status
from tests.helpers import FAST, SHIPPED_PLUGINS, TEST_PLUGINS, DirectPlugins

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parent.parent
SEED, FRAMES = 20261201, 100_000
RSS_BOUND = 96 * 2**20  # the decoder's budget allows ~0.5 MiB a message; this leaves room for the harness


def test_a_hundred_thousand_fuzzed_frames_through_a_pipe_leave_the_host_whole(home: Path) -> None:
    rng = random.Random(SEED)
    outcomes: dict[str, int] = {}
    child = subprocess.Popen([sys.executable, "-m", "tests.fuzz.frames", str(SEED), str(FRAMES)], cwd=ROOT, stdout=subprocess.PIPE)
    with DirectPlugins(home, deadlines=FAST) as plugins:
        assert plugins.handle("echo").generate_response("", "before") == "echo: before"
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS: measure this run alone
        before = _status("VmRSS")
        try:
            for _ in range(FRAMES):
                size = int.from_bytes(read_exactly(child.stdout, 4), "big")
                outcome = decode(read_exactly(child.stdout, size), rng)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        finally:
            child.stdout.close()  # type: ignore[union-attr]
            assert child.wait(30) == 0
        grown = _status("VmHWM") - before
        assert plugins.handle("echo").generate_response("", "after") == "echo: after"
    assert sum(outcomes.values()) == FRAMES
    assert set(outcomes) <= {"answer", "hello", "notification", "violation", "plugin error", "incomplete"}, outcomes
    assert outcomes["violation"] > FRAMES // 10 and outcomes["answer"] > FRAMES // 10, outcomes  # both sides exercised
    assert grown < RSS_BOUND, f"peak RSS grew {grown / 2**20:.0f} MiB (bound {RSS_BOUND / 2**20:.0f} MiB); {outcomes}"
    print(f"\n[fuzz] {FRAMES} frames, seed {SEED}: {outcomes}; peak RSS +{grown / 2**20:.1f} MiB")


_FUZZ_CLASS = """

from llm_utils import LLMClient


class Fuzz(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "unused"

    def count_tokens(self, text):
        data = frame(random.Random(int(text)))
        os.write(4, data)  # the fuzzed frame goes out before, or instead of, the real reply
        return 1
"""


def test_fuzzed_replies_through_a_real_connection_are_answers_or_plugin_errors(home: Path, tmp_path: Path) -> None:
    """A plugin writes a fuzzed frame onto its protocol fd on each call; the host copes each time."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    generator = (ROOT / "tests" / "fuzz" / "frames.py").read_text()  # the plugin carries the generator
    (folder / "fuzz_plugin.py").write_text(generator.replace("import sys\n", "import os\nimport sys\n", 1) + _FUZZ_CLASS)
    never_quarantine = runner.RestartPolicy(backoff_initial=0.001, backoff_max=0.001, max_failures=10_000)
    quick = dataclasses.replace(FAST, count_tokens=0.5)  # a cut frame waits out this deadline
    with DirectPlugins(home, deadlines=quick, policy=never_quarantine, folders=(folder, TEST_PLUGINS, SHIPPED_PLUGINS)) as plugins:
        client = plugins.handle("fuzz")
        results: dict[str, int] = {}
        for seed in range(150):
            try:
                client.count_tokens(str(seed))
                results["answer"] = results.get("answer", 0) + 1
            except runner.PluginError as exc:
                results[type(exc).__name__] = results.get(type(exc).__name__, 0) + 1
        assert plugins.handle("echo").generate_response("", "still here") == "echo: still here"
    assert sum(results.values()) == 150 and len(results) >= 2, results
    assert results.get("PluginProtocolError", 0) > 30, results
    print(f"\n[fuzz] 150 fuzzed replies through a real plugin: {results}")
