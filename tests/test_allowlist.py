"""The seccomp allow list: its table in docs/security.md, and the filter compiled from it.

The filter is run here by a small classic-BPF interpreter over ``struct seccomp_data``,
so every rule is checked for every syscall number of both architectures without a
kernel; the attack suites check the same rules against the real kernel.
"""

from __future__ import annotations

import errno
import re
import struct
from pathlib import Path

import pytest

from runner.sandbox import allowlist, kernel, seccomp, syscalls

pytestmark = pytest.mark.timeout(30)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "security.md"
PID = 4242
EPERM = seccomp.RET_ERRNO | errno.EPERM
ENOSYS = seccomp.RET_ERRNO | errno.ENOSYS


def run(prog: list[tuple[int, int, int, int]], nr: int, args: tuple[int, ...] = (), arch: int | None = None) -> int:
    """The action ``prog`` returns for syscall ``nr`` with ``args`` (classic BPF, the subset we emit)."""
    words = list(args) + [0] * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, kernel.AUDIT_ARCH if arch is None else arch, 0, *[w & (2**64 - 1) for w in words])
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code == 0x20:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == 0x54:
            acc &= k
        elif code == 0x05:
            pc += k
        elif code in (0x15, 0x35, 0x45):
            hit = acc == k if code == 0x15 else acc >= k if code == 0x35 else bool(acc & k)
            pc += jt if hit else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected BPF opcode {code:#x}")


def documented() -> set[str]:
    """Names in the first column of the allow-list table in docs/security.md."""
    text = DOCS.read_text(encoding="utf-8")
    table = text[text.index("<!-- allowlist -->") : text.index("<!-- /allowlist -->")]
    return {name for row in re.findall(r"^\| ([^|]+) \|", table, re.M) for name in re.findall(r"`([a-z0-9_]+)`", row)}


def table() -> str:
    """The allow-list table as docs/security.md carries it, made from runner/sandbox/allowlist.py."""
    groups: dict[str, list[str]] = {}
    for name, why in allowlist.ALWAYS.items():
        groups.setdefault(why, []).append(name)
    rows = ["<!-- allowlist -->", "| call | arguments allowed | why |", "|---|---|---|"]
    rows += [f"| {', '.join(f'`{n}`' for n in names)} | any | {why} |" for why, names in groups.items()]
    rows += [f"| `{name}` | any, network profile only | {why} |" for name, why in allowlist.NETWORK.items()]
    values = {
        "IOCTL_REQUESTS": allowlist.IOCTL_REQUESTS, "FCNTL_COMMANDS": allowlist.FCNTL_COMMANDS,
        "FCNTL_PRETEND": allowlist.FCNTL_PRETEND, "PRCTL_OPTIONS": allowlist.PRCTL_OPTIONS,
        "MADVISE_ADVICE": allowlist.MADVISE_ADVICE, "SEND_FLAGS": allowlist.SEND_FLAGS,
        "ARCH_PRCTL_CODES": allowlist.ARCH_PRCTL_CODES,
        "SOCKET_OPTIONS": {k: v for options in allowlist.SOCKET_OPTIONS.values() for k, v in options.items()},
    }  # fmt: skip
    for name, (args, why) in allowlist.FILTERED.items():
        for key in sorted(values, key=len, reverse=True):
            args = args.replace(key, ", ".join(values[key].values()))
        rows.append(f"| `{name}` | {args} | {why} |")
    return "\n".join(rows + ["<!-- /allowlist -->"]) + "\n"


def test_every_allowed_call_has_its_row_in_the_docs_and_no_other() -> None:
    listed = set(allowlist.ALWAYS) | set(allowlist.NETWORK) | set(allowlist.FILTERED)
    missing, stale = listed - documented(), documented() - listed
    hint = "; the table from runner/sandbox/allowlist.py is:\n" + table()
    assert not missing, f"add a row to docs/security.md's allow-list table for: {sorted(missing)}{hint}"
    assert not stale, f"docs/security.md lists calls the filter does not allow: {sorted(stale)}{hint}"


def test_the_docs_table_says_what_the_list_says() -> None:
    text = DOCS.read_text(encoding="utf-8")
    start, end = text.index("<!-- allowlist -->"), text.index("<!-- /allowlist -->") + len("<!-- /allowlist -->\n")
    assert text[start:end] == table(), "docs/security.md's allow-list table is stale; it should read:\n" + table()


def test_every_listed_name_is_a_real_syscall() -> None:
    listed = set(allowlist.ALWAYS) | set(allowlist.NETWORK) | set(allowlist.FILTERED)
    unknown = sorted(n for n in listed if n not in syscalls.X86_64 and n not in syscalls.AARCH64)
    assert not unknown, f"not a syscall on either architecture: {unknown}"


@pytest.mark.parametrize("network", [False, True])
def test_the_filter_allows_exactly_the_list(network: bool) -> None:
    prog = seccomp.build(network, PID)
    assert len(prog) < 4096
    plain = set(allowlist.ALWAYS) | (set(allowlist.NETWORK) if network else set())
    for name, nr in kernel.SYSCALLS.items():
        action = run(prog, nr)
        if name in plain:
            assert action == seccomp.RET_ALLOW, name
        elif name not in allowlist.FILTERED:
            assert action == EPERM, name
    assert run(prog, 1000) == EPERM and run(prog, 0x3FFFFFFF) == EPERM  # numbers no kernel has


def test_a_foreign_abi_is_killed() -> None:
    prog = seccomp.build(False, PID)
    assert run(prog, kernel.SYSCALLS["read"], arch=0x40000003) == seccomp.RET_KILL_PROCESS  # i386
    if kernel.MACHINE == "x86_64":
        assert run(prog, 0x40000000 | 0) == seccomp.RET_KILL_PROCESS  # x32 read


def nr(name: str) -> int:
    return kernel.SYSCALLS[name]


@pytest.mark.parametrize(
    ("name", "args", "allowed"),
    [
        ("ioctl", (0, 0x5401), True), ("ioctl", (0, 0x5412), False), ("ioctl", (0, 0x5452), False),
        ("ioctl", (0, 0x5401 | 1 << 32), True),  # the kernel reads an unsigned int
        ("fcntl", (3, 4), True), ("fcntl", (3, 1030), True), ("fcntl", (3, 5), True), ("fcntl", (3, 8), False),
        ("fcntl", (3, 10), False), ("fcntl", (3, 1024), False), ("fcntl", (3, 1031), False),
        ("prctl", (15,), True), ("prctl", (1, 0), False), ("prctl", (4, 1), False), ("prctl", (35,), False),
        ("madvise", (0, 4096, 4), True), ("madvise", (0, 4096, 100), False), ("madvise", (0, 4096, 101), False),
        ("futex", (0, 128), True), ("futex", (0, 128 | 9), True), ("futex", (0, 0), False), ("futex", (0, 9), False),
        ("clone", (0x3D0F00,), True), ("clone", (0x11,), False), ("clone", (0x3D0F00 | 0x10000000,), False),
        ("prlimit64", (0, 7, 0, 1234), True), ("prlimit64", (0, 7, 1234, 0), False), ("prlimit64", (0, 7, 1 << 32, 0), False),
        ("kill", (PID, 9), True), ("kill", (0, 9), True), ("kill", (-PID, 9), True), ("kill", (1, 0), False),
        ("kill", (PID + 1, 0), False), ("tgkill", (PID, PID + 1, 6), True), ("tgkill", (1, 1, 0), False),
        ("socketpair", (1, 1, 0), True), ("socketpair", (1, 1 | 0x80000, 0), True), ("socketpair", (1, 2, 0), False),
        ("socketpair", (1, 5, 0), False), ("socketpair", (2, 1, 0), False),
        ("sendto", (3, 0, 10, 0x4040, 0, 0), True), ("sendto", (3, 0, 10, 0x20000000, 0, 0), False),
        ("sendto", (3, 0, 10, 0, 0x7FFF0000, 16), False), ("sendto", (3, 0, 10, 1, 0, 0), False),
        ("sendmsg", (3, 0, 0x4000), True), ("sendmsg", (3, 0, 0x20000000), False), ("sendmsg", (3, 0, 0x4000000), False),
    ],
)  # fmt: skip
def test_argument_rules(name: str, args: tuple[int, ...], allowed: bool) -> None:
    for network in (False, True):
        assert run(seccomp.build(network, PID), nr(name), args) == (seccomp.RET_ALLOW if allowed else EPERM), (name, args)


@pytest.mark.parametrize(
    "args",
    [(2, 1, 0), (2, 1, 6), (10, 1 | 0x800, 0), (2, 2, 0), (10, 2, 17), (2, 1, 262), (2, 3, 6), (1, 1, 0), (16, 3, 0), (17, 3, 0)],
)  # fmt: skip
def test_no_profile_may_create_a_socket(args: tuple[int, ...]) -> None:
    """TCP, UDP, raw, unix, netlink, packet: the network profile's sockets come from the host."""
    assert run(seccomp.build(True, PID), nr("socket"), args) == EPERM, args
    assert run(seccomp.build(False, PID), nr("socket"), args) == EPERM


@pytest.mark.parametrize(
    ("name", "args"), [("fcntl", (3, 6)), ("fcntl", (3, 7)), ("fcntl", (3, 37)), ("fcntl", (3, 38)), ("flock", (3, 2))]
)
def test_taking_a_lock_succeeds_without_locking(name: str, args: tuple[int, ...]) -> None:
    assert run(seccomp.build(False, PID), nr(name), args) == seccomp.RET_ERRNO  # errno 0: returns 0, not run


@pytest.mark.parametrize(
    ("args", "allowed"),
    [((3, 6, 1), True), ((3, 6, 4), True), ((3, 6, 5), True), ((3, 6, 6), True), ((3, 1, 9), True),
     ((3, 6, 30), False), ((3, 1, 25), False), ((3, 1, 26), False), ((3, 1, 36), False), ((3, 0, 19), False),
     ((3, 6, 19), False), ((3, 41, 26), False), ((3, 1 | 1 << 32, 9), True)],
)  # fmt: skip
def test_setsockopt_rule(args: tuple[int, ...], allowed: bool) -> None:
    """TCP_NODELAY and keep-alive only: not SO_BINDTODEVICE (25), SO_ATTACH_FILTER (26),
    SO_MARK (36), TCP_FASTOPEN_CONNECT (30), IP_TRANSPARENT (19), TCP_REPAIR (19)."""
    assert run(seccomp.build(True, PID), nr("setsockopt"), args) == (seccomp.RET_ALLOW if allowed else EPERM), args
    assert run(seccomp.build(False, PID), nr("setsockopt"), args) == EPERM


def test_clone3_gets_enosys_so_glibc_falls_back_to_clone() -> None:
    assert run(seccomp.build(False, PID), nr("clone3")) == ENOSYS


def test_the_untrusted_profile_has_no_network_calls() -> None:
    prog = seccomp.build(False, PID)
    for name in ("connect", "setsockopt", "bind", "listen", "accept", "accept4"):
        assert run(prog, nr(name)) == EPERM, name
    network = seccomp.build(True, PID)
    for name in ("connect", "bind", "listen", "accept", "accept4", "sendmmsg"):
        assert run(network, nr(name)) == EPERM, name  # the host connects; no datagram burst has a use
    assert run(network, nr("recvmsg")) == seccomp.RET_ALLOW  # how the host's connections arrive
    assert run(prog, nr("recvmsg")) == EPERM
