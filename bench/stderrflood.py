"""Figure 9: the host's CPU while an idle plugin floods its stderr, as a fraction of one core.

The plugin starts a thread that writes short lines to stderr as fast as it can, forever,
and the host makes no call meanwhile. Measured: this process's own CPU time
(``getrusage(RUSAGE_SELF)``: every thread of the host, none of the plugin's) over windows
of fixed length. Baseline: the same windows with a plugin running idle, writing nothing.
Target: under a tenth of a core. Before the stderr budget it was about 0.9 of a core.
"""

from __future__ import annotations

import resource
import time

from bench.common import Row, Settings, Stat, Workspace, interleave, sandbox_note

FLOOD_NAME = "benchflood"
FLOOD_PLUGIN = '''"""sandchat bench: a plugin whose thread floods stderr, started by generate_response."""
import os
import threading

from llm_utils import LLMClient


def _flood():
    line = b"flood: spam spam spam spam spam spam spam spam\\n"
    while True:
        os.write(2, line)


class BenchFlood(LLMClient):
    """generate_response starts the flood and returns at once."""

    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        threading.Thread(target=_flood, daemon=True).start()
        return "flooding"

    def count_tokens(self, text):
        return len(text)
'''


def cpu_share(seconds: float) -> float:
    """The fraction of one core this process used over a window of ``seconds`` (idle meanwhile)."""
    before, began = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    time.sleep(seconds)
    after, ended = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return used / (ended - began)


def run(settings: Settings, placement: str) -> list[Row]:
    reps = settings.pick(2, 5)
    window = settings.pick(1, 3)
    idle: list[float] = []
    flooded: list[float] = []
    with Workspace() as ws:
        (ws.plugins / f"{FLOOD_NAME}_plugin.py").write_text(FLOOD_PLUGIN)
        quiet = ws.client()  # the trivial plugin: running, writing nothing
        flood = ws.manager().handle(FLOOD_NAME)

        def baseline() -> None:
            quiet.count_tokens("still there")
            idle.append(cpu_share(window) * 100)

        def subject() -> None:
            flood.start()  # a fresh process each time: its flood runs until it is stopped
            if flood.generate_response("", "flood") != "flooding":
                raise RuntimeError("the flooding plugin did not start its flood")
            flooded.append(cpu_share(window) * 100)
            flood.stop()

        interleave(1, baseline, subject)  # warm-up
        idle.clear()
        flooded.clear()
        interleave(reps, baseline, subject)
        flood.start()
        note = sandbox_note(flood) or sandbox_note(quiet)
        flood.stop()
    f, b = Stat.of(flooded), Stat.of(idle)
    return [
        Row("9", "host CPU while an idle plugin floods stderr", "% of a core", f, "the host, a plugin idle", b,
            f.median / 100, "<=", 0.1, note or "figure 9's ratio is the fraction of one core, not a ratio to the baseline",
            placement),
    ]  # fmt: skip
