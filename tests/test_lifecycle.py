"""Plugin process lifecycle seen from the host: which thread starts it, how it stops."""

from __future__ import annotations

import os
import threading

import pytest

from app import PluginManager

pytestmark = pytest.mark.timeout(60)


def test_plugin_started_from_a_short_lived_thread_survives_it(manager: PluginManager) -> None:
    # The child's parent-death signal follows the spawning *thread*: the runner must not
    # let a worker thread's end kill the plugin it happened to start.
    client = manager.client("echo")
    worker = threading.Thread(target=client.start)
    worker.start()
    worker.join()
    pid = client.pid
    assert pid is not None
    assert client.generate_response("", "still alive") == "echo: still alive"
    assert client.pid == pid and client.stats.starts == 1


def test_stop_twice_is_safe_and_leaves_nothing(manager: PluginManager) -> None:
    client = manager.client("echo")
    client.start()
    pid = client.pid
    client.stop()
    client.stop()
    assert not client.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # type: ignore[arg-type]
    assert client.count_tokens("back again") > 0  # a stopped plugin starts again on use
