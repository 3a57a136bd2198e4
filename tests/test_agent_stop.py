"""The agent's serve loop ends promptly and quietly when stopped, whatever it was waiting for.

Regression: serve() once waited in accept() with a timeout of the idle clock (minutes), and
stop() shut the listener down under it; on Linux that makes a timed accept() spin at 100 %
CPU until its timeout, so a stopped (or upgraded, or SIGTERMed) agent burned a core for up
to ten minutes before it exited.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from app.agent.paths import AgentPaths
from app.agent.server import Agent
from app.version import build

pytestmark = pytest.mark.timeout(60)


def _serving(tmp_path: Path, idle: float) -> tuple[Agent, threading.Event]:
    agent = Agent(AgentPaths(tmp_path / "agent"), build(), idle)
    ended = threading.Event()
    listening = threading.Event()

    def run() -> None:
        with agent.listening():
            listening.set()
            agent.serve()
        ended.set()

    threading.Thread(target=run, daemon=True).start()
    assert listening.wait(10)
    return agent, ended


def test_stop_while_idle_ends_serve_at_once_without_spinning(tmp_path: Path) -> None:
    agent, ended = _serving(tmp_path, idle=600)
    assert not ended.wait(0.3)  # it is waiting on a ten-minute idle clock
    cpu = os.times()
    began = time.monotonic()
    agent.stop()
    assert ended.wait(5), "serve() did not return after stop()"
    spent = (os.times().user - cpu.user) + (os.times().system - cpu.system)
    assert time.monotonic() - began < 5
    assert spent < 0.5, f"stopping cost {spent:.2f} s of CPU"
    assert not agent.paths.socket.exists()
    agent.stop()  # twice is safe, after the end too


def test_stop_before_serve_waits_makes_serve_return(tmp_path: Path) -> None:
    agent = Agent(AgentPaths(tmp_path / "agent"), build(), 600)
    with agent.listening():
        agent.stop()  # before serve() waits (or between its loop test and its wait): it still ends
        began = time.monotonic()
        agent.serve()
        assert time.monotonic() - began < 5
