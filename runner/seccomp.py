"""A hand-built seccomp BPF filter: the syscalls a sandboxed plugin may not make.

The filter is a deny list: everything not named here is allowed, so ordinary
Python (threads, asyncio, files Landlock permits) keeps working.  Denied calls
return EPERM (Python raises PermissionError) so a plugin fails politely
instead of dying; only a foreign syscall ABI (wrong audit arch, x32) kills the
process, because a deny list written for one ABI means nothing for another.

Why each group is denied:
- socket(): every family, or all but AF_INET/AF_INET6 in the network profile.
  Landlock does not cover pathname AF_UNIX connect (D-Bus, ssh-agent,
  docker.sock), netlink or raw sockets.  socketpair stays: asyncio needs it.
  In the network profile only SOCK_STREAM/SOCK_DGRAM with protocol 0, TCP or
  UDP: Landlock's port rules see TCP only, so an MPTCP socket (protocol 262)
  would connect to any port, and a raw or packet socket (root) would sniff and
  forge any traffic.
- io_uring: it can open files and sockets without the syscalls filtered here.
- fork/vfork/clone without CLONE_THREAD, execve/execveat: no child processes
  escape the rlimits, the pinned process group, or PDEATHSIG.  clone3 gets
  ENOSYS because its flags live in memory BPF cannot read; glibc then falls
  back to clone() for pthread_create, which is checked by flags.
- setsid/setpgid: pins the process group, so the host's killpg reaches all.
- ptrace, process_vm_*, pidfd_getfd, process_madvise: other processes' memory.
- namespaces, mounts, chroot; keys; bpf; perf; userfaultfd; modules, kexec,
  reboot, swap, acct, clocks, personality, iopl/ioperm, fanotify,
  open_by_handle_at, syslog: kernel attack surface or root-only powers a
  plugin never needs (they matter when sandchat runs as root).
- chmod/chown/xattr families, mknod of char/block devices: Landlock does not
  cover metadata changes; a device node in a writable dir would bypass it.
- SysV IPC (shm*, msg*, sem*): segments and queues are named by a global key,
  not a path, so Landlock never sees them; a plugin could read or write the
  shared memory of any process of its uid (any process at all as root).
- setpriority, sched_set{scheduler,param,attr,affinity}, ioprio_set: they take
  a pid, and Landlock does not scope them: renicing or pinning the host, or a
  real-time busy loop that starves the machine (root).
- sethostname, setdomainname, vhangup, quotactl: machine-wide, root only.
- setrlimit/prlimit64 with a new limit: the rlimits are the memory/CPU cap.
  prlimit64(..., new=NULL, ...) is a pure read (resource.getrlimit) and allowed.
- ioctl TIOCSTI/TIOCLINUX: typing into a terminal the plugin may share.
"""
from __future__ import annotations

import ctypes
import errno
import struct

from . import kernel

# Classic BPF opcodes (include/uapi/linux/filter.h).
_LD_W_ABS = 0x20   # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15      # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35      # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45     # BPF_JMP | BPF_JSET | BPF_K
_AND_K = 0x54      # BPF_ALU | BPF_AND | BPF_K
_RET_K = 0x06      # BPF_RET | BPF_K

RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
_EPERM = RET_ERRNO | errno.EPERM

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_FILTER_FLAG_TSYNC = 1

# struct seccomp_data: int nr; u32 arch; u64 ip; u64 args[6].  Both supported
# arches are little-endian, so an argument's low 32-bit word comes first.
_OFF_NR = 0
_OFF_ARCH = 4
_X32_SYSCALL_BIT = 0x40000000

AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
SOCK_STREAM, SOCK_DGRAM, SOCK_TYPE_MASK = 1, 2, 0xF  # the type's low bits; the rest are flags
IPPROTO_TCP, IPPROTO_UDP = 6, 17
CLONE_THREAD = 0x00010000
# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET.  CLONE_NEWTIME
# (0x80) is only valid for unshare/clone3; in clone() those bits are CSIGNAL.
CLONE_NS_FLAGS = 0x7E020000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
S_IFMT, S_IFCHR, S_IFBLK = 0o170000, 0o020000, 0o060000

# Denied outright with EPERM; names absent on this architecture are skipped.
DENIED = (
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "process_madvise",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "open_tree",
    "open_tree_attr", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "execve", "execveat", "fork", "vfork", "setsid", "setpgid",
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat",
    "setxattr", "lsetxattr", "fsetxattr", "setxattrat", "removexattr", "lremovexattr",
    "fremovexattr", "removexattrat", "file_setattr", "setrlimit",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "personality", "iopl", "ioperm", "syslog",
    "fanotify_init", "open_by_handle_at",
    "shmget", "shmat", "shmctl", "shmdt", "msgget", "msgsnd", "msgrcv", "msgctl",
    "semget", "semop", "semtimedop", "semctl",
    "setpriority", "sched_setscheduler", "sched_setparam", "sched_setattr",
    "sched_setaffinity", "ioprio_set",
    "sethostname", "setdomainname", "vhangup", "quotactl", "quotactl_fd",
)

# Numbers for the names above that runner.kernel's table does not carry
# (checked against asm/unistd_64.h and asm-generic/unistd.h).
_MORE_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "msgget": 68, "msgsnd": 69,
        "msgrcv": 70, "msgctl": 71, "semget": 64, "semop": 65, "semctl": 66, "semtimedop": 220,
        "setpriority": 141, "sched_setparam": 142, "sched_setscheduler": 144,
        "sched_setaffinity": 203, "sched_setattr": 314, "ioprio_set": 251,
        "sethostname": 170, "setdomainname": 171, "vhangup": 153, "quotactl": 179,
        "quotactl_fd": 443,
    },
    "aarch64": {
        "msgget": 186, "msgctl": 187, "msgrcv": 188, "msgsnd": 189, "semget": 190,
        "semctl": 191, "semtimedop": 192, "semop": 193, "shmget": 194, "shmctl": 195,
        "shmat": 196, "shmdt": 197, "setpriority": 140, "sched_setparam": 118,
        "sched_setscheduler": 119, "sched_setaffinity": 122, "sched_setattr": 274,
        "ioprio_set": 30, "sethostname": 161, "setdomainname": 162, "vhangup": 58,
        "quotactl": 60, "quotactl_fd": 443,
    },
}
_SYSCALLS = {**_MORE_SYSCALLS.get(kernel.MACHINE, {}), **kernel.SYSCALLS} if kernel.SUPPORTED else {}


def _stmt(code: int, k: int) -> tuple[int, int, int, int]:
    return (code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


def _load_arg(index: int, high: bool = False) -> tuple[int, int, int, int]:
    return _stmt(_LD_W_ABS, 16 + 8 * index + (4 if high else 0))


def _on_syscall(name: str, body: list[tuple[int, int, int, int]]) -> list:
    """``if nr == name: body`` (body must end in a return), else fall through.

    The accumulator holds nr on entry and, after a miss, still does.
    """
    if name not in _SYSCALLS:
        return []
    assert body[-1][0] == _RET_K and len(body) < 256
    return [_jump(_JEQ_K, _SYSCALLS[name], 0, len(body))] + body


def _socket_rule(allow_inet: bool) -> list:
    if not allow_inet:
        return _on_syscall("socket", [_stmt(_RET_K, _EPERM)])
    # socket(family, type, protocol): ints, so their low words are all the kernel
    # looks at.  Allowed: AF_INET/AF_INET6, SOCK_STREAM/SOCK_DGRAM (any flags),
    # protocol 0, TCP or UDP.  Everything else jumps to the EPERM at the end.
    return _on_syscall("socket", [
        _load_arg(0),
        _jump(_JEQ_K, AF_INET, 1, 0),
        _jump(_JEQ_K, AF_INET6, 0, 8),
        _load_arg(1),
        _stmt(_AND_K, SOCK_TYPE_MASK),
        _jump(_JEQ_K, SOCK_STREAM, 1, 0),
        _jump(_JEQ_K, SOCK_DGRAM, 0, 4),
        _load_arg(2),
        _jump(_JEQ_K, 0, 3, 0),
        _jump(_JEQ_K, IPPROTO_TCP, 2, 0),
        _jump(_JEQ_K, IPPROTO_UDP, 1, 0),
        _stmt(_RET_K, _EPERM),
        _stmt(_RET_K, RET_ALLOW),
    ])


def _clone_rule() -> list:
    # clone() reads only the low 32 bits of its flags (lower_32_bits() in
    # kernel/fork.c); arg 0 is the flags word on both x86_64 and aarch64.
    return _on_syscall("clone", [
        _load_arg(0),
        _jump(_JSET_K, CLONE_NS_FLAGS, 0, 1),
        _stmt(_RET_K, _EPERM),
        _jump(_JSET_K, CLONE_THREAD, 0, 1),   # a thread: allowed
        _stmt(_RET_K, RET_ALLOW),
        _stmt(_RET_K, _EPERM),                # fork/vfork/posix_spawn
    ])


def _prlimit_rule() -> list:
    # prlimit64(pid, resource, new_limit, old_limit): a NULL new_limit (both
    # halves of the 64-bit pointer zero) is a read and stays allowed.
    return _on_syscall("prlimit64", [
        _load_arg(2),
        _jump(_JEQ_K, 0, 0, 3),
        _load_arg(2, high=True),
        _jump(_JEQ_K, 0, 0, 1),
        _stmt(_RET_K, RET_ALLOW),
        _stmt(_RET_K, _EPERM),
    ])


def _ioctl_rule() -> list:
    # The request number is an unsigned int: only the low word is significant.
    return _on_syscall("ioctl", [
        _load_arg(1),
        _jump(_JEQ_K, TIOCSTI, 1, 0),
        _jump(_JEQ_K, TIOCLINUX, 0, 1),
        _stmt(_RET_K, _EPERM),
        _stmt(_RET_K, RET_ALLOW),
    ])


def _mknod_rule(name: str, mode_arg: int) -> list:
    # Regular files, FIFOs and sockets are fine; device nodes are not (as root
    # a block device in the scratch dir would expose the raw disk).
    return _on_syscall(name, [
        _load_arg(mode_arg),
        _stmt(_AND_K, S_IFMT),
        _jump(_JEQ_K, S_IFCHR, 1, 0),
        _jump(_JEQ_K, S_IFBLK, 0, 1),
        _stmt(_RET_K, _EPERM),
        _stmt(_RET_K, RET_ALLOW),
    ])


def build(allow_inet: bool) -> list[tuple[int, int, int, int]]:
    """Return the filter as (code, jt, jf, k) instructions for this architecture."""
    kernel.require_supported_arch()
    prog = [
        _stmt(_LD_W_ABS, _OFF_ARCH),
        _jump(_JEQ_K, kernel.AUDIT_ARCH, 1, 0),
        _stmt(_RET_K, RET_KILL_PROCESS),
        _stmt(_LD_W_ABS, _OFF_NR),
    ]
    if kernel.MACHINE == "x86_64":
        # x32 syscalls share the x86_64 audit arch but use other numbers.
        prog += [_jump(_JGE_K, _X32_SYSCALL_BIT, 0, 1), _stmt(_RET_K, RET_KILL_PROCESS)]
    # Argument-dependent rules first: ioctl and clone are the frequent ones.
    prog += _ioctl_rule() + _clone_rule() + _socket_rule(allow_inet) + _prlimit_rule()
    prog += _mknod_rule("mknodat", 2) + _mknod_rule("mknod", 1)
    prog += _on_syscall("clone3", [_stmt(_RET_K, RET_ERRNO | errno.ENOSYS)])
    for name in DENIED:
        prog += _on_syscall(name, [_stmt(_RET_K, _EPERM)])
    prog.append(_stmt(_RET_K, RET_ALLOW))
    return prog


def available() -> bool:
    """Whether this kernel supports filters with SECCOMP_RET_KILL_PROCESS (4.14+)."""
    if not kernel.SUPPORTED:
        return False
    action = ctypes.c_uint32(RET_KILL_PROCESS)
    try:
        kernel.syscall(kernel.SYSCALLS["seccomp"], SECCOMP_GET_ACTION_AVAIL, 0,
                       ctypes.byref(action))
    except OSError:
        return False
    return True


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(allow_inet: bool) -> int:
    """Install the filter on every thread of this process; return its length.

    Sets PR_SET_NO_NEW_PRIVS first (required without CAP_SYS_ADMIN).  TSYNC
    applies the filter to all threads atomically, or fails if one cannot be
    synchronised.  Raises OSError on failure.
    """
    prog = build(allow_inet)
    raw = b"".join(struct.pack("=HBBI", *insn) for insn in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = _SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    kernel.set_no_new_privs()
    result = kernel.syscall(kernel.SYSCALLS["seccomp"], SECCOMP_SET_MODE_FILTER,
                            SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(fprog))
    if result != 0:
        # With TSYNC a positive result is the id of a thread that could not sync.
        raise OSError(errno.EAGAIN, f"seccomp: thread {result} could not be synchronised")
    return len(prog)
