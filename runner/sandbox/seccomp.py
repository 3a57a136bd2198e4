"""A hand-built seccomp BPF filter: the allow list of ``runner.sandbox.allowlist``, compiled.

Default deny: a call the list does not name fails with EPERM (Python raises
PermissionError), so a plugin fails politely instead of dying; clone3 gets ENOSYS
so glibc falls back to clone(), whose flags a filter can read. A foreign syscall
ABI (wrong audit arch, x32 numbers, the 32-bit entry on x86_64) kills the process:
a list written for one ABI means nothing for another.

Layout: the arch checks, then one block per FILTERED call (each ends in a return),
then a binary search over the numbers of the calls allowed outright. A path that
reads no argument is what the kernel's seccomp action cache (Linux 5.11+) turns into
a bitmap lookup, so the list's length costs the common calls nothing; the binary
search bounds the rest to about eight comparisons.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from . import allowlist, kernel

# Classic BPF opcodes (include/uapi/linux/filter.h).
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JA = 0x05  # BPF_JMP | BPF_JA (32-bit offset in k)
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_AND_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
_EPERM = RET_ERRNO | errno.EPERM
_ENOSYS = RET_ERRNO | errno.ENOSYS
_PRETEND = RET_ERRNO | 0  # the call is not made and returns 0: success

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_FILTER_FLAG_TSYNC = 1

# struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6].  Both supported
# arches are little-endian, so an argument's low 32-bit word comes first.
_OFF_NR = 0
_OFF_ARCH = 4
_X32_SYSCALL_BIT = 0x40000000
_SOCK_TYPE_MASK = 0xF  # the type's low bits; the rest (SOCK_NONBLOCK, SOCK_CLOEXEC) are flags
_LEAF = 4  # a search range this small is checked one number at a time

Insn = tuple[int, int, int, int]


def _stmt(code: int, k: int) -> Insn:
    return (code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> Insn:
    return (code, jt, jf, k)


def _load_arg(index: int, high: bool = False) -> Insn:
    return _stmt(_LD_W_ABS, 16 + 8 * index + (4 if high else 0))


_DENY, _ALLOW = _stmt(_RET_K, _EPERM), _stmt(_RET_K, RET_ALLOW)


def _one_of(arg: int, values: list[int]) -> list[Insn]:
    """Allow when the low word of ``arg`` is one of ``values``; else EPERM."""
    n = len(values)
    assert 0 < n < 256
    return [_load_arg(arg), *(_jump(_JEQ_K, v & 0xFFFFFFFF, n - i, 0) for i, v in enumerate(values)), _DENY, _ALLOW]


def _match(arg: int, actions: dict[int, int]) -> list[Insn]:
    """Return ``actions[value]`` for the low word of ``arg``; EPERM for any other value."""
    n = len(actions)
    assert 0 < n < 256
    jumps = [_jump(_JEQ_K, value & 0xFFFFFFFF, n, 0) for value in actions]  # each lands on its own return
    return [_load_arg(arg), *jumps, _DENY, *(_stmt(_RET_K, action) for action in actions.values())]


def _flags_within(arg: int, mask: int) -> list[Insn]:
    """Allow when ``arg`` sets no bit outside ``mask``; else EPERM."""
    return [_load_arg(arg), _jump(_JSET_K, ~mask & 0xFFFFFFFF, 0, 1), _DENY, _ALLOW]


def _null(arg: int) -> list[Insn]:
    """Fall through when pointer ``arg`` is NULL (both words zero); else EPERM."""
    return [_load_arg(arg), _jump(_JEQ_K, 0, 1, 0), _DENY, _load_arg(arg, high=True), _jump(_JEQ_K, 0, 1, 0), _DENY]


def _setsockopt() -> list[Insn]:
    """setsockopt(fd, level, option, ...): only the (level, option) pairs of SOCKET_OPTIONS."""
    by_level = [(level, _one_of(2, list(options))) for level, options in allowlist.SOCKET_OPTIONS.items()]
    prog: list[Insn] = [_load_arg(1)]
    offset = sum(len(block) for _, block in by_level)  # from the first block to the final DENY
    for i, (level, _) in enumerate(by_level):
        before = sum(len(block) for _, block in by_level[:i])
        left = len(by_level) - 1 - i  # level tests still to come after this one
        prog.append(_jump(_JEQ_K, level, left + before, 0 if left else left + offset))
    for _, block in by_level:
        prog += block
    return prog + [_DENY]


def _socketpair() -> list[Insn]:
    # AF_UNIX stream pairs only: a datagram pair could sendto() any pathname socket.
    return [
        _load_arg(0), _jump(_JEQ_K, allowlist.AF_UNIX, 1, 0), _DENY,
        _load_arg(1), _stmt(_AND_K, _SOCK_TYPE_MASK), _jump(_JEQ_K, allowlist.SOCK_STREAM, 1, 0), _DENY,
        _load_arg(2), _jump(_JEQ_K, 0, 1, 0), _DENY, _ALLOW,
    ]  # fmt: skip


def _clone() -> list[Insn]:
    # clone() reads only the low 32 bits of its flags (lower_32_bits() in
    # kernel/fork.c); arg 0 is the flags word on both x86_64 and aarch64.
    return [
        _load_arg(0),
        _jump(_JSET_K, allowlist.CLONE_NAMESPACES, 0, 1), _DENY,
        _jump(_JSET_K, allowlist.CLONE_THREAD, 0, 1), _ALLOW,  # a thread
        _DENY,  # fork/vfork/posix_spawn
    ]  # fmt: skip


def _futex() -> list[Insn]:
    # futex(uaddr, op, ...): a private futex is keyed by this process's own memory; a shared
    # one on a file two plugins map is keyed by inode and offset, and meets across them.
    return [_load_arg(1), _jump(_JSET_K, allowlist.FUTEX_PRIVATE_FLAG, 1, 0), _DENY, _ALLOW]


def _prlimit() -> list[Insn]:
    return _null(2) + [_ALLOW]  # prlimit64(pid, resource, new, old): a NULL new is a read


def _kill(pid: int) -> list[Insn]:
    return _one_of(0, [0, pid, -pid])  # itself, its own group (0 or -pgid; pgid == pid)


def _send(flags_arg: int, address_arg: int | None) -> list[Insn]:
    mask = sum(allowlist.SEND_FLAGS)
    return (_null(address_arg) if address_arg is not None else []) + _flags_within(flags_arg, mask)


def _rules(network: bool, pid: int) -> dict[str, list[Insn]]:
    """One block per FILTERED call; every block ends in a return."""
    return {
        "ioctl": _one_of(1, list(allowlist.IOCTL_REQUESTS)),
        "fcntl": _match(1, {**dict.fromkeys(allowlist.FCNTL_COMMANDS, RET_ALLOW), **dict.fromkeys(allowlist.FCNTL_PRETEND, _PRETEND)}),
        "flock": [_stmt(_RET_K, _PRETEND)],
        "prctl": _one_of(0, list(allowlist.PRCTL_OPTIONS)),
        "arch_prctl": _one_of(0, list(allowlist.ARCH_PRCTL_CODES)),
        "madvise": _one_of(2, list(allowlist.MADVISE_ADVICE)),
        "futex": _futex(),
        "clone": _clone(),
        "clone3": [_stmt(_RET_K, _ENOSYS)],
        "prlimit64": _prlimit(),
        "kill": _kill(pid),
        "tgkill": _one_of(0, [pid]),
        "socketpair": _socketpair(),
        "setsockopt": _setsockopt() if network else [_DENY],
        "sendto": _send(3, 4),
        "sendmsg": _send(2, None),
    }


def _search(numbers: list[int]) -> list[Insn]:
    """A binary search over sorted ``numbers``: RET ALLOW on a hit, EPERM otherwise.

    The accumulator holds the syscall number throughout; every path ends in a return.
    """
    if len(numbers) <= _LEAF:
        n = len(numbers)
        return [*(_jump(_JEQ_K, v, n - i, 0) for i, v in enumerate(numbers)), _DENY, _ALLOW]
    mid = len(numbers) // 2
    low, high = _search(numbers[:mid]), _search(numbers[mid:])
    if len(low) < 256:
        return [_jump(_JGE_K, numbers[mid], len(low), 0), *low, *high]
    return [_jump(_JGE_K, numbers[mid], 0, 1), _stmt(_JA, len(low)), *low, *high]


def _prologue() -> list[Insn]:
    """Kill a foreign ABI (another audit arch, x32 numbers); leave the call's number loaded."""
    prog = [
        _stmt(_LD_W_ABS, _OFF_ARCH),
        _jump(_JEQ_K, kernel.AUDIT_ARCH, 1, 0),
        _stmt(_RET_K, RET_KILL_PROCESS),
        _stmt(_LD_W_ABS, _OFF_NR),
    ]
    if kernel.MACHINE == "x86_64":
        # x32 syscalls share the x86_64 audit arch but use other numbers.
        prog += [_jump(_JGE_K, _X32_SYSCALL_BIT, 0, 1), _stmt(_RET_K, RET_KILL_PROCESS)]
    return prog


def build(network: bool, pid: int) -> list[Insn]:
    """Return the filter as (code, jt, jf, k) instructions for this architecture.

    ``pid`` is the process the filter is for: kill() and tgkill() may target it alone.
    """
    kernel.require_supported_arch()
    numbers = kernel.SYSCALLS
    prog = _prologue()
    for name, block in _rules(network, pid).items():  # checked before the search: ioctl, fcntl first
        if name in numbers:
            assert block[-1][0] == _RET_K and len(block) < 256
            prog += [_jump(_JEQ_K, numbers[name], 0, len(block)), *block]
    plain = set(allowlist.ALWAYS) | (set(allowlist.NETWORK) if network else set())
    prog += _search(sorted({numbers[name] for name in plain if name in numbers}))
    return prog


def available() -> bool:
    """Whether this kernel supports filters with SECCOMP_RET_KILL_PROCESS (4.14+)."""
    if not kernel.SUPPORTED:
        return False
    action = ctypes.c_uint32(RET_KILL_PROCESS)
    try:
        kernel.syscall(kernel.SYSCALLS["seccomp"], SECCOMP_GET_ACTION_AVAIL, 0, ctypes.byref(action))
    except OSError:
        return False
    return True


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(network: bool) -> int:
    """Install the filter on every thread of this process; return its length.

    Sets PR_SET_NO_NEW_PRIVS first (required without CAP_SYS_ADMIN).  TSYNC
    applies the filter to all threads atomically, or fails if one cannot be
    synchronised.  Raises OSError on failure.
    """
    return _load(build(network, os.getpid()))


def build_no_exec() -> list[Insn]:
    """A filter that refuses execve and execveat (EPERM) and allows everything else.

    For a trusted program fed untrusted data (pip resolving a plugin's dependencies): it
    may not start another program, so no package's build code can run through it.
    """
    kernel.require_supported_arch()
    numbers = kernel.SYSCALLS
    prog = _prologue()
    for name in ("execve", "execveat"):
        prog += [_jump(_JEQ_K, numbers[name], 0, 1), _stmt(_RET_K, _EPERM)]
    return [*prog, _stmt(_RET_K, RET_ALLOW)]


def install_no_exec() -> int:
    """Install :func:`build_no_exec` on every thread of this process; return its length. Raises OSError."""
    return _load(build_no_exec())


def _load(prog: list[Insn]) -> int:
    raw = b"".join(struct.pack("=HBBI", *insn) for insn in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    kernel.set_no_new_privs()
    result = kernel.syscall(kernel.SYSCALLS["seccomp"], SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(fprog))
    if result != 0:
        # With TSYNC a positive result is the id of a thread that could not sync.
        raise OSError(errno.EAGAIN, f"seccomp: thread {result} could not be synchronised")
    return len(prog)
