"""Thin ctypes wrappers over the Linux calls sandchat needs: prctl, raw syscall, errno-checked.

Both sides of a plugin process use this module: the host (``set_dumpable(False)``,
``set_child_subreaper()``) and the sandboxed child (``set_pdeathsig``,
``set_no_new_privs``, raw ``syscall`` for Landlock and seccomp).  It must stay
standard-library only and cheap to import: the child imports it before any
plugin code, on its start-up budget.

Syscall numbers differ per architecture, so they come from ``SYSCALLS`` for the
running machine.  Importing works everywhere (the host only needs prctl, which
is libc); asking for a syscall number on an unknown architecture raises
OSError(ENOSYS) instead of silently using x86_64 numbers.
"""
from __future__ import annotations

import ctypes
import errno
import os

# prctl options (include/uapi/linux/prctl.h); identical on every architecture.
PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_GET_SECCOMP = 21
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39

# os.uname().machine is what platform.machine() returns on Linux, without the
# cost of importing platform (which pulls in re and collections).
MACHINE: str = os.uname().machine

# Syscalls common to x86_64 and aarch64 by number: everything from 424 on uses
# the unified table, so those numbers are the same on both.
_COMMON: dict[str, int] = {
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "clone3": 435, "pidfd_getfd": 438,
    "process_madvise": 440, "mount_setattr": 442,
    "landlock_create_ruleset": 444, "landlock_add_rule": 445,
    "landlock_restrict_self": 446, "fchmodat2": 452,
    "setxattrat": 463, "removexattrat": 466, "open_tree_attr": 467,
    "file_setattr": 469,
}

# Numbers checked against asm/unistd_64.h (x86_64) and asm-generic/unistd.h
# (aarch64).  aarch64 has no legacy fork/vfork/chmod/chown/mknod/iopl.
_X86_64: dict[str, int] = {
    "ioctl": 16, "socket": 41, "socketpair": 53, "clone": 56, "fork": 57,
    "vfork": 58, "execve": 59, "chmod": 90, "fchmod": 91, "chown": 92,
    "fchown": 93, "lchown": 94, "ptrace": 101, "syslog": 103, "setpgid": 109,
    "setsid": 112, "mknod": 133, "personality": 135, "pivot_root": 155, "prctl": 157,
    "adjtimex": 159, "setrlimit": 160, "chroot": 161, "acct": 163,
    "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167,
    "swapoff": 168, "reboot": 169, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "setxattr": 188,
    "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197,
    "lremovexattr": 198, "fremovexattr": 199, "clock_settime": 227,
    "kexec_load": 246, "add_key": 248, "request_key": 249, "keyctl": 250,
    "mknodat": 259, "fchownat": 260, "fchmodat": 268, "unshare": 272,
    "perf_event_open": 298, "fanotify_init": 300, "prlimit64": 302,
    "open_by_handle_at": 304, "clock_adjtime": 305, "setns": 308,
    "process_vm_readv": 310, "process_vm_writev": 311, "finit_module": 313,
    "seccomp": 317, "kexec_file_load": 320, "bpf": 321, "execveat": 322,
    "userfaultfd": 323,
}
_AARCH64: dict[str, int] = {
    "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "removexattr": 14,
    "lremovexattr": 15, "fremovexattr": 16, "ioctl": 29, "mknodat": 33,
    "umount2": 39, "mount": 40, "pivot_root": 41, "chroot": 51, "fchmod": 52,
    "fchmodat": 53, "fchownat": 54, "fchown": 55, "acct": 89,
    "personality": 92, "unshare": 97, "kexec_load": 104, "init_module": 105,
    "delete_module": 106, "clock_settime": 112, "syslog": 116, "ptrace": 117,
    "reboot": 142, "setpgid": 154, "setsid": 157, "setrlimit": 164,
    "prctl": 167, "settimeofday": 170, "adjtimex": 171, "socket": 198,
    "socketpair": 199, "add_key": 217, "request_key": 218, "keyctl": 219,
    "clone": 220, "execve": 221, "swapon": 224, "swapoff": 225,
    "perf_event_open": 241, "prlimit64": 261, "fanotify_init": 262,
    "open_by_handle_at": 265, "clock_adjtime": 266, "setns": 268,
    "process_vm_readv": 270, "process_vm_writev": 271, "finit_module": 273,
    "seccomp": 277, "bpf": 280, "execveat": 281, "userfaultfd": 282,
    "kexec_file_load": 294,
}

# AUDIT_ARCH_* values seccomp_data.arch carries (EM_* | 64BIT | LE).
_AUDIT_ARCHES: dict[str, int] = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_TABLES: dict[str, dict[str, int]] = {"x86_64": _X86_64, "aarch64": _AARCH64}

SUPPORTED: bool = MACHINE in _TABLES
SYSCALLS: dict[str, int] = {**_TABLES[MACHINE], **_COMMON} if SUPPORTED else {}
AUDIT_ARCH: int = _AUDIT_ARCHES.get(MACHINE, 0)

# CDLL(None) is the already-loaded libc of the interpreter: no file lookup.
libc = ctypes.CDLL(None, use_errno=True)
_libc_syscall = libc.syscall
_libc_syscall.restype = ctypes.c_long
_libc_prctl = libc.prctl
_libc_prctl.restype = ctypes.c_int


def require_supported_arch() -> None:
    """Raise OSError(ENOSYS) unless syscall numbers for this machine are known."""
    if not SUPPORTED:
        raise OSError(errno.ENOSYS,
                      f"sandchat: unsupported architecture {MACHINE!r}: no syscall table "
                      f"(known: {', '.join(sorted(_TABLES))})")


def syscall_nr(name: str) -> int:
    """Return the number of syscall ``name`` on this machine; OSError if unknown."""
    require_supported_arch()
    try:
        return SYSCALLS[name]
    except KeyError:
        raise OSError(errno.ENOSYS, f"syscall {name!r} does not exist on {MACHINE}") from None


def _arg(value: object) -> object:
    # Variadic C calls default Python ints to C int: a pointer or a 64-bit flag
    # word would be truncated, so widen ints to a full register explicitly.
    if isinstance(value, int):
        return ctypes.c_long(value) if value < 0 else ctypes.c_ulong(value)
    return value


def syscall(nr: int, *args: object) -> int:
    """Invoke raw syscall ``nr``; return its result or raise OSError(errno) on -1.

    Integer arguments are passed as full-width longs; ctypes objects (buffers,
    ``byref``) and None (NULL) are passed as pointers.
    """
    ctypes.set_errno(0)
    result = _libc_syscall(ctypes.c_long(nr), *[_arg(a) for a in args])
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"syscall {nr}: {os.strerror(err)}")
    return result


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """Call prctl(2); return its result or raise OSError(errno) on -1."""
    ctypes.set_errno(0)
    result = _libc_prctl(ctypes.c_int(option), *[_arg(a) for a in (arg2, arg3, arg4, arg5)])
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")
    return result


def set_dumpable(flag: bool) -> None:
    """PR_SET_DUMPABLE: 0 keeps same-uid processes out of our /proc/<pid>/mem, environ, ptrace."""
    prctl(PR_SET_DUMPABLE, 1 if flag else 0)


def set_child_subreaper(flag: bool = True) -> None:
    """PR_SET_CHILD_SUBREAPER: orphaned descendants re-parent to us, so we can reap them."""
    prctl(PR_SET_CHILD_SUBREAPER, 1 if flag else 0)


def set_pdeathsig(sig: int) -> None:
    """PR_SET_PDEATHSIG: deliver ``sig`` to us when our parent thread dies (0 clears)."""
    prctl(PR_SET_PDEATHSIG, sig)


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: irreversible; required for unprivileged Landlock and seccomp."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def no_new_privs() -> bool:
    """Whether PR_SET_NO_NEW_PRIVS is already set on this thread."""
    return prctl(PR_GET_NO_NEW_PRIVS) == 1
