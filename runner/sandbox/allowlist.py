"""The seccomp allow list: every system call a plugin may make, with which arguments, and why.

Data only; ``runner.sandbox.seccomp`` compiles it to BPF, ``docs/security.md`` carries the same
table for people (a test keeps the two equal). Anything not named here fails with
EPERM. The list comes from a measured census (``python -m bench.census``) of what
CPython, its standard library, msgpack, the shipped plugins' HTTP and TLS stacks and
llama.cpp call inside the sandbox, not from memory.

Three tables:

- ``ALWAYS``: allowed with any arguments, in every profile.
- ``NETWORK``: allowed with any arguments in the network profile only.
- ``FILTERED``: allowed only with the arguments given (the multiplexed calls, whose
  harmless and harmful uses share one number); each has a rule in ``runner.sandbox.seccomp``.

Names that do not exist on an architecture (``open`` on aarch64) are skipped there.
Standard library only, cheap to import: the child loads it before any plugin code.
"""

# -- arguments the filtered calls may carry (include/uapi headers) -------------------------

#: ioctl requests: terminal queries (isatty, window size), fd flags, bytes readable.
IOCTL_REQUESTS = {
    0x5401: "TCGETS",
    0x5413: "TIOCGWINSZ",
    0x541B: "FIONREAD",
    0x5421: "FIONBIO",
    0x5450: "FIONCLEX",
    0x5451: "FIOCLEX",
}

#: fcntl commands: duplicate, fd and status flags, reading locks, pipe size and seals read.
FCNTL_COMMANDS = {
    0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL", 5: "F_GETLK",
    36: "F_OFD_GETLK", 1030: "F_DUPFD_CLOEXEC", 1032: "F_GETPIPE_SZ", 1034: "F_GET_SEALS",
}  # fmt: skip

#: fcntl commands that take a lock: they succeed without taking one. Lock state is shared
#: machine-wide (any file it can open, /dev/null included), so real locks were a channel
#: out of the sandbox (a red team passed data between two plugins with them); within one
#: process POSIX locks never conflict, so a single-process plugin (sqlite3) sees no change.
FCNTL_PRETEND = {6: "F_SETLK", 7: "F_SETLKW", 37: "F_OFD_SETLK", 38: "F_OFD_SETLKW"}

#: prctl options: reads, and naming threads and memory areas.
PRCTL_OPTIONS = {
    2: "PR_GET_PDEATHSIG", 3: "PR_GET_DUMPABLE", 15: "PR_SET_NAME", 16: "PR_GET_NAME",
    21: "PR_GET_SECCOMP", 23: "PR_CAPBSET_READ", 27: "PR_GET_SECUREBITS", 30: "PR_GET_TIMERSLACK",
    39: "PR_GET_NO_NEW_PRIVS", 42: "PR_GET_THP_DISABLE", 0x53564D41: "PR_SET_VMA",
}  # fmt: skip

#: madvise advice: everything but the root-only memory-failure injections (HWPOISON,
#: SOFT_OFFLINE): hints about the caller's own pages.
MADVISE_ADVICE = {
    0: "MADV_NORMAL", 1: "MADV_RANDOM", 2: "MADV_SEQUENTIAL", 3: "MADV_WILLNEED", 4: "MADV_DONTNEED",
    8: "MADV_FREE", 9: "MADV_REMOVE", 10: "MADV_DONTFORK", 11: "MADV_DOFORK", 12: "MADV_MERGEABLE",
    13: "MADV_UNMERGEABLE", 14: "MADV_HUGEPAGE", 15: "MADV_NOHUGEPAGE", 16: "MADV_DONTDUMP",
    17: "MADV_DODUMP", 18: "MADV_WIPEONFORK", 19: "MADV_KEEPONFORK", 20: "MADV_COLD",
    21: "MADV_PAGEOUT", 22: "MADV_POPULATE_READ", 23: "MADV_POPULATE_WRITE", 25: "MADV_COLLAPSE",
    102: "MADV_GUARD_INSTALL", 103: "MADV_GUARD_REMOVE",
}  # fmt: skip

#: Flags a send may carry. Everything else is refused: MSG_FASTOPEN (0x20000000) would
#: connect a socket without the host; MSG_ZEROCOPY and MSG_OOB are never needed.
SEND_FLAGS = {0x40: "MSG_DONTWAIT", 0x80: "MSG_EOR", 0x800: "MSG_CONFIRM", 0x4000: "MSG_NOSIGNAL", 0x8000: "MSG_MORE"}

#: Socket options the network profile may set, by level: what the shipped plugins' HTTP
#: stacks set (census). Not SO_BINDTODEVICE (an egress interface around a VPN),
#: TCP_FASTOPEN_CONNECT, SO_ATTACH_FILTER or anything else.
SOCKET_OPTIONS = {
    1: {9: "SO_KEEPALIVE"},  # SOL_SOCKET
    6: {1: "TCP_NODELAY", 4: "TCP_KEEPIDLE", 5: "TCP_KEEPINTVL", 6: "TCP_KEEPCNT"},  # IPPROTO_TCP
}

FUTEX_PRIVATE_FLAG = 128
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
SOCK_STREAM, SOCK_DGRAM = 1, 2
IPPROTO_TCP, IPPROTO_UDP = 6, 17
CLONE_THREAD = 0x00010000
# CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET; in clone() 0x80 is CSIGNAL.
CLONE_NAMESPACES = 0x7E020000
# x86_64 arch_prctl codes: thread pointers (ARCH_SET_GS ... ARCH_GET_GS), ARCH_GET_CPUID,
# reads of the extended CPU state, and the shadow-stack status glibc queries. Not
# ARCH_REQ_XCOMP_PERM: llama.cpp asks it for AMX tiles, and on this project's VM (AMX
# advertised) granting it made the local model die of SIGILL; refused, ggml falls back.
ARCH_PRCTL_CODES = {
    0x1001: "ARCH_SET_GS", 0x1002: "ARCH_SET_FS", 0x1003: "ARCH_GET_FS", 0x1004: "ARCH_GET_GS",
    0x1011: "ARCH_GET_CPUID", 0x1021: "ARCH_GET_XCOMP_SUPP", 0x1022: "ARCH_GET_XCOMP_PERM",
    0x5005: "ARCH_SHSTK_STATUS",
}  # fmt: skip

# -- the tables ----------------------------------------------------------------------------------

#: Measured (``python -m bench.census``) unless the reason says otherwise: "aarch64" marks
#: the spelling that architecture uses for a call measured on x86_64 (it has no legacy
#: open/mkdir/poll/dup2 family), "vDSO" a call the vDSO makes for Python without a trace
#: but falls back to, and "kernel" what the kernel itself needs of a process.
ALWAYS = {
    # files: Landlock decides which paths; these only act on what it lets through
    "read": "files and pipes", "write": "files and pipes", "pread64": "files (sqlite3, the model)",
    "pwrite64": "files (sqlite3)", "lseek": "files", "openat": "files (Landlock checks the path)",
    "close": "fds", "dup2": "fds (os.dup2)", "dup3": "fds (os.dup2, not inheritable; aarch64 dup2)",
    "pipe2": "fds", "fstat": "file metadata", "newfstatat": "file metadata (os.stat)",
    "statfs": "file system facts (shutil.disk_usage)", "getdents64": "listing folders Landlock allows",
    "getcwd": "paths", "chdir": "paths", "readlink": "paths (os.path.realpath)",
    "readlinkat": "paths (aarch64 readlink)", "access": "file checks (os.access, shutil.which)",
    "faccessat": "file checks (aarch64 access)",
    "faccessat2": "file checks (aarch64 access)", "mkdir": "scratch (Landlock)",
    "mkdirat": "scratch (aarch64 mkdir)", "rmdir": "scratch (Landlock)", "unlink": "scratch (Landlock)",
    "unlinkat": "scratch (Landlock)", "rename": "scratch (Landlock)", "renameat": "scratch (aarch64 rename)",
    "renameat2": "scratch (aarch64 rename)", "truncate": "scratch (Landlock)", "ftruncate": "scratch files",
    "fsync": "scratch files", "fdatasync": "scratch files (sqlite3)", "fadvise64": "read-ahead hints (the model)",
    "sendfile": "copying files (shutil)", "msync": "mapped files",
    # memory: RLIMIT_AS and the cgroup bound it
    "brk": "the heap", "mmap": "memory and mapped files (the model)", "munmap": "memory",
    "mremap": "memory", "mprotect": "memory (ctypes, shared libraries)",
    "mbind": "NUMA placement of its own pages (llama.cpp)",
    # threads and the process itself
    "exit": "threads", "exit_group": "the process", "set_robust_list": "threads",
    "rseq": "threads (glibc)", "gettid": "ids", "getpid": "ids", "geteuid": "ids",
    # libc never checks these for errors: refused, they would hand a plugin a silent -1
    # (os.getuid() == -1, os.getppid() == -1), a wrong answer worse than the id itself.
    "getppid": "ids (never fail)", "getuid": "ids (never fail)", "getgid": "ids (never fail)",
    "getegid": "ids (never fail)", "getgroups": "ids (never fail)", "getresuid": "ids (never fail)",
    "getresgid": "ids (never fail)", "getpgrp": "ids (never fail)", "getpgid": "ids (never fail)",
    "getsid": "ids (never fail)",
    "sched_yield": "threads", "sched_getaffinity": "CPU count (os.cpu_count, OpenMP)",
    "uname": "platform", "sysinfo": "memory size (llama.cpp)", "getrandom": "random numbers",
    "getrusage": "resource.getrusage", "times": "os.times",
    "rt_sigreturn": "kernel: returning from any signal handler",
    # time
    "clock_nanosleep": "sleep", "setitimer": "signal.setitimer", "clock_gettime": "time (vDSO)",
    "clock_getres": "time (vDSO)", "gettimeofday": "time (vDSO)", "time": "time (vDSO)", "getcpu": "threads (vDSO)",
    # signals: only to itself (kill and tgkill are FILTERED)
    "rt_sigaction": "signal handlers", "rt_sigprocmask": "signal masks",
    # waiting
    "poll": "the protocol's event loop", "ppoll": "waiting (aarch64 poll)", "pselect6": "select.select",
    "epoll_create1": "asyncio", "epoll_ctl": "asyncio", "epoll_wait": "asyncio", "epoll_pwait": "asyncio (aarch64 epoll_wait)",
    # sockets it already has: socket pairs, and the connections the host made for it
    "recvfrom": "sockets", "getsockopt": "sockets (connect's result)", "getsockname": "sockets", "getpeername": "sockets",
}  # fmt: skip

NETWORK = {
    "recvmsg": "connected sockets the host passes on the network broker's channel (SCM_RIGHTS); it creates none",
    "shutdown": "ending a connection's write side (asyncio write_eof, anyio send_eof; not seen by the census)",
}

FILTERED = {
    "ioctl": ("request in IOCTL_REQUESTS", "isatty, window size, non-blocking mode; never TIOCSTI or a device's own calls"),
    "fcntl": ("command in FCNTL_COMMANDS; FCNTL_PRETEND succeed without locking",
              "fd flags; never F_SETOWN/F_SETSIG (signals to other processes), leases or real locks"),
    "flock": ("succeeds without locking", "locks are a channel between processes (see FCNTL_PRETEND)"),
    "prctl": ("option in PRCTL_OPTIONS",
              "reads and thread names; never PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_MM, ptracer or securebits"),
    "arch_prctl": ("code in ARCH_PRCTL_CODES", "thread pointers, CPU feature state (x86_64 only)"),
    "madvise": ("advice in MADVISE_ADVICE", "memory hints; never HWPOISON/SOFT_OFFLINE"),
    "clone": ("CLONE_THREAD set, no namespace flag", "threads; never a new process or namespace"),
    "clone3": ("refused with ENOSYS", "its flags live in memory a filter cannot read; glibc then uses clone()"),
    "prlimit64": ("new limit NULL", "resource.getrlimit; the limits themselves cannot change"),
    "kill": ("pid is its own (or 0: its own group)", "os.kill of itself; never the host or another process"),
    "tgkill": ("thread group is its own", "signals between its own threads"),
    "socketpair": ("AF_UNIX, SOCK_STREAM", "asyncio's self-pipe; no datagram socket can reach a path"),
    "setsockopt": ("network profile: (level, option) in SOCKET_OPTIONS", "TCP_NODELAY and keep-alive of the HTTP stacks"),
    "futex": ("FUTEX_PRIVATE_FLAG set", "locks; a shared futex on a file both plugins map (os.py) carried data between them (red team)"),
    "sendto": ("flags in SEND_FLAGS, no destination address", "sending on connected sockets; no TCP Fast Open, no datagram to a path"),
    "sendmsg": ("flags in SEND_FLAGS",
                "asyncio's writelines on Python 3.12+ (not measured here: 3.11); "
                "its address cannot be read, but only connected sockets exist"),
}  # fmt: skip
