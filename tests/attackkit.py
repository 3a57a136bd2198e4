"""The attack suites' shared kit: the host's canaries, the attack runner, sockets the tests own.

Used by every ``tests/test_attacks*.py`` module: an attack plugin from ``tests/attacks/``
answers one line per attempt, ``BLOCKED: ...`` or ``LEAKED: ...``; the tests check the
answer and the world, then that the host is unharmed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import PluginManager
from app.grants import file_sha256
from tests.helpers import FAST

ATTACKS = Path(__file__).resolve().parent / "attacks"
ROOT = ATTACKS.parent.parent
CANARY_VAR = "SANDCHAT_HOST_CANARY"


# -- the host and its canaries ----------------------------------------------------------


class Host:
    """The pytest process as the attacks' target: canaries that must survive every test."""

    def __init__(self, tmp_path: Path) -> None:
        self.pid = os.getpid()
        self.env_value = "env-canary-" + secrets.token_hex(8)
        self.file = tmp_path / "host-canary.txt"
        self.file_text = "file-canary-" + secrets.token_hex(8)
        self.file.write_text(self.file_text)
        self.memory = ("memory-canary-" + secrets.token_hex(8)).encode()
        self.sigterm = threading.Event()

    def memory_address(self) -> int:
        """Where the bytes of ``self.memory`` live in this process (checked, not assumed)."""
        address = id(self.memory) + sys.getsizeof(b"") - 1  # header of a bytes object
        assert ctypes.string_at(address, len(self.memory)) == self.memory
        return address

    def assert_intact(self) -> None:
        assert os.getpid() == self.pid
        assert os.environ.get(CANARY_VAR) == self.env_value
        assert self.file.read_text() == self.file_text
        assert ctypes.string_at(self.memory_address(), len(self.memory)) == self.memory
        assert not self.sigterm.is_set(), "the host received SIGTERM"


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    target = Host(tmp_path)
    monkeypatch.setenv(CANARY_VAR, target.env_value)
    # A SIGTERM that got through must be recorded, not end the test run.
    previous = signal.signal(signal.SIGTERM, lambda *_: target.sigterm.set())
    try:
        yield target
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def attacks(home: Path) -> Iterator[PluginManager]:
    with PluginManager(plugin_dirs=[ATTACKS], home=home, deadlines=FAST) as manager:
        yield manager


@pytest.fixture
def fake_home(tmp_path: Path) -> Path:
    """A user's home outside every path the sandbox allows, with secrets in it."""
    path = tmp_path / "fakehome"
    (path / ".ssh").mkdir(parents=True)
    (path / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY----- secret-" + secrets.token_hex(8))
    (path / ".bashrc").write_text("# the user's shell start-up file\n")
    return path


def attack(manager: PluginManager, name: str, message: str = "") -> list[str]:
    """Run plugin ``name``'s attack; return its lines, asserting that every one is BLOCKED."""
    result = manager.handle(name).generate_response("", message)
    lines = result.splitlines()
    assert lines, f"{name} said nothing"
    assert all(line.startswith("BLOCKED: ") for line in lines), f"{name} got through:\n{result}"
    return lines


def assert_host_healthy(manager: PluginManager, host: Host) -> None:
    assert manager.handle("echo").generate_response("", "still here") == "echo: still here"
    host.assert_intact()


def errnos(lines: list[str]) -> list[int]:
    """The errno reported on each line (``... OSError 13 Permission denied`` or ``errno 13 ...``)."""
    found = []
    for line in lines:
        words = line.replace(":", " ").split()
        after = [words[i + 1] for i, w in enumerate(words[:-1]) if w.endswith(("Error", "errno"))]
        found.append(next((int(w) for w in after if w.isdigit()), -1))
    return found


# -- sockets the tests own ----------------------------------------------------------------


@contextlib.contextmanager
def listener(family: int = socket.AF_INET, address: object = ("127.0.0.1", 0)) -> Iterator[socket.socket]:
    """A listening stream socket; ``accepted()`` reads its backlog without waiting."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind(address)
        sock.listen(16)
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()


def accepted(sock: socket.socket) -> list[bytes]:
    """Connections already in the listener's backlog and the first bytes each sent.

    A connect() that succeeded has completed its handshake before the plugin could answer,
    so once the plugin's reply is here, every connection it made is in the backlog.
    """
    got = []
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return got
        with conn:
            conn.settimeout(5)
            got.append(conn.recv(100))


def drain(sock: socket.socket) -> int:
    """Accept and close what is in a (non-blocking) listener's backlog, reading nothing; how many."""
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


@contextlib.contextmanager
def udp_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()


def datagrams(sock: socket.socket) -> list[bytes]:
    """Datagrams already queued (loopback delivery is synchronous with sendto)."""
    got = []
    while True:
        try:
            got.append(sock.recv(2048))
        except BlockingIOError:
            return got


def port(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def grant_network(manager: PluginManager, name: str, *endpoints: str) -> None:
    path = manager.plugin_file(name).path
    manager.grants.grant(name, file_sha256(path), network=tuple(endpoints), env=())
