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

from . import syscalls

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
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# Securebits (include/uapi/linux/securebits.h): uid 0 gets no capabilities from exec or
# setuid, keep-caps is off, ambient capabilities cannot be raised; each bit locked.
SECUREBITS_LOCKED_DOWN = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
_CAPABILITY_VERSION_3 = 0x20080522

# os.uname().machine is what platform.machine() returns on Linux, without the
# cost of importing platform (which pulls in re and collections).
MACHINE: str = os.uname().machine

# AUDIT_ARCH_* values seccomp_data.arch carries (EM_* | 64BIT | LE).
_AUDIT_ARCHES: dict[str, int] = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_TABLES: dict[str, dict[str, int]] = {"x86_64": syscalls.X86_64, "aarch64": syscalls.AARCH64}

SUPPORTED: bool = MACHINE in _TABLES
SYSCALLS: dict[str, int] = _TABLES[MACHINE] if SUPPORTED else {}
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
        raise OSError(
            errno.ENOSYS, f"sandchat: unsupported architecture {MACHINE!r}: no syscall table (known: {', '.join(sorted(_TABLES))})"
        )


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


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


CAP_SETPCAP = 8


def drop_capabilities() -> None:
    """Empty every capability set for good; with CAP_SETPCAP (root), lock the securebits first.

    Order matters: setting securebits and shrinking the bounding set both need
    CAP_SETPCAP, so they come before capset() empties the effective set. Without it
    (an ordinary user) the bounding set cannot shrink, and no_new_privs keeps exec from
    ever granting anything from it.
    """
    if capability_sets().get("CapEff", 0) >> CAP_SETPCAP & 1:
        prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_DOWN)
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            last = int(f.read())
        for cap in range(last + 1):
            prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()  # version 3 carries two 32-bit words per set: all zero
    syscall(syscall_nr("capset"), ctypes.byref(header), ctypes.byref(data))


def capability_sets() -> dict[str, int]:
    """This process's capability sets from /proc/self/status: {"CapEff": bits, ...}."""
    found = {}
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Cap"):
                key, value = line.split(b":", 1)
                found[key.decode()] = int(value, 16)
    return found
