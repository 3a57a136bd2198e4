"""CPython's standard library works under the sandbox's allow list, as plugins use it.

The allow list names every system call a plugin may make; this checks that the features
plugins reach for (threads, asyncio, select/poll/epoll, ssl, mmap, signals, time, files
in scratch, sqlite3, compression, hashing) still work in the untrusted profile. The
plugin doubles as part of the census the list was measured from (``bench/census.py``).
"""

from __future__ import annotations

import pytest

from app import PluginManager

pytestmark = pytest.mark.timeout(60)


def test_the_standard_library_works_in_the_sandbox(manager: PluginManager) -> None:
    client = manager.handle("stdlib_workout")
    assert client.start()["sandbox"]["profile"] == "untrusted"
    lines = client.generate_response("", "").splitlines()
    failed = [line for line in lines if not line.endswith(": ok")]
    assert len(lines) == 10 and not failed, failed
