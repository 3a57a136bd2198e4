"""Landlock filesystem, TCP and scope rules through raw syscalls (444-446).

One call, ``restrict()``, builds a ruleset that handles every access right the
running kernel's Landlock ABI knows, grants read/execute on ``read_paths`` and
full rights on ``write_paths``, optionally TCP connect to a few ports, scopes
signals and abstract unix sockets to the sandbox, and enforces it on the
calling thread.  It follows the kernel documentation's "best effort" pattern:
rights a given ABI does not know are masked out instead of failing.

Landlock restricts only the calling thread (and threads/processes it creates
afterwards), so call ``restrict()`` before starting any thread.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from . import kernel

TYPE_CHECKING = False  # typing is not imported at run time: start-up cost
if TYPE_CHECKING:
    from collections.abc import Iterable

# Landlock syscalls use the unified numbering: 444-446 on every architecture
# except alpha, so they need no per-architecture table.
_NR_CREATE_RULESET = 444
_NR_ADD_RULE = 445
_NR_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2

# Filesystem access rights (include/uapi/linux/landlock.h) and the ABI that added them.
ACCESS_FS_EXECUTE = 1 << 0
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_READ_FILE = 1 << 2
ACCESS_FS_READ_DIR = 1 << 3
ACCESS_FS_REMOVE_DIR = 1 << 4
ACCESS_FS_REMOVE_FILE = 1 << 5
ACCESS_FS_MAKE_CHAR = 1 << 6
ACCESS_FS_MAKE_DIR = 1 << 7
ACCESS_FS_MAKE_REG = 1 << 8
ACCESS_FS_MAKE_SOCK = 1 << 9
ACCESS_FS_MAKE_FIFO = 1 << 10
ACCESS_FS_MAKE_BLOCK = 1 << 11
ACCESS_FS_MAKE_SYM = 1 << 12
ACCESS_FS_REFER = 1 << 13  # ABI 2
ACCESS_FS_TRUNCATE = 1 << 14  # ABI 3
ACCESS_FS_IOCTL_DEV = 1 << 15  # ABI 5
ACCESS_NET_BIND_TCP = 1 << 0  # ABI 4
ACCESS_NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

_FS_ABI1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
# Handled filesystem rights per ABI; ABI 7 only added audit-logging flags.
_FS_BY_ABI = {
    1: _FS_ABI1,
    2: _FS_ABI1 | ACCESS_FS_REFER,
    3: _FS_ABI1 | ACCESS_FS_REFER | ACCESS_FS_TRUNCATE,
    4: _FS_ABI1 | ACCESS_FS_REFER | ACCESS_FS_TRUNCATE,
}
_FS_BY_ABI[5] = _FS_BY_ABI[4] | ACCESS_FS_IOCTL_DEV
NET_ABI = 4
SCOPE_ABI = 6
# Highest ABI whose rights this module knows; newer kernels get this feature set.
KNOWN_ABI = 7

# Rights the kernel accepts in a rule on a non-directory (ACCESS_FILE in
# security/landlock/fs.h); anything else on a file is EINVAL.
FILE_RIGHTS = ACCESS_FS_EXECUTE | ACCESS_FS_WRITE_FILE | ACCESS_FS_READ_FILE | ACCESS_FS_TRUNCATE | ACCESS_FS_IOCTL_DEV
READ_RIGHTS = ACCESS_FS_EXECUTE | ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR

# Paths we cannot even name are skipped: missing ones (as the API promises)
# and ones DAC already hides from us (EACCES, e.g. another user's home).  The
# process could not reach them anyway, so skipping never widens access.
_MISSING = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES)


def abi_version() -> int:
    """Return the kernel's Landlock ABI version, or 0 when unsupported or disabled."""
    try:
        return kernel.syscall(_NR_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    except OSError as exc:
        # ENOSYS: not compiled in; EOPNOTSUPP: compiled in but disabled at boot.
        if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP):
            return 0
        raise


def handled_fs(abi: int) -> int:
    """Filesystem rights a ruleset can handle on Landlock ``abi`` (0 when none)."""
    if abi < 1:
        return 0
    return _FS_BY_ABI[min(abi, 5)]


def _ruleset_attr(abi: int, fs: int, net: int, scoped: int) -> bytes:
    # struct landlock_ruleset_attr grew with the ABI (8, 16, then 24 bytes);
    # pass only the fields this kernel knows so older kernels do not see E2BIG.
    raw = struct.pack("=QQQ", fs, net, scoped)
    if abi >= SCOPE_ABI:
        return raw
    return raw[:16] if abi >= NET_ABI else raw[:8]


def _add_path_rule(ruleset_fd: int, path: str, rights: int) -> bool:
    """Grant ``rights`` beneath ``path``; False when it was skipped (see _MISSING)."""
    try:
        # O_PATH: no read permission is needed to name the hierarchy.
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in _MISSING:
            return False
        raise
    try:
        if (os.fstat(fd).st_mode & 0o170000) != 0o040000:
            rights &= FILE_RIGHTS  # directory-only rights on a file are EINVAL
        if not rights:
            return True
        # struct landlock_path_beneath_attr is packed: u64 access, s32 fd.
        attr = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
        kernel.syscall(_NR_ADD_RULE, ruleset_fd, _RULE_PATH_BENEATH, attr, 0)
    except OSError as exc:
        raise OSError(exc.errno, f"landlock: cannot add rule for {path!r}: {os.strerror(exc.errno or 0)}") from None
    finally:
        os.close(fd)
    return True


def _check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"landlock: invalid TCP port {port!r}")
    return port


def _add_port_rule(ruleset_fd: int, port: int) -> None:
    attr = ctypes.create_string_buffer(struct.pack("=QQ", ACCESS_NET_CONNECT_TCP, port), 16)
    kernel.syscall(_NR_ADD_RULE, ruleset_fd, _RULE_NET_PORT, attr, 0)


def _as_paths(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    # A bare string would otherwise be iterated character by character.
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError("landlock: pass a list of paths, not a single path")
    return [os.fspath(p) for p in paths]


def restrict(
    read_paths: Iterable[str | os.PathLike[str]],
    write_paths: Iterable[str | os.PathLike[str]],
    tcp_connect_ports: Iterable[int] = (),
    handle_net: bool = True,
) -> int:
    """Enforce a Landlock ruleset on the calling thread; return the ABI applied.

    read_paths get EXECUTE|READ_FILE|READ_DIR, write_paths every handled right
    (files get only the file-applicable subset); paths that do not exist or that
    DAC already denies us (EACCES) are skipped.
    With ``handle_net`` and ABI >= 4, TCP bind is denied everywhere and TCP
    connect is allowed only to ``tcp_connect_ports``.  With ABI >= 6, signals
    and abstract unix sockets are scoped to the sandbox.  Sets
    PR_SET_NO_NEW_PRIVS first.  The return value is min(kernel ABI, 7): the
    feature set enforced.  Raises OSError (EOPNOTSUPP when Landlock is absent).
    """
    reads, writes = _as_paths(read_paths), _as_paths(write_paths)
    ports = [_check_port(port) for port in tcp_connect_ports]
    abi = min(abi_version(), KNOWN_ABI)
    if abi < 1:
        raise OSError(errno.EOPNOTSUPP, "Landlock is not available on this kernel")
    fs = handled_fs(abi)
    net = ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP if handle_net and abi >= NET_ABI else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= SCOPE_ABI else 0
    raw = _ruleset_attr(abi, fs, net, scoped)
    attr = ctypes.create_string_buffer(raw, len(raw))  # explicit size: no trailing NUL
    ruleset_fd = kernel.syscall(_NR_CREATE_RULESET, attr, len(raw), 0)
    try:
        for path in reads:
            _add_path_rule(ruleset_fd, path, READ_RIGHTS & fs)
        for path in writes:
            _add_path_rule(ruleset_fd, path, fs)
        if net:
            for port in ports:
                _add_port_rule(ruleset_fd, port)
        # Without NO_NEW_PRIVS an unprivileged restrict_self is EPERM (a
        # restricted process must not be able to exec a setuid binary that
        # would run with privileges under our rules).
        kernel.set_no_new_privs()
        kernel.syscall(_NR_RESTRICT_SELF, ruleset_fd, 0)
    finally:
        os.close(ruleset_fd)
    return abi
