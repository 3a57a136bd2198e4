"""Attack: one try per class of system call that the allow list closes.

user_message: JSON {"attacks": [names], "host_pid": PID, "outside": PATH}. One line per
attack: BLOCKED (with the errno) or LEAKED (with what happened). ``outside`` is a file
outside the sandbox whose metadata the plugin tries to change; ``host_pid`` the host.
"""
import ctypes
import json
import mmap
import os
import socket

from llm_utils import LLMClient

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
F_SETOWN, F_SETSIG, F_SETLEASE, F_NOTIFY = 8, 10, 1024, 1026
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_MM = 1, 4, 35
PR_SET_CHILD_SUBREAPER, PR_SET_PTRACER, PR_GET_SECUREBITS = 36, 0x59616D61, 27
PR_CAPBSET_READ, CAP_SYS_ADMIN = 23, 21
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
FIOASYNC, TIOCSCTTY = 0x5452, 0x540E
MADV_HWPOISON = 100


def _check(result):
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _ioctl(fd, request):
    return _check(libc.ioctl(fd, ctypes.c_ulong(request), ctypes.c_ulong(0)))


def _prctl(option, arg=0):
    return _check(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0))


def _madvise_hwpoison(order):
    area = mmap.mmap(-1, mmap.PAGESIZE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(area))
    try:
        return _check(libc.madvise(ctypes.c_void_p(address), mmap.PAGESIZE, MADV_HWPOISON))
    finally:
        del address


def _capabilities(order):
    """What the plugin can learn of its capabilities from inside: securebits and the bounding set."""
    bits = libc.prctl(PR_GET_SECUREBITS, 0, 0, 0, 0)
    sys_admin_bounded = libc.prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0)
    if os.geteuid() == 0 and sys_admin_bounded:
        return f"CAP_SYS_ADMIN still in the bounding set (securebits {bits:#x})"
    raise PermissionError(1, f"no capabilities (securebits {bits:#x})")


def _shared_futex(order):
    """A futex without FUTEX_PRIVATE_FLAG on a file page is keyed by the file: two plugins
    that map os.py meet on it (a red team passed a secret that way). FUTEX_WAKE, 1 waiter."""
    number = {"x86_64": 202, "aarch64": 98}[os.uname().machine]
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    with open(os.__file__, "rb") as f:
        address = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_PRIVATE, f.fileno(), 0)
    return _check(libc.syscall(ctypes.c_long(number), ctypes.c_void_p(address), ctypes.c_long(1), ctypes.c_long(1), None, None, ctypes.c_long(0)))


def _mq_open(order):
    libc.mq_open.restype = ctypes.c_int
    return _check(libc.mq_open(b"/sandchat-attack", os.O_CREAT | os.O_RDWR, 0o600, None))


ATTACKS = {
    "nonexistent syscall 1000": lambda o: _check(libc.syscall(ctypes.c_long(1000))),
    "memfd_create": lambda o: os.memfd_create("bomb"),
    "mq_open (a global message queue)": _mq_open,
    "inotify_init1": lambda o: _check(libc.inotify_init1(0)),
    "setxattr outside": lambda o: os.setxattr(o["outside"], "user.planted", b"1"),
    "listxattr outside": lambda o: os.listxattr(o["outside"]),
    "utime outside": lambda o: os.utime(o["outside"], (0, 0)),
    "chmod outside": lambda o: os.chmod(o["outside"], 0o777),
    "mkfifo in scratch": lambda o: os.mkfifo("planted.fifo"),
    "execve /bin/true": lambda o: os.execv("/bin/true", ["true"]),
    "unshare a user namespace": lambda o: _check(libc.unshare(CLONE_NEWUSER)),
    "unshare a network namespace": lambda o: _check(libc.unshare(CLONE_NEWNET)),
    "fcntl F_SETOWN to the host": lambda o: _check(libc.fcntl(2, F_SETOWN, o["host_pid"])),
    "fcntl F_SETSIG": lambda o: _check(libc.fcntl(2, F_SETSIG, 9)),
    "fcntl F_SETLEASE": lambda o: _check(libc.fcntl(0, F_SETLEASE, 0)),
    "fcntl F_NOTIFY": lambda o: _check(libc.fcntl(0, F_NOTIFY, 0)),
    "ioctl FIOASYNC": lambda o: _ioctl(0, FIOASYNC),
    "ioctl TIOCSCTTY": lambda o: _ioctl(0, TIOCSCTTY),
    "prctl PR_SET_PDEATHSIG 0": lambda o: _prctl(PR_SET_PDEATHSIG, 0),
    "prctl PR_SET_DUMPABLE 1": lambda o: _prctl(PR_SET_DUMPABLE, 1),
    "prctl PR_SET_MM": lambda o: _prctl(PR_SET_MM, 1),
    "prctl PR_SET_CHILD_SUBREAPER": lambda o: _prctl(PR_SET_CHILD_SUBREAPER, 1),
    "prctl PR_SET_PTRACER to the host": lambda o: _prctl(PR_SET_PTRACER, o["host_pid"]),
    "kill the host (signal 0)": lambda o: os.kill(o["host_pid"], 0),
    "tgkill the host (signal 0)": lambda o: _check(libc.tgkill(o["host_pid"], o["host_pid"], 0)),
    "socketpair AF_UNIX SOCK_DGRAM": lambda o: socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM),
    "socket AF_UNIX": lambda o: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM),
    "madvise MADV_HWPOISON": _madvise_hwpoison,
    "capabilities": _capabilities,
    "futex without FUTEX_PRIVATE_FLAG on a shared file": _shared_futex,
}


class SyscallClasses(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        order = json.loads(user_message)
        lines = []
        for name in order["attacks"]:
            try:
                result = ATTACKS[name](order)
            except OSError as exc:
                lines.append(f"BLOCKED: {name}: {type(exc).__name__} {exc.errno} {exc.strerror}")
            except Exception as exc:
                lines.append(f"LEAKED: {name}: {type(exc).__name__}: {exc}")
            else:
                lines.append(f"LEAKED: {name}: {result!r}")
        return "\n".join(lines)

    def count_tokens(self, text):
        return len(text.split())
