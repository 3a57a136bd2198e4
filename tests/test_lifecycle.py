"""Plugin process lifecycle seen from the host: which thread starts it, how it stops."""

from __future__ import annotations

import os
import threading

import pytest

from tests.helpers import DirectPlugins

pytestmark = pytest.mark.timeout(60)


def test_plugin_started_from_a_short_lived_thread_survives_it(plugins: DirectPlugins) -> None:
    # The child's parent-death signal follows the spawning *thread*: the runner must not
    # let a worker thread's end kill the plugin it happened to start.
    client = plugins.handle("echo")
    worker = threading.Thread(target=client.start)
    worker.start()
    worker.join()
    pid = client.pid
    assert pid is not None
    assert client.generate_response("", "still alive") == "echo: still alive"
    assert client.pid == pid and client.stats.starts == 1


def test_stop_twice_is_safe_and_leaves_nothing(plugins: DirectPlugins) -> None:
    client = plugins.handle("echo")
    client.start()
    pid = client.pid
    client.stop()
    client.stop()
    assert not client.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # type: ignore[arg-type]
    assert client.count_tokens("back again") > 0  # a stopped plugin starts again on use


@pytest.mark.timeout(30)
def test_a_ctrl_c_while_the_spawner_starts_a_plugin_leaves_no_process(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The caller waits for the spawner thread; interrupted there, it never gets the Popen,
    so the process must not outlive the interrupt (it used to run on, owned by nobody)."""
    import subprocess
    import sys
    from concurrent.futures import Future

    from runner import process

    made: list[subprocess.Popen[bytes]] = []
    real_result = Future.result

    def result_then_interrupt(self: Future, timeout: float | None = None):  # type: ignore[type-arg]
        value = real_result(self, timeout)
        if isinstance(value, subprocess.Popen) and not made:
            made.append(value)
            raise KeyboardInterrupt  # what SIGINT raises in the waiting caller
        return value

    monkeypatch.setattr(Future, "result", result_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        process.spawn([sys.executable, "-c", "import time; time.sleep(60)"], {}, str(tmp_path))
    assert made and made[0].poll() is not None, "the spawned process outlived the interrupt"
