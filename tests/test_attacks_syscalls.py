"""Attacks on the system-call allow list: each class it closes, tried by a hostile plugin.

The seccomp filter used to be a deny list, and an outside review got out through calls
it did not name. Now anything not on ``runner.sandbox.allowlist`` fails with EPERM. One test per
class: the plugin's own try fails with EPERM (not the errno the call would give without
the filter: the control test shows the same tries succeeding unsandboxed), the world is
unchanged, and the host is unharmed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from app import PluginManager
from runner import Plugin
from tests.attackkit import ATTACKS, ROOT, Host, accepted, assert_host_healthy, attack, errnos, grant_network, listener, port

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only"),
]

UNTRUSTED_CLASSES = [
    "nonexistent syscall 1000", "memfd_create", "mq_open (a global message queue)", "inotify_init1",
    "setxattr outside", "listxattr outside", "utime outside", "chmod outside", "mkfifo in scratch",
    "execve /bin/true", "unshare a user namespace", "unshare a network namespace",
    "fcntl F_SETOWN to the host", "fcntl F_SETSIG", "fcntl F_SETLEASE", "fcntl F_NOTIFY",
    "ioctl FIOASYNC", "ioctl TIOCSCTTY", "prctl PR_SET_PDEATHSIG 0", "prctl PR_SET_DUMPABLE 1",
    "prctl PR_SET_MM", "prctl PR_SET_CHILD_SUBREAPER", "prctl PR_SET_PTRACER to the host",
    "kill the host (signal 0)", "tgkill the host (signal 0)", "socketpair AF_UNIX SOCK_DGRAM",
    "socket AF_UNIX", "madvise MADV_HWPOISON", "capabilities", "futex without FUTEX_PRIVATE_FLAG on a shared file",
]  # fmt: skip


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the sandbox whose metadata the plugin tries to change."""
    path = tmp_path / "outside.txt"
    path.write_text("the user's file")
    os.chmod(path, 0o600)
    return path


def order(names: list[str], host: Host, outside: Path) -> str:
    return json.dumps({"attacks": names, "host_pid": host.pid, "outside": str(outside)})


@pytest.mark.parametrize("name", UNTRUSTED_CLASSES)
def test_the_allow_list_refuses(attacks: PluginManager, host: Host, outside: Path, name: str) -> None:
    before = outside.stat()
    lines = attack(attacks, "syscall_classes", order([name], host, outside))
    assert errnos(lines) == [errno.EPERM], lines
    after = outside.stat()
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    assert os.listxattr(outside) == []
    assert not (attacks.paths.scratch / "syscall_classes" / "planted.fifo").exists()
    assert_host_healthy(attacks, host)


def test_control_the_same_tries_work_without_the_filter(attacks: PluginManager, host: Host, outside: Path) -> None:
    """Unsandboxed (profile "none"), the tries succeed or fail with the call's own errno."""
    config = attacks.launch_config("syscall_classes")
    names = ["nonexistent syscall 1000", "memfd_create", "inotify_init1", "utime outside", "chmod outside",
             "mkfifo in scratch", "fcntl F_SETSIG", "prctl PR_SET_DUMPABLE 1", "socketpair AF_UNIX SOCK_DGRAM",
             "futex without FUTEX_PRIVATE_FLAG on a shared file"]  # fmt: skip
    with contextlib.closing(Plugin(replace(config, sandbox=replace(config.sandbox, profile="none")))) as client:
        lines = client.generate_response("", order(names, host, outside)).splitlines()
    assert lines[0].startswith("BLOCKED: nonexistent") and errnos(lines[:1]) == [errno.ENOSYS], lines
    assert all(line.startswith("LEAKED: ") for line in lines[1:]), lines
    assert outside.stat().st_mtime_ns == 0 and stat.S_IMODE(outside.stat().st_mode) == 0o777
    (attacks.paths.scratch / "syscall_classes" / "planted.fifo").unlink()


def test_root_keeps_no_capability_and_locked_securebits(attacks: PluginManager, host: Host, outside: Path) -> None:
    lines = attack(attacks, "syscall_classes", order(["capabilities"], host, outside))
    expected = "0xef" if os.geteuid() == 0 else "0x0"
    assert lines == [f"BLOCKED: capabilities: PermissionError 1 no capabilities (securebits {expected})"], lines
    client = attacks.handle("syscall_classes")
    assert "no-capabilities" in client.hello["sandbox"]["layers"]
    with open(f"/proc/{client.pid}/status") as f:  # the host's own look: every set empty
        sets = {k: int(v, 16) for k, v in (line.split(":") for line in f if line.startswith("Cap"))}
    assert {k: v for k, v in sets.items() if v and (os.geteuid() == 0 or k != "CapBnd")} == {}, sets
    assert_host_healthy(attacks, host)


# -- the network profile ------------------------------------------------------------------------

NETWORK_CLASSES = [
    "sendto MSG_FASTOPEN", "TCP_FASTOPEN_CONNECT", "listen without bind", "bind",
    "socketpair AF_UNIX SOCK_DGRAM + sendto path", "socket AF_UNIX SOCK_DGRAM + sendto path",
    "socketpair AF_UNIX SOCK_STREAM + sendto path", "UDP sendto an address", "netlink socket",
    "SO_BINDTODEVICE",
]  # fmt: skip


@contextlib.contextmanager
def unix_datagram_socket(path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()


@pytest.mark.parametrize("name", NETWORK_CLASSES)
def test_network_profile_refuses_socket_corners(home: Path, host: Host, tmp_path: Path, name: str) -> None:
    with listener() as granted, listener() as other, unix_datagram_socket(tmp_path / "log.sock") as log:
        with PluginManager([ATTACKS], home=home) as manager:
            grant_network(manager, "net_tricks", f"127.0.0.1:{port(granted)}")
            assert manager.handle("net_tricks").start()["sandbox"]["profile"] == "network"
            message = json.dumps({"attacks": [name], "port": port(other), "unix_dgram": str(tmp_path / "log.sock")})
            lines = attack(manager, "net_tricks", message)
            assert errnos(lines) == [errno.EPERM], lines
            assert accepted(other) == [] and accepted(granted) == []
            with pytest.raises(BlockingIOError):
                log.recv(100)
            assert_host_healthy(manager, host)


# -- persistence: nothing outlives sandchat ------------------------------------------------------

_HOST_SCRIPT = textwrap.dedent("""
    import json, sys
    from app import PluginManager
    manager = PluginManager([sys.argv[1]], home=sys.argv[2])
    client = manager.handle("persist")
    said = client.generate_response("", "")
    print(json.dumps({"pid": client.pid, "said": said}), flush=True)
    sys.stdin.read()  # until the test kills us
""")

_PERSIST_PLUGIN = textwrap.dedent("""
    import ctypes, threading, time
    from llm_utils import LLMClient
    libc = ctypes.CDLL(None, use_errno=True)

    class Persist(LLMClient):
        def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
            cleared = libc.prctl(1, 0, 0, 0, 0)  # PR_SET_PDEATHSIG, 0
            errno_ = ctypes.get_errno()
            threading.Thread(target=lambda: time.sleep(3600)).start()  # not a daemon: outlive the host
            return f"prctl={cleared} errno={errno_}"

        def count_tokens(self, text):
            return 1
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_plugin_dies_with_a_host_killed_by_any_signal(tmp_path: Path, sig: int) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "persist_plugin.py").write_text(_PERSIST_PLUGIN)
    (tmp_path / "home").mkdir()
    host = subprocess.Popen(
        [sys.executable, "-c", _HOST_SCRIPT, str(folder), str(tmp_path / "home")],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        report = json.loads(host.stdout.readline())  # type: ignore[union-attr]
        assert report["said"] == f"prctl=-1 errno={errno.EPERM}", report
        plugin_pid = report["pid"]
        pidfd = os.pidfd_open(plugin_pid)
        host.send_signal(sig)
        assert host.wait(timeout=20) == -sig
        ready, _, _ = select.select([pidfd], [], [], 20)  # readable once the plugin has exited
        assert ready, f"plugin {plugin_pid} outlived its host killed by {signal.Signals(sig).name}"
        with contextlib.suppress(ChildProcessError):  # re-parented to us when this process is a subreaper
            os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
        os.close(pidfd)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()


# -- covert channels through shared kernel state -----------------------------------------------


def test_file_locks_carry_nothing_out_of_the_sandbox(home: Path, host: Host, tmp_path: Path) -> None:
    """Taking a lock succeeds without locking (the lock state is machine-wide); reading locks
    still works, as the control with a lock the host holds shows."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name in ("lock_send", "lock_recv"):
        (folder / f"{name}_plugin.py").write_text((ATTACKS / "lock_channel_plugin.py").read_text())
    with PluginManager([folder, ATTACKS], home=home) as manager:
        assert manager.handle("lock_send").generate_response("", "send 4242").startswith("LEAKED: locked")  # it thinks so
        assert manager.handle("lock_recv").generate_response("", "recv").startswith("BLOCKED: nothing received")
        with open("/dev/null", "r+b") as null:  # control: a real lock, taken outside the sandbox
            fcntl.lockf(null, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 777)
            answer = manager.handle("lock_recv").generate_response("", "recv")
            assert answer.startswith(f"LEAKED: received byte 777 from pid {os.getpid()}"), answer
        assert manager.handle("lock_recv").generate_response("", "sqlite") == "sqlite: 42"  # locks within one process work
        assert_host_healthy(manager, host)
