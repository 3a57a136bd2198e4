"""Hostile plugins against the real sandbox: every attack fails and the host stays healthy.

Each test starts one plugin from ``tests/attacks/`` through the public ``PluginManager``
(so it runs exactly as a user's plugin would: ``python -I -S``, rlimits, Landlock,
seccomp) and has it perform one attack. The plugin answers with one line per attempt,
``BLOCKED: ...`` or ``LEAKED: ...``; the test checks the answer *and* the world (the file
was not written, the listener accepted nothing, the bystander still runs), then checks
that the host is unharmed: the echo plugin in the same manager still answers and the
pytest process's canaries (an environment variable, a file, a memory string, no
SIGTERM received) are intact.

Tests named ``test_residual_*`` document what the layers do NOT block; they assert the
actual behaviour so that a change in it is noticed (see docs/security.md).

``test_attack_suite_passes_unprivileged_as_nobody`` re-runs this file as user nobody.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from app import PluginManager
from app.grants import file_sha256
from app.settings import HOST_ENV_PASSTHROUGH, Paths, Settings
from runner import Limits, Plugin, PluginCrashed, PluginTimeout
from tests.attackkit import (
    ATTACKS,
    CANARY_VAR,
    ROOT,
    Host,
    accepted,
    assert_host_healthy,
    attack,
    datagrams,
    errnos,
    grant_network,
    listener,
    port,
    udp_socket,
)  # fmt: skip
from tests.helpers import FAST, processes

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only"),
]

NOBODY = 65534
MiB = 2**20


# -- the sandbox is really there -------------------------------------------------------------


def test_attack_plugins_run_with_every_kernel_layer(attacks: PluginManager) -> None:
    hello = attacks.handle("env_snoop").start()
    report = hello["sandbox"]
    assert report["profile"] == "untrusted"
    for layer in ("rlimits", "pdeathsig", "no_new_privs", "landlock-fs", "landlock-net", "landlock-scope", "seccomp"):
        assert layer in report["layers"], report
    assert report["missing"] == [], report


def unsandboxed(manager: PluginManager, name: str) -> Plugin:
    """Plugin ``name`` with the sandbox profile "none" (rlimits only): the control group."""
    config = manager.launch_config(name)
    return Plugin(replace(config, sandbox=replace(config.sandbox, profile="none", endpoints=())))


def test_control_the_attacks_work_without_the_sandbox(attacks: PluginManager, fake_home: Path, tmp_path: Path) -> None:
    """The same plugins, unsandboxed, do get through: a BLOCKED elsewhere is the sandbox's doing."""
    secret = fake_home / ".ssh" / "id_ed25519"
    unix_path = str(tmp_path / "c.sock")
    abstract = f"sandchat-test-{secrets.token_hex(6)}"
    with listener() as tcp_server, udp_socket() as udp, listener(socket.AF_UNIX, unix_path) as unix_server, \
            listener(socket.AF_UNIX, "\0" + abstract) as abstract_server, \
            sysv_objects(b"sysv-payload") as (shm_key, msg_key):  # fmt: skip
        runs = {
            "read_secret": json.dumps([str(secret)]),
            "list_home": str(fake_home),
            "stat_probe": str(secret),
            "tcp_connect": str(port(tcp_server)),
            "udp_send": str(port(udp)),
            "unix_socket": unix_path,
            "abstract_socket": abstract,
            "fork_bomb": "",
            "io_uring": "",
            "sysv_ipc": f"{shm_key} {msg_key} 12",
        }
        for name, message in runs.items():
            with contextlib.closing(unsandboxed(attacks, name)) as client:
                assert client.start()["sandbox"]["layers"] == ["rlimits"]
                result = client.generate_response("", message)
                assert result.startswith("LEAKED: "), (name, result)
                if name == "read_secret":
                    assert secret.read_text()[:100] in result
                if name == "sysv_ipc":
                    assert result.count("sysv-payload") == 2, result
        assert accepted(tcp_server) == [b"exfiltrated"] and datagrams(udp) == [b"exfiltrated"]
        assert accepted(unix_server) == [b"exfiltrated"] and accepted(abstract_server) == [b"exfiltrated"]


# -- files ------------------------------------------------------------------------------------


def test_reading_secrets_outside_the_sandbox_is_blocked(attacks: PluginManager, host: Host, fake_home: Path) -> None:
    attacks.keys.set("ANTHROPIC_API_KEY", "sk-ant-" + secrets.token_hex(8))  # sandchat's own key file
    targets = [
        fake_home / ".ssh" / "id_ed25519",
        fake_home / ".bashrc",
        attacks.paths.keys_file,
        host.file,
        "/etc/shadow",
        "/etc/passwd",
    ]
    lines = attack(attacks, "read_secret", json.dumps([str(t) for t in targets]))
    assert len(lines) == len(targets)
    assert set(errnos(lines)) == {errno.EACCES}, lines  # Landlock, not a missing file
    assert attack(attacks, "list_home", str(fake_home))[0].endswith("13 Permission denied")
    assert_host_healthy(attacks, host)


def test_writing_outside_scratch_is_blocked(attacks: PluginManager, host: Host, fake_home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("keep me")
    attacks.grants.grant("someone_else", "0" * 64, network=(), env=())  # so grants.json exists
    grants_before = attacks.paths.grants_file.read_bytes()
    attacks.paths.user_plugins.mkdir(parents=True)
    other_scratch = attacks.paths.scratch / "echo"
    other_scratch.mkdir(parents=True)
    secret = fake_home / ".ssh" / "id_ed25519"
    secret_text = secret.read_text()
    targets = [
        outside / "pwned.txt",  # anywhere in /tmp
        fake_home / ".bashrc",  # persistence in the user's shell
        attacks.paths.grants_file,  # grant itself the network
        attacks.paths.user_plugins / "planted_plugin.py",  # a plugin the next run would load
        other_scratch / "planted.txt",  # another plugin's scratch dir
    ]
    spec = {"targets": [str(t) for t in targets], "victim": str(victim), "secret": str(secret)}
    lines = attack(attacks, "write_outside", json.dumps(spec))
    assert len(lines) == len(targets) + 5
    assert not (outside / "pwned.txt").exists()
    assert (fake_home / ".bashrc").read_text() == "# the user's shell start-up file\n"
    assert attacks.paths.grants_file.read_bytes() == grants_before
    assert not (attacks.paths.user_plugins / "planted_plugin.py").exists()
    assert not (other_scratch / "planted.txt").exists()
    assert victim.read_text() == "keep me"
    assert secret.read_text() == secret_text
    scratch = attacks.paths.scratch / "write_outside"
    assert not (scratch / "hardlink-in").exists() and not (scratch / "renamed-in").exists()
    assert_host_healthy(attacks, host)


def test_writing_into_its_own_plugin_folder_is_blocked(attacks: PluginManager, host: Host) -> None:
    own = ATTACKS / "write_plugin_dir_plugin.py"
    digest = file_sha256(own)
    try:
        lines = attack(attacks, "write_plugin_dir")
        assert len(lines) == 3
        assert not (ATTACKS / "planted_plugin.py").exists()
        assert not (ATTACKS / "planted_dir").exists()
        assert file_sha256(own) == digest
    finally:  # never leave a planted file in the repository, even when the test fails
        (ATTACKS / "planted_plugin.py").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (ATTACKS / "planted_dir").rmdir()
    assert_host_healthy(attacks, host)


def test_planting_a_pth_file_in_site_packages_is_blocked(attacks: PluginManager, host: Host) -> None:
    name = f"zz_sandchat_attack_{secrets.token_hex(4)}.pth"
    folders = {*site.getsitepackages(), sys.prefix}
    try:
        lines = attack(attacks, "write_pth", name)
        assert lines
        assert not [folder for folder in folders if os.path.exists(os.path.join(folder, name))]
    finally:
        for folder in folders:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
    assert_host_healthy(attacks, host)


def test_writing_past_the_file_size_limit_fails_with_efbig(attacks: PluginManager, host: Host) -> None:
    lines = attack(attacks, "huge_file")
    # setrlimit's EPERM (seccomp; for root it would otherwise succeed) is Python's ValueError.
    assert lines[0].startswith("BLOCKED: lift RLIMIT_FSIZE") and "not allowed to raise" in lines[0], lines
    assert lines[1].startswith(f"BLOCKED: write past {Limits().file_size} bytes") and errnos(lines)[1] == errno.EFBIG
    huge = attacks.paths.scratch / "huge_file" / "huge.bin"
    assert huge.stat().st_size <= Limits().file_size
    assert_host_healthy(attacks, host)


def test_residual_stat_reveals_files_outside_the_sandbox_and_inotify_is_refused(
    attacks: PluginManager, host: Host, fake_home: Path
) -> None:
    """Landlock mediates neither stat() nor inotify: a plugin learns that a file exists and
    its size, never its content. inotify (when its folder changes) is off the allow list."""
    secret = fake_home / ".ssh" / "id_ed25519"
    result = attacks.handle("stat_probe").generate_response("", str(secret))
    lines = result.splitlines()
    assert lines[0] == f"LEAKED: stat {secret}: size {secret.stat().st_size}", lines
    assert lines[1].startswith("BLOCKED: inotify") and errnos(lines[1:]) == [errno.EPERM], lines
    assert attack(attacks, "read_secret", json.dumps([str(secret)]))  # the content stays out of reach
    assert_host_healthy(attacks, host)


# -- the host process ---------------------------------------------------------------------------


def test_reading_the_host_environ_through_proc_is_blocked(attacks: PluginManager, host: Host) -> None:
    lines = attack(attacks, "proc_environ")
    assert len(lines) == 3 and set(errnos(lines)) == {errno.EACCES}
    assert host.env_value not in "\n".join(lines)
    assert_host_healthy(attacks, host)


def test_reading_the_host_memory_is_blocked(attacks: PluginManager, host: Host) -> None:
    lines = attack(attacks, "proc_mem", f"{host.memory_address()} {len(host.memory)}")
    assert lines[0].startswith("BLOCKED: /proc/host/mem") and errnos(lines)[0] == errno.EACCES
    assert lines[1].startswith("BLOCKED: process_vm_readv") and errnos(lines)[1] == errno.EPERM
    assert host.memory.decode() not in "\n".join(lines)
    assert_host_healthy(attacks, host)


def test_signalling_the_host_or_a_bystander_is_blocked(attacks: PluginManager, host: Host) -> None:
    bystander = subprocess.Popen(["sleep", "120"])
    try:
        lines = attack(attacks, "signal_host", str(bystander.pid))
        assert len(lines) == 4 and set(errnos(lines)) == {errno.EPERM}
        assert bystander.poll() is None, "the bystander was killed"
    finally:
        bystander.kill()
        bystander.wait()
    assert_host_healthy(attacks, host)  # includes: no SIGTERM arrived


def test_ptrace_of_the_host_is_blocked(attacks: PluginManager, host: Host) -> None:
    lines = attack(attacks, "ptrace_host")
    assert len(lines) == 2 and set(errnos(lines)) == {errno.EPERM}
    assert_host_healthy(attacks, host)


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    return libc


@contextlib.contextmanager
def sysv_objects(payload: bytes) -> Iterator[tuple[int, int]]:
    """A SysV shared-memory segment and message queue (mode 0600) holding ``payload``."""
    libc = _libc()
    shm_key, msg_key = (secrets.randbelow(2**30) + 1 for _ in range(2))
    shmid = libc.shmget(shm_key, 4096, 0o1600)  # IPC_CREAT | 0600
    msqid = libc.msgget(msg_key, 0o1600)
    assert shmid >= 0 and msqid >= 0, ctypes.get_errno()
    try:
        address = libc.shmat(shmid, None, 0)
        ctypes.memmove(address, payload, len(payload))
        libc.shmdt(ctypes.c_void_p(address))
        message = ctypes.create_string_buffer(8 + len(payload))
        ctypes.memmove(ctypes.addressof(message), (1).to_bytes(8, sys.byteorder) + payload, 8 + len(payload))
        assert libc.msgsnd(msqid, message, len(payload), 0) == 0, ctypes.get_errno()
        yield shm_key, msg_key
    finally:
        libc.shmctl(shmid, 0, None)  # IPC_RMID
        libc.msgctl(msqid, 0, None)


def test_reading_sysv_shared_memory_and_queues_is_blocked(attacks: PluginManager, host: Host) -> None:
    """SysV IPC is named by keys, not paths: Landlock never sees it (hole found and fixed
    with seccomp)."""
    payload = host.memory
    with sysv_objects(payload) as (shm_key, msg_key):
        lines = attack(attacks, "sysv_ipc", f"{shm_key} {msg_key} {len(payload)}")
        assert errnos(lines) == [errno.EPERM, errno.EPERM]
        assert payload.decode() not in "\n".join(lines)
    assert_host_healthy(attacks, host)


def test_renicing_pinning_or_starving_the_host_is_blocked(attacks: PluginManager, host: Host) -> None:
    """Priorities and affinity take a pid, and Landlock does not scope them (hole found
    and fixed with seccomp)."""
    before = (os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0), os.sched_getscheduler(0))
    lines = attack(attacks, "sched_host")
    assert errnos(lines) == [errno.EPERM] * 5
    assert (os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0), os.sched_getscheduler(0)) == before
    assert_host_healthy(attacks, host)


def test_changing_the_host_name_is_blocked(attacks: PluginManager, host: Host) -> None:
    """sethostname/setdomainname are machine-wide for root (hole found and fixed)."""
    assert errnos(attack(attacks, "hostname")) == [errno.EPERM, errno.EPERM]
    assert_host_healthy(attacks, host)


# -- sockets ------------------------------------------------------------------------------------


def test_tcp_connect_to_a_local_listener_is_blocked(attacks: PluginManager, host: Host) -> None:
    with listener() as server:
        lines = attack(attacks, "tcp_connect", str(port(server)))
        assert errnos(lines) == [errno.EPERM]  # socket() itself is refused
        assert accepted(server) == []
    assert_host_healthy(attacks, host)


def test_udp_sendto_is_blocked(attacks: PluginManager, host: Host) -> None:
    with udp_socket() as server:
        lines = attack(attacks, "udp_send", str(port(server)))
        assert errnos(lines) == [errno.EPERM]
        assert datagrams(server) == []
    assert_host_healthy(attacks, host)


def test_pathname_unix_socket_connect_is_blocked(attacks: PluginManager, host: Host, tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with listener(socket.AF_UNIX, path) as server:
        lines = attack(attacks, "unix_socket", path)
        assert errnos(lines) == [errno.EPERM]
        assert accepted(server) == []
    assert_host_healthy(attacks, host)


def test_abstract_unix_socket_connect_is_blocked(attacks: PluginManager, host: Host) -> None:
    name = f"sandchat-test-{secrets.token_hex(6)}"
    with listener(socket.AF_UNIX, "\0" + name) as server:
        lines = attack(attacks, "abstract_socket", name)
        assert errnos(lines) == [errno.EPERM]
        assert accepted(server) == []
    assert_host_healthy(attacks, host)


# -- processes ------------------------------------------------------------------------------------


def processes_of(session: int, marker: str) -> list[tuple[int, str]]:
    """Live processes in session/group ``session`` or whose command line contains ``marker``."""
    return [
        (pid, cmdline)
        for pid, fields, cmdline in processes()
        if fields[0] != b"Z" and (session in (int(fields[2]), int(fields[3])) or marker in cmdline)
    ]


def test_fork_bomb_fails_on_the_first_fork(attacks: PluginManager, host: Host) -> None:
    lines = attack(attacks, "fork_bomb")
    assert lines == ["BLOCKED: fork after 0 forks: PermissionError 1 Operation not permitted"]
    assert_host_healthy(attacks, host)


def test_running_a_shell_is_blocked(attacks: PluginManager, host: Host, tmp_path: Path) -> None:
    proof = attacks.paths.scratch / "exec_shell" / "proof.txt"  # writable: only exec can stop it
    lines = attack(attacks, "exec_shell", str(proof))
    assert len(lines) == 4
    assert lines[0].startswith("BLOCKED: os.system: status")
    assert errnos(lines)[1:] == [errno.EPERM] * 3
    assert not proof.exists()
    assert attacks.handle("exec_shell").running  # a failed execv did not replace the process
    assert_host_healthy(attacks, host)


def test_double_forked_daemon_cannot_outlive_the_plugin(home: Path, host: Host) -> None:
    with PluginManager([ATTACKS], home=home, deadlines=FAST) as manager:
        client = manager.handle("daemon")
        pid = client.start()["pid"]
        assert attack(manager, "daemon") == ["BLOCKED: fork: PermissionError 1 Operation not permitted"]
        assert_host_healthy(manager, host)
    # Defence in depth: whatever got started is gone once the manager is closed.
    assert not client.running
    assert processes_of(pid, str(manager.paths.scratch / "daemon")) == []
    host.assert_intact()


def test_memory_bomb_is_a_memory_error_in_the_plugin(home: Path, host: Host) -> None:
    # Touching ~2 GiB of pages takes 1.5 s on an idle machine: a generous deadline, so
    # that only the memory limit can end this call.
    deadlines = replace(FAST, first_chunk=30, total=30)
    limit = min(Limits().address_space, Limits().data)
    with PluginManager([ATTACKS], home=home, deadlines=deadlines) as manager:
        lines = attack(manager, "memory_bomb")
        assert lines[0].startswith("BLOCKED: MemoryError allocating"), lines
        failed_at = int(lines[0].split("allocating ")[1].split()[0]) * MiB
        assert failed_at <= limit
        assert manager.handle("memory_bomb").count_tokens("still alive") == 2
        assert_host_healthy(manager, host)


def test_cpu_spin_is_killed_at_the_call_deadline(home: Path, host: Host) -> None:
    deadlines = replace(FAST, first_chunk=1.5, total=1.5)
    with PluginManager([ATTACKS], home=home, deadlines=deadlines) as manager:
        client = manager.handle("cpu_spin")
        pid = client.start()["pid"]
        with pytest.raises(PluginTimeout):
            client.generate_response("", "spin")
        assert not client.running
        assert not os.path.exists(f"/proc/{pid}"), "the spinning process was not killed and reaped"
        assert_host_healthy(manager, host)


def test_cpu_spin_is_killed_by_the_cpu_rlimit_without_a_deadline(home: Path, host: Host) -> None:
    """The rlimit layer alone: a 1 s CPU limit ends the spin long before the 20 s deadline."""
    with PluginManager([ATTACKS], home=home, deadlines=FAST) as manager:
        config = manager.launch_config("cpu_spin")
        config = replace(
            config,
            sandbox=replace(config.sandbox, limits=Limits(cpu_seconds=1)),
            deadlines=replace(FAST, first_chunk=20, total=20),
        )
        with contextlib.closing(Plugin(config)) as client:
            with pytest.raises(PluginCrashed) as info:
                client.generate_response("", "spin")
            assert info.value.signal in (signal.SIGXCPU, signal.SIGKILL), info.value
        assert_host_healthy(manager, host)


def test_fd_exhaustion_leaves_the_plugin_answering(attacks: PluginManager, host: Host) -> None:
    lines = attack(attacks, "fd_exhaustion")
    assert errnos(lines) == [errno.EMFILE]
    opened = int(lines[0].split("#")[1].split(":")[0])
    assert opened < Limits().open_files
    client = attacks.handle("fd_exhaustion")
    assert client.count_tokens("a b c") == 3
    assert errnos(attack(attacks, "fd_exhaustion")) == [errno.EMFILE]  # a second call is served too
    assert_host_healthy(attacks, host)


# -- environment and terminal ---------------------------------------------------------------------


def test_ungranted_environment_variables_are_absent(home: Path, host: Host) -> None:
    secret = "secret-token-" + secrets.token_hex(8)
    environ = {"SECRET_TOKEN": secret, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", CANARY_VAR: host.env_value,
               "ANTHROPIC_API_KEY": "sk-ant-" + secrets.token_hex(8)}  # fmt: skip
    settings = Settings(paths=Paths.from_home(home), environ=environ)
    with PluginManager([ATTACKS], settings=settings, deadlines=FAST) as manager:
        seen = json.loads(manager.handle("env_snoop").generate_response("", ""))
        assert "SECRET_TOKEN" not in seen and CANARY_VAR not in seen and "ANTHROPIC_API_KEY" not in seen
        assert not [k for k, v in seen.items() if secret in v or host.env_value in v]
        # Only the pass-through list, the sandbox's HOME/TMPDIR, and Python's own locale coercion.
        assert set(seen) <= {*HOST_ENV_PASSTHROUGH, "HOME", "TMPDIR", "LC_CTYPE"}, seen
        assert seen["HOME"] == seen["TMPDIR"] == str(manager.paths.scratch / "env_snoop")
        assert_host_healthy(manager, host)


def test_opening_a_terminal_is_blocked(attacks: PluginManager, host: Host) -> None:
    lines = attack(attacks, "tty_open")
    assert len(lines) == 4
    assert errnos(lines)[0] in (errno.EACCES, errno.ENXIO)  # Landlock, or no controlling tty at all
    assert set(errnos(lines)[1:]) <= {errno.EACCES, errno.ENOENT}
    assert_host_healthy(attacks, host)


def test_tiocsti_is_refused_by_the_filter_itself(attacks: PluginManager, host: Host) -> None:
    lines = attack(attacks, "tiocsti")
    assert errnos(lines) == [errno.EPERM] * 3  # EPERM from seccomp, not ENOTTY from the fd
    assert_host_healthy(attacks, host)


def test_io_uring_setup_is_refused(attacks: PluginManager, host: Host) -> None:
    assert errnos(attack(attacks, "io_uring")) == [errno.EPERM]
    assert_host_healthy(attacks, host)


# -- grants: network and environment ------------------------------------------------------------


def test_granted_port_is_reachable_and_no_other(home: Path, host: Host, tmp_path: Path) -> None:
    unix_path = str(tmp_path / "g.sock")
    abstract = f"sandchat-test-{secrets.token_hex(6)}"
    with listener() as granted, listener() as other, listener(socket.AF_UNIX, unix_path) as unix_server, \
            listener(socket.AF_UNIX, "\0" + abstract) as abstract_server:  # fmt: skip
        with PluginManager([ATTACKS], home=home, deadlines=FAST) as manager:
            grant_network(manager, "net_probe", f"127.0.0.1:{port(granted)}")
            client = manager.handle("net_probe")
            assert client.start()["sandbox"]["profile"] == "network"
            steps = [["tcp", "127.0.0.1", port(granted)], ["tcp", "127.0.0.1", port(other)],
                     ["unix", unix_path], ["abstract", abstract]]  # fmt: skip
            lines = client.generate_response("", json.dumps(steps)).splitlines()
            assert lines[0].startswith("SENT: tcp"), lines
            assert lines[1].startswith("BLOCKED: tcp") and errnos(lines[1:2]) == [errno.EACCES], lines
            assert f"the sandbox refused a connection to 127.0.0.1:{port(other)}" in lines[1]  # the host's words
            assert lines[2].startswith("BLOCKED: unix") and lines[3].startswith("BLOCKED: abstract"), lines
            assert errnos(lines[2:]) == [errno.EPERM, errno.EPERM]  # AF_UNIX stays denied
            assert accepted(granted) == [b"hello from net_probe"]
            assert accepted(other) == []
            assert accepted(unix_server) == [] and accepted(abstract_server) == []
            assert_host_healthy(manager, host)


def test_network_profile_refuses_sockets_that_bypass_the_port_rules(home: Path, host: Host) -> None:
    """Landlock's port rules see TCP only: MPTCP reached any port, and root could open raw
    and packet sockets (hole found and fixed: seccomp allows only TCP and UDP sockets)."""
    with listener() as granted, listener() as other:
        with PluginManager([ATTACKS], home=home, deadlines=FAST) as manager:
            grant_network(manager, "odd_sockets", f"127.0.0.1:{port(granted)}")
            assert manager.handle("odd_sockets").start()["sandbox"]["profile"] == "network"
            lines = attack(manager, "odd_sockets", str(port(other)))
            assert errnos(lines) == [errno.EPERM] * 6
            assert accepted(other) == [] and accepted(granted) == []
            assert_host_healthy(manager, host)


def test_ungranted_network_plugin_gets_no_network(attacks: PluginManager, host: Host) -> None:
    with listener() as server, udp_socket() as udp:
        steps = [["tcp", "127.0.0.1", port(server)], ["udp", "127.0.0.1", port(udp)]]
        lines = attack(attacks, "net_probe", json.dumps(steps))
        assert errnos(lines) == [errno.EPERM, errno.EPERM]
        assert accepted(server) == [] and datagrams(udp) == []
    assert_host_healthy(attacks, host)


def test_grant_lapses_when_the_plugin_file_changes(home: Path, host: Host, tmp_path: Path) -> None:
    folder = tmp_path / "user_plugins"
    folder.mkdir()
    copy = folder / "net_probe_plugin.py"
    shutil.copyfile(ATTACKS / "net_probe_plugin.py", copy)
    with listener() as server:
        with PluginManager([folder], home=home, deadlines=FAST) as manager:
            grant_network(manager, "net_probe", f"127.0.0.1:{port(server)}")
            with copy.open("a") as f:
                f.write("# edited after the grant\n")  # any change: the grant no longer applies
            assert manager.handle("net_probe").start()["sandbox"]["profile"] == "untrusted"
            lines = attack(manager, "net_probe", json.dumps([["tcp", "127.0.0.1", port(server)]]))
            assert errnos(lines) == [errno.EPERM]
            assert accepted(server) == []
            assert_host_healthy(manager, host)


@pytest.mark.parametrize("source", ["keystore", "environ"])
def test_granted_env_var_reaches_only_the_granted_plugin(home: Path, host: Host, source: str) -> None:
    value = "fake-key-" + secrets.token_hex(8)
    environ = {"FAKE_API_KEY": value} if source == "environ" else {}
    settings = Settings(paths=Paths.from_home(home), environ=environ)
    with PluginManager([ATTACKS], settings=settings, deadlines=FAST) as manager:
        if source == "keystore":
            manager.keys.set("FAKE_API_KEY", value)
        path = manager.plugin_file("key_granted").path
        manager.grants.grant("key_granted", file_sha256(path), network=(), env=("FAKE_API_KEY",))
        # Both files request FAKE_API_KEY in their metadata; only one was granted it.
        assert manager.plugin_file("key_ungranted").metadata.env == ("FAKE_API_KEY",)
        assert manager.handle("key_granted").generate_response("", "") == value
        assert manager.handle("key_ungranted").generate_response("", "") == "<absent>"
        seen = json.loads(manager.handle("env_snoop").generate_response("", ""))
        assert value not in seen.values()
        # Reading the key file directly does not work either.
        assert attack(manager, "read_secret", json.dumps([str(manager.paths.keys_file)]))
        assert_host_healthy(manager, host)


# -- residual risks of the network profile (documented, not blocked) ------------------------------


def test_network_profile_sends_no_udp_anywhere(home: Path, host: Host) -> None:
    """Once a residual risk (Landlock has no UDP rules): now no datagram socket exists."""
    with listener() as granted, udp_socket() as udp:
        with PluginManager([ATTACKS], home=home, deadlines=FAST) as manager:
            grant_network(manager, "net_probe", f"127.0.0.1:{port(granted)}")
            steps = [["udp", "127.0.0.1", port(udp)], ["udp", "127.0.0.1", port(granted)]]
            lines = manager.handle("net_probe").generate_response("", json.dumps(steps)).splitlines()
            assert [line.split(":")[0] for line in lines] == ["BLOCKED", "BLOCKED"], lines
            assert "no UDP" in lines[0]
            assert datagrams(udp) == [] and accepted(granted) == []
            assert_host_healthy(manager, host)


def test_network_profile_port_grant_is_per_host(home: Path, host: Host) -> None:
    """Once a residual risk (Landlock TCP rules name ports): a grant of 127.0.0.1:P no
    longer opens P on 127.0.0.2."""
    with contextlib.ExitStack() as stack:
        try:
            elsewhere = stack.enter_context(listener(address=("127.0.0.2", 0)))
        except OSError as exc:
            pytest.skip(f"cannot listen on 127.0.0.2: {exc}")
        with PluginManager([ATTACKS], home=home, deadlines=FAST) as manager:
            grant_network(manager, "net_probe", f"127.0.0.1:{port(elsewhere)}")
            steps = [["tcp", "127.0.0.2", port(elsewhere)]]
            lines = manager.handle("net_probe").generate_response("", json.dumps(steps)).splitlines()
            assert lines[0].startswith("BLOCKED: tcp") and errnos(lines) == [errno.EACCES], lines
            assert accepted(elsewhere) == []
            assert_host_healthy(manager, host)


# -- the same suite, unprivileged ---------------------------------------------------------------

_NOBODY_PROBE = """
import os, subprocess, sys
assert os.geteuid() == 65534, os.geteuid()
import app, runner, msgpack, tiktoken, pytest, pytest_timeout  # the host side and the test tools
subprocess.run([sys.executable, "-I", "-S", "-c", "import sys"], check=True)  # the child's exec
open(sys.argv[1], "rb").close()  # the test file itself
"""


def _setpriv(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all"]


# Not test_redteam_egress.py: its attacks are on the broker's logic, the same for any uid, and
# as nobody they would add most of a minute to the suite's longest test.
ATTACK_MODULES = sorted(str(p) for pattern in ("test_attacks*.py", "test_egress_attacks.py") for p in Path(__file__).parent.glob(pattern))


@pytest.mark.timeout(480)
def test_attack_suite_passes_unprivileged_as_nobody() -> None:
    """Re-run every attack module as user nobody: the layers must hold without root's help
    (and without root's extra powers masking a failure, e.g. DAC-readable files)."""
    if os.geteuid() != 0:
        pytest.skip("not root: cannot switch to user nobody (this run is already unprivileged)")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    python = os.environ.get("SANDCHAT_NOBODY_PYTHON") or sys.executable
    base = Path(tempfile.mkdtemp(prefix="sandchat-nobody-", dir="/tmp"))  # pytest's own tmp is 0700 root
    try:
        os.chown(base, NOBODY, NOBODY)
        (base / "home").mkdir()
        os.chown(base / "home", NOBODY, NOBODY)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base / "home"), "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(base)}  # fmt: skip
        probe = subprocess.run(
            [*_setpriv(NOBODY), python, "-c", _NOBODY_PROBE, __file__],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if probe.returncode != 0:
            why = (probe.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(
                f"user nobody cannot run sandchat with {python} here ({why}); the repository, the venv "
                f"and the interpreter must be readable and traversable by nobody (set SANDCHAT_NOBODY_PYTHON "
                f"to an interpreter nobody can run with sandchat's dependencies)"
            )
        run = subprocess.run(
            [*_setpriv(NOBODY), python, "-m", "pytest", *ATTACK_MODULES, "-q", "-p", "no:cacheprovider",
             f"--basetemp={base / 'basetemp'}", "-k", "not unprivileged_as_nobody", "-o", "addopts=-ra"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=460,
        )  # fmt: skip
        summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
        assert run.returncode == 0, f"as nobody: {summary}\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
        assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
        print(f"as nobody: {summary}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
