"""The terminal is never the plugin's: escape sequences are stripped, every exit path reaps."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TEST_PLUGINS, plugin_processes
from tests.helpers import SANDCHAT, cli_env, sandchat

pytestmark = pytest.mark.timeout(60)


def test_escape_sequences_from_a_plugin_never_reach_the_terminal(home: Path) -> None:
    result = sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "prompt", "-p", "escapes", "hi")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "\x9b" not in result.stdout
    assert result.stdout.startswith("start ") and "red" in result.stdout and result.stdout.endswith("finish\n")
    logs = sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "plugins", "logs", "escapes")
    assert "log line" in logs.stdout and "\x1b" not in logs.stdout and "\x07" not in logs.stdout


def test_escape_sequences_in_a_plugin_error_are_stripped(home: Path) -> None:
    result = sandchat(home, "--plugins-dir", str(TEST_PLUGINS), "tokens", "-p", "escapes", "raise")
    assert result.returncode == 1
    assert result.stderr.startswith("sandchat: plugin 'escapes' raised ValueError: bad ")
    assert not any(ch in result.stderr for ch in "\x1b\x07\x9b")


def test_a_plugin_log_file_is_rotated_past_a_mebibyte(tmp_path: Path) -> None:
    import io

    from runner.stderr import StderrCapture

    log = tmp_path / "logs" / "big.log"
    lines = b"".join(b"%06d " % i + b"x" * 200 + b"\n" for i in range(6000))  # about 1.2 MiB
    capture = StderrCapture("big", io.BufferedReader(io.BytesIO(lines)), log, rate=None)  # no budget: rotation is tested here
    capture.join(10)
    rotated = log.with_name("big.log.1")
    assert rotated.exists() and rotated.stat().st_size <= (1 << 20) + 4096
    assert log.exists() and log.stat().st_size < 400_000
    assert log.read_text().rstrip().endswith("005999 " + "x" * 200)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_to_sandchat_stop_every_plugin_process(home: Path, sig: signal.Signals) -> None:
    env = cli_env(home)
    proc = subprocess.Popen(
        [*SANDCHAT, "--plugins-dir", str(TEST_PLUGINS), "prompt", "-p", "slow_stream", "go"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.read(4) == "0 1 "  # the plugin is running and streaming
        assert plugin_processes(str(home)), "the plugin process should be running now"
        proc.send_signal(sig)
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    assert code == (130 if sig == signal.SIGINT else 128 + sig)
    assert plugin_processes(str(home)) == []
