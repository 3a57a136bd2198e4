"""Attack tests for the kernel sandbox layers (runner.sandbox, landlock, seccomp, kernel).

Every test runs a real ``python -I -S -c`` child that applies the sandbox and
then attempts an attack, printing ``<label> OK`` or ``<label> DENIED <exc>
<errno>`` per attempt.  Each attack also runs in a control child without the
sandbox, where it must succeed: a test that cannot fail proves nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from pathlib import Path

import pytest

from tests.attackkit import drain

ROOT = str(Path(__file__).resolve().parent.parent)
pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel sandbox"),
]

# What the real child will grant: the interpreter, its stdlib and venv, system
# libraries, and our own modules; /dev/null writable.
READ_PATHS = [sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr", "/lib", "/lib64", "/etc/ld.so.cache", ROOT + "/runner"]

PRELUDE = """
import os, sys, types
pkg = types.ModuleType("runner"); pkg.__path__ = [{root!r} + "/runner"]
sys.modules["runner"] = pkg  # runner/__init__.py may be heavy or absent: bypass it
import runner.sandbox as sb

def attempt(label, fn):
    try:
        result = fn()
    except BaseException as exc:
        print(label, "DENIED", type(exc).__name__, getattr(exc, "errno", None), flush=True)
        return None
    print(label, "OK", flush=True)
    return result

if {sandbox!r}:
    REPORT = sb.apply({profile!r}, {read!r}, {write!r}, tcp_ports={ports!r}, limits={limits!r})
    print("REPORT", REPORT, flush=True)
"""


def load_runner_modules() -> types.ModuleType:
    """Import runner.sandbox in-process through a stub package (like the child does)."""
    if "runner" not in sys.modules:
        pkg = types.ModuleType("runner")
        pkg.__path__ = [ROOT + "/runner"]
        sys.modules["runner"] = pkg
    import runner.sandbox

    return runner.sandbox


def run_child(
    code: str,
    *,
    sandbox: bool = True,
    profile: str = "untrusted",
    read: list[str] | None = None,
    write: list[str] | None = None,
    ports: tuple[int, ...] = (),
    limits: dict | None = None,
    prelude: str = PRELUDE,
    argv_prefix: list[str] | None = None,
    root: str = ROOT,
    python: str = sys.executable,
) -> subprocess.CompletedProcess:
    script = prelude.format(
        root=root,
        sandbox=sandbox,
        profile=profile,
        read=READ_PATHS + (read or []),
        write=["/dev/null"] + (write or []),
        ports=tuple(ports),
        limits=limits,
    ) + textwrap.dedent(code)
    cmd = (argv_prefix or []) + [python, "-I", "-S", "-c", script]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=25, cwd="/")


def outcomes(proc: subprocess.CompletedProcess) -> dict[str, list[str]]:
    """{label: ["OK"] or ["DENIED", exc_name, errno]} from a child's stdout."""
    found = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] in ("OK", "DENIED"):
            found[parts[0]] = parts[1:]
    return found


def control_and_sandboxed(code: str, **kw) -> tuple[dict, dict]:
    control = run_child(code, sandbox=False, **kw)
    assert control.returncode == 0, control.stderr
    boxed = run_child(code, sandbox=True, **kw)
    assert boxed.returncode == 0, boxed.stderr
    return outcomes(control), outcomes(boxed)


def assert_blocked(control: dict, boxed: dict, labels: list[str], exc: str = "PermissionError", err: int | None = None) -> None:
    for label in labels:
        assert control.get(label) == ["OK"], (label, control)
        assert boxed.get(label, [None])[0] == "DENIED", (label, boxed)
        assert boxed[label][1] == exc, (label, boxed[label])
        if err is not None:
            assert boxed[label][2] == str(err), (label, boxed[label])


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    scratch = tmp_path / "scratch"
    outside = tmp_path / "outside"
    scratch.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    (scratch / "mine.txt").write_text("mine")
    return {"scratch": scratch, "outside": outside}


@pytest.fixture
def victim():
    """An unrelated process the plugin must not trace or signal."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


# --------------------------------------------------------------------------- filesystem


def test_read_outside_allow_list_is_denied(dirs):
    code = f"""
    attempt("tmp_secret", lambda: open({str(dirs["outside"] / "secret.txt")!r}).read())
    attempt("etc_passwd", lambda: open("/etc/passwd").read())
    attempt("home_list", lambda: os.listdir(os.path.expanduser("~")))
    attempt("host_environ", lambda: open(f"/proc/{{os.getppid()}}/environ", "rb").read())
    attempt("scratch_read", lambda: open({str(dirs["scratch"] / "mine.txt")!r}).read())
    attempt("stdlib_import", lambda: __import__("json").dumps([1]))
    """
    control, boxed = control_and_sandboxed(code, write=[str(dirs["scratch"])])
    labels = ["tmp_secret", "etc_passwd", "host_environ"]
    if os.path.isdir(os.path.expanduser("~")):  # nobody's HOME may not exist
        labels.append("home_list")
    assert_blocked(control, boxed, labels, err=errno.EACCES)
    assert boxed["scratch_read"] == ["OK"] and boxed["stdlib_import"] == ["OK"]


def test_write_outside_write_paths_is_denied(dirs):
    scratch, outside = dirs["scratch"], dirs["outside"]
    code = f"""
    def write(path):
        with open(path, "w") as f:
            f.write("x")
    attempt("outside_new", lambda: write({str(outside / "new.txt")!r}))
    attempt("outside_overwrite", lambda: write({str(outside / "secret.txt")!r}))
    attempt("outside_unlink", lambda: os.unlink({str(outside / "secret.txt")!r}))
    attempt("scratch_write", lambda: write({str(scratch / "new.txt")!r}))
    attempt("scratch_mkdir", lambda: os.mkdir({str(scratch / "sub")!r}))
    attempt("scratch_rename", lambda: os.rename({str(scratch / "new.txt")!r},
                                                 {str(scratch / "sub" / "moved.txt")!r}))
    attempt("devnull_write", lambda: write("/dev/null"))
    """
    control = outcomes(run_child(code, sandbox=False, write=[str(scratch)]))
    # Undo what the control run did, so the sandboxed run starts from the same state.
    (outside / "secret.txt").write_text("top secret")
    (outside / "new.txt").unlink()
    (scratch / "sub" / "moved.txt").unlink()
    (scratch / "sub").rmdir()
    # Only the sandboxed run tries to plant code in the (readable) runner dir.
    evil = ROOT + "/runner/_sandchat_test_evil.py"
    boxed = outcomes(run_child(textwrap.dedent(code) + f"attempt('runner_write', lambda: write({evil!r}))\n", write=[str(scratch)]))
    assert_blocked(control, boxed, ["outside_new", "outside_overwrite", "outside_unlink"], err=errno.EACCES)
    assert boxed["runner_write"][:2] == ["DENIED", "PermissionError"]
    assert not os.path.exists(evil)
    for label in ("scratch_write", "scratch_mkdir", "scratch_rename", "devnull_write"):
        assert boxed[label] == ["OK"], (label, boxed)
    assert (outside / "secret.txt").read_text() == "top secret"


def test_chmod_chown_mknod_are_denied(dirs):
    target = str(dirs["scratch"] / "mine.txt")
    code = f"""
    attempt("chmod", lambda: os.chmod({target!r}, 0o600))
    attempt("fchmod", lambda: os.fchmod(os.open({target!r}, os.O_RDONLY), 0o644))
    attempt("chown", lambda: os.chown({target!r}, os.getuid(), os.getgid()))
    attempt("setxattr", lambda: os.setxattr({target!r}, "user.sandchat", b"1"))
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    def fchmodat2():  # Linux 6.6+: glibc may use it for lchmod-style calls
        if libc.syscall(ctypes.c_long(452), ctypes.c_long(-100), {target.encode()!r},
                        ctypes.c_long(0o640), ctypes.c_long(0)) != 0:
            raise OSError(ctypes.get_errno(), "fchmodat2")
    attempt("fchmodat2", fchmodat2)
    if os.getuid() == 0:
        attempt("mknod_chr", lambda: os.mknod({str(dirs["scratch"] / "null2")!r},
                                              0o600 | 0o020000, os.makedev(1, 3)))
    attempt("mkfifo", lambda: os.mkfifo({str(dirs["scratch"] / "fifo")!r}))
    """
    control = outcomes(run_child(code, sandbox=False, write=[str(dirs["scratch"])]))
    for name in ("null2", "fifo"):
        if (dirs["scratch"] / name).exists():
            (dirs["scratch"] / name).unlink()
    boxed = outcomes(run_child(code, write=[str(dirs["scratch"])]))
    labels = ["chmod", "fchmod", "fchmodat2", "chown", "setxattr", "mkfifo"]
    labels += ["mknod_chr"] if os.getuid() == 0 else []
    assert_blocked(control, boxed, labels, err=errno.EPERM)  # mknod is off the allow list, FIFOs too


# --------------------------------------------------------------------------- sockets


def test_untrusted_profile_has_no_sockets():
    code = """
    import socket
    attempt("inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
    attempt("inet6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close())
    attempt("unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close())
    attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close())
    attempt("socketpair", lambda: [s.close() for s in socket.socketpair()])
    import asyncio
    attempt("asyncio", lambda: asyncio.run(asyncio.sleep(0)))
    """
    control, boxed = control_and_sandboxed(code)
    assert_blocked(control, boxed, ["inet", "inet6", "unix", "netlink"], err=errno.EPERM)
    assert boxed["socketpair"] == ["OK"] and boxed["asyncio"] == ["OK"]


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    return sock


def _network_run(sandbox: bool) -> tuple[dict, int, int, int]:
    granted, other = _listener(), _listener()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    gport, oport, uport = (s.getsockname()[1] for s in (granted, other, udp))
    code = f"""
    import socket
    def connect(port):
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    def udp_send():  # connect + send: sendto with an address is refused, a connected UDP socket is not
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("127.0.0.1", {uport}))
            s.send(b"ping")
    def tcp_bind():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
    attempt("connect_other", lambda: connect({oport}))
    attempt("connect_granted", lambda: connect({gport}))
    attempt("udp_send", udp_send)
    attempt("tcp_bind", tcp_bind)
    attempt("unix", lambda: socket.socket(socket.AF_UNIX).close())
    """
    try:
        proc = run_child(code, sandbox=sandbox, profile="network", ports=(gport,))
        assert proc.returncode == 0, proc.stderr
        try:
            datagrams = len(udp.recv(16))
        except BlockingIOError:
            datagrams = 0
        return outcomes(proc), drain(granted), drain(other), datagrams
    finally:
        for sock in (granted, other, udp):
            sock.close()


def test_network_profile_kernel_layer_creates_and_connects_no_socket():
    """Under the runner's socket layer: even with a port Landlock would allow, the kernel
    refuses socket() and connect() in the network profile; the host makes the connections."""
    control, c_granted, c_other, _ = _network_run(sandbox=False)
    boxed, b_granted, b_other, b_udp = _network_run(sandbox=True)
    assert (c_granted, c_other) == (1, 1)
    assert_blocked(control, boxed, ["connect_other", "connect_granted", "udp_send", "unix", "tcp_bind"], err=errno.EPERM)
    assert (b_granted, b_other, b_udp) == (0, 0, 0), "a listener saw a contact from the sandbox"


# --------------------------------------------------------------------------- processes


def test_fork_spawn_and_exec_are_denied():
    code = """
    import subprocess
    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    attempt("fork", fork)
    attempt("subprocess", lambda: subprocess.run(["/bin/true"], check=True))
    attempt("posix_spawn", lambda: os.waitpid(os.posix_spawn("/bin/true", ["true"], {}), 0))
    # Last: in the control run this replaces the process, and echo prints the result.
    attempt("exec", lambda: os.execv("/bin/echo", ["echo", "exec", "OK"]))
    """
    control, boxed = control_and_sandboxed(code)
    assert_blocked(control, boxed, ["fork", "subprocess", "posix_spawn", "exec"], err=errno.EPERM)


def test_threads_still_work_and_clone3_is_enosys():
    code = """
    import ctypes, threading
    from concurrent.futures import ThreadPoolExecutor
    results = []
    def work(i):
        results.append(sum(range(i * 1000)))
    def four_threads():
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert len(results) == 4
    attempt("threads", four_threads)
    attempt("pool", lambda: list(ThreadPoolExecutor(4).map(abs, range(-50, 0))))
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.syscall(ctypes.c_long(435), None, ctypes.c_long(0))
    print("clone3", rc, ctypes.get_errno())
    """
    proc = run_child(code)
    assert proc.returncode == 0, proc.stderr
    boxed = outcomes(proc)
    assert boxed["threads"] == ["OK"] and boxed["pool"] == ["OK"]
    clone3 = [line.split() for line in proc.stdout.splitlines() if line.startswith("clone3")]
    assert clone3 == [["clone3", "-1", str(errno.ENOSYS)]]
    control = run_child(code, sandbox=False)  # unfiltered: EFAULT/EINVAL, not ENOSYS
    assert f"clone3 -1 {errno.ENOSYS}" not in control.stdout


@pytest.mark.parametrize("call", ["os.setsid()", "os.setpgid(0, 0)"])
def test_setsid_and_setpgid_are_denied(call):
    # One call per child: after either succeeds, the other fails even unsandboxed.
    control, boxed = control_and_sandboxed(f'attempt("call", lambda: {call})')
    assert_blocked(control, boxed, ["call"], err=errno.EPERM)


def test_ptrace_and_signals_outside_the_sandbox_are_denied(victim):
    code = f"""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    def seize(pid):  # PTRACE_SEIZE does not stop the tracee
        if libc.ptrace(ctypes.c_long(0x4206), ctypes.c_long(pid), None, None) != 0:
            raise OSError(ctypes.get_errno(), "ptrace")
    attempt("ptrace_victim", lambda: seize({victim.pid}))
    attempt("kill_parent", lambda: os.kill(os.getppid(), 0))
    attempt("kill_victim", lambda: os.kill({victim.pid}, 0))
    attempt("kill_self", lambda: os.kill(os.getpid(), 0))
    import signal
    attempt("pidfd_signal_parent", lambda: signal.pidfd_send_signal(os.pidfd_open(os.getppid()), 0))
    """
    control, boxed = control_and_sandboxed(code)
    assert_blocked(control, boxed, ["ptrace_victim", "kill_parent", "kill_victim", "pidfd_signal_parent"], err=errno.EPERM)
    assert boxed["kill_self"] == ["OK"]
    assert victim.poll() is None


def test_io_uring_is_denied():
    code = """
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    def setup():
        params = ctypes.create_string_buffer(120)  # struct io_uring_params
        fd = libc.syscall(ctypes.c_long(425), ctypes.c_long(4), params)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "io_uring_setup")
        os.close(fd)
    attempt("io_uring_setup", setup)
    """
    control, boxed = control_and_sandboxed(code)
    assert_blocked(control, boxed, ["io_uring_setup"], err=errno.EPERM)


def test_unshare_namespaces_is_denied():
    code = """
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    def unshare():
        if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER: works unprivileged too
            raise OSError(ctypes.get_errno(), "unshare")
    attempt("unshare", unshare)
    """
    control, boxed = control_and_sandboxed(code)
    assert_blocked(control, boxed, ["unshare"], err=errno.EPERM)


# Host death: a "host" process starts the sandboxed child, then exits on request.
HOST = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-I", "-S", "-c", sys.argv[1]],
                         pass_fds=[int(sys.argv[2])], stdin=subprocess.DEVNULL)
print("child", child.pid, flush=True)
sys.stdin.readline()   # the test decides when the host dies
"""


@contextlib.contextmanager
def host_and_child(child_code: str):
    """Run HOST with a child running ``child_code`` (HOLD_FD: a pipe we keep open).

    Yields (host, pidfd of the child, write end of HOLD_FD).  The child's
    stdout is the host's, so the test reads both from host.stdout.
    """
    hold_r, hold_w = os.pipe()
    script = PRELUDE.format(root=ROOT, sandbox=False, profile="untrusted", read=READ_PATHS, write=["/dev/null"], ports=(), limits=None)
    script += textwrap.dedent(child_code).replace("HOLD_FD", str(hold_r))
    host = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", HOST, script, str(hold_r)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=[hold_r],
    )
    os.close(hold_r)
    pidfd = None
    try:
        child_pid = int(host.stdout.readline().split()[1])
        pidfd = os.pidfd_open(child_pid)  # works on a zombie too: no pid-reuse race
        yield host, pidfd, hold_w
    finally:
        if pidfd is not None:
            if not select.select([pidfd], [], [], 0)[0]:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], 10)
            try:  # if pytest is a child subreaper (PluginManager made it one), the orphan is ours to reap
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
            except ChildProcessError:
                pass
            os.close(pidfd)
        os.close(hold_w)
        host.kill()
        host.wait()
        host.stdout.close()
        host.stdin.close()


def _kill_host(host: subprocess.Popen) -> None:
    host.stdin.write("\n")
    host.stdin.flush()
    assert host.wait(timeout=10) == 0


def test_child_is_killed_when_its_host_dies():
    code = f"""
    sb.apply("untrusted", {READ_PATHS!r}, ["/dev/null"])
    print("applied", flush=True)
    os.read(HOLD_FD, 1)  # blocks until killed: we never write
    print("survived", flush=True)
    """
    with host_and_child(code) as (host, pidfd, _):
        assert host.stdout.readline().startswith("applied")
        _kill_host(host)
        assert select.select([pidfd], [], [], 10)[0], "child outlived its host"
        assert "survived" not in host.stdout.read()


def test_child_exits_if_host_died_before_pdeathsig():
    code = f"""
    print("imported", flush=True)
    os.read(HOLD_FD, 1)  # the test lets us continue once the host is dead
    sb.apply("untrusted", {READ_PATHS!r}, ["/dev/null"])
    print("applied", flush=True)
    """
    with host_and_child(code) as (host, pidfd, hold_w):
        assert host.stdout.readline().startswith("imported")
        _kill_host(host)
        os.write(hold_w, b"g")
        assert select.select([pidfd], [], [], 10)[0], "orphaned child kept running"
        assert "applied" not in host.stdout.read()


# --------------------------------------------------------------------------- rlimits


def test_rlimits_cannot_be_changed_but_can_be_read():
    code = """
    import resource
    soft, hard = attempt("getrlimit", lambda: resource.getrlimit(resource.RLIMIT_NOFILE))
    attempt("setrlimit_same", lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
    attempt("setrlimit_lower", lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard)))
    attempt("core_raise", lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
    """
    control, boxed = control_and_sandboxed(code, limits={"nofile": 256})
    assert boxed["getrlimit"] == ["OK"]
    # CPython reports EPERM from setrlimit as ValueError("not allowed to raise ...").
    for label in ("setrlimit_same", "setrlimit_lower", "core_raise"):
        assert control[label] == ["OK"], (label, control)
        assert boxed[label][0] == "DENIED" and boxed[label][1] in ("ValueError", "PermissionError")


def test_memory_bomb_gets_memory_error():
    code = """
    attempt("alloc_1_5g", lambda: len(bytearray(1536 << 20)))
    attempt("alloc_3g", lambda: len(bytearray(3 << 30)))
    """
    limits = {"as": 2 << 30, "data": 1 << 30}
    control, boxed = control_and_sandboxed(code, limits=limits)
    assert_blocked(control, boxed, ["alloc_1_5g", "alloc_3g"], exc="MemoryError")
    # A growing bomb stops cleanly and threads still start under these limits.
    proc = run_child(
        """
    import threading
    chunks = []
    def grow():
        while True:
            chunks.append(bytearray(64 << 20))
    attempt("grow", grow)
    print("chunks", len(chunks))
    del chunks[:]
    ts = [threading.Thread(target=lambda: None) for _ in range(8)]
    attempt("threads", lambda: [t.start() for t in ts] and [t.join() for t in ts])
    """,
        limits=limits,
    )
    found = outcomes(proc)
    assert found["grow"][:2] == ["DENIED", "MemoryError"] and found["threads"] == ["OK"]


def test_cpu_spin_is_killed_by_cpu_limit():
    code = """
    import time
    def spin(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass
    attempt("spin", lambda: spin({seconds}))
    """
    control = run_child(code.format(seconds=1.3), sandbox=False)  # longer than the limit
    assert control.returncode == 0 and outcomes(control)["spin"] == ["OK"]
    boxed = run_child(code.format(seconds=10.0), limits={"cpu": 1})
    assert boxed.returncode in (-signal.SIGXCPU, -signal.SIGKILL), boxed
    assert "spin" not in outcomes(boxed)


def test_huge_write_fails_with_efbig(dirs):
    target = str(dirs["scratch"] / "big.bin")
    code = f"""
    def big_write():
        fd = os.open({target!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        chunk = b"x" * (256 << 10)
        for _ in range(8):  # 2 MiB
            os.write(fd, chunk)
        os.close(fd)
    attempt("big_write", big_write)
    """
    control, boxed = control_and_sandboxed(code, write=[str(dirs["scratch"])], limits={"fsize": 1 << 20})
    assert_blocked(control, boxed, ["big_write"], exc="OSError", err=errno.EFBIG)
    assert os.path.getsize(target) == 1 << 20


# --------------------------------------------------------------------------- composition


def test_site_main_and_pth_work_after_apply(tmp_path):
    sitedir = tmp_path / "extra_site"
    sitedir.mkdir()
    (sitedir / "sandchat_test.pth").write_text("import sys; sys.sandchat_pth_ran = True\n")
    code = f"""
    import site
    attempt("site_main", site.main)
    attempt("venv_on_path", lambda: [p for p in sys.path
                                     if p.startswith(sys.prefix) and p.endswith("-packages")][0])
    attempt("msgpack", lambda: __import__("msgpack").unpackb(__import__("msgpack").packb([1])))
    attempt("addsitedir", lambda: site.addsitedir({str(sitedir)!r}))
    attempt("pth_ran", lambda: sys.sandchat_pth_ran)
    """
    control, boxed = control_and_sandboxed(code, read=site_dirs() + [str(sitedir)])
    for label in ("site_main", "addsitedir", "pth_ran"):
        assert control[label] == ["OK"] and boxed[label] == ["OK"], (label, boxed)
    # The venv (with msgpack, which the child imports next) exists only when
    # the tests run under the venv interpreter; elsewhere, match the control.
    for label in ("venv_on_path", "msgpack"):
        if sys.prefix != sys.base_prefix:
            assert control[label] == ["OK"], (label, control)
        assert boxed[label] == control[label], (label, boxed)


def site_dirs() -> list[str]:
    import site

    return [d for d in site.getsitepackages() + [site.getusersitepackages()] if d]


def test_report_lists_applied_layers():
    proc = run_child('print("done")')
    assert proc.returncode == 0, proc.stderr
    report = eval(proc.stdout.splitlines()[0].split(" ", 1)[1])  # repr of plain types
    assert report["profile"] == "untrusted"
    assert report["layers"] == [
        "rlimits",
        "pdeathsig",
        "no-capabilities",
        "no_new_privs",
        "landlock-fs",
        "landlock-net",
        "landlock-scope",
        "seccomp",
    ]
    assert report["landlock_abi"] >= 6 and report["missing"] == []
    assert report["limits"] == {"core": 0}


def test_profile_none_applies_only_rlimits():
    code = """
    import socket
    attempt("inet", lambda: socket.socket().close())
    attempt("etc_passwd", lambda: open("/etc/passwd").read())
    """
    proc = run_child(code, profile="none", limits={"nofile": 128})
    found = outcomes(proc)
    assert found == {"inet": ["OK"], "etc_passwd": ["OK"]}
    assert "'layers': ['rlimits']" in proc.stdout and "'nofile': 128" in proc.stdout


def test_missing_landlock_is_refused_unless_opted_in():
    prelude = PRELUDE.replace(
        "import runner.sandbox as sb",
        "import runner.sandbox as sb, runner.sandbox.landlock\nrunner.sandbox.landlock.abi_version = lambda: 0  # simulate old kernel",
    )
    refused = run_child('print("unreachable")', prelude=prelude)
    assert refused.returncode != 0 and "SandboxError: Landlock is not available" in refused.stderr
    opted = run_child(
        """
    import socket
    attempt("etc_passwd", lambda: open("/etc/passwd").read())
    attempt("inet", lambda: socket.socket().close())
    """,
        prelude=prelude.replace("limits=", "allow_unsandboxed=True, limits="),
    )
    found = outcomes(opted)
    assert found["etc_passwd"] == ["OK"]  # unprotected, as the report says
    assert found["inet"][0] == "DENIED"  # seccomp still applied
    assert "'landlock-fs: Landlock is not available on this kernel'" in opted.stdout
    assert "'seccomp']" in opted.stdout


def test_bad_arguments_raise_before_changing_anything():
    sandbox = load_runner_modules()
    with pytest.raises(sandbox.SandboxError):
        sandbox.apply("paranoid", [], [])
    with pytest.raises(sandbox.SandboxError):
        sandbox.apply("untrusted", [], [], tcp_ports=[443])
    with pytest.raises(sandbox.SandboxError):
        sandbox.apply("none", [], [], limits={"stack": 1})
    with pytest.raises(sandbox.SandboxError):
        sandbox.apply("none", [], [], limits={"cpu": -1})


def test_probe_reports_without_applying():
    sandbox = load_runner_modules()
    import runner.sandbox.kernel as kernel

    before = (kernel.no_new_privs(), kernel.prctl(kernel.PR_GET_SECCOMP))
    info = sandbox.probe()
    assert info["landlock_abi"] >= 1 and info["seccomp"] is True
    assert info["arch_supported"] is True
    # Probing applied nothing to this (pytest) process.
    assert (info["no_new_privs"], info["seccomp_mode"]) == before
    assert (kernel.no_new_privs(), kernel.prctl(kernel.PR_GET_SECCOMP)) == before


def test_seccomp_filter_checks_arch_and_x32():
    load_runner_modules()
    import runner.sandbox.kernel as kernel
    import runner.sandbox.seccomp as seccomp

    prog = seccomp.build(False, os.getpid())
    assert prog[0] == (0x20, 0, 0, 4)  # load seccomp_data.arch
    assert prog[1][3] == kernel.AUDIT_ARCH and prog[2] == (0x06, 0, 0, seccomp.RET_KILL_PROCESS)
    if kernel.MACHINE == "x86_64":
        assert prog[4] == (0x35, 0, 1, 0x40000000) and prog[5][3] == seccomp.RET_KILL_PROCESS
    assert prog[-1][0] == 0x06 and len(prog) < 4096  # ends in a return
    for i, (code, jt, jf, k) in enumerate(prog):  # every jump lands inside the program
        if code == 0x05:
            assert i + 1 + k < len(prog), (i, prog[i])
        elif code & 0x07 == 0x05:
            assert i + 1 + max(jt, jf) < len(prog), (i, prog[i])
    assert seccomp.build(True, os.getpid()) != prog


def _header_numbers(path: str, prefixes: tuple[str, ...]) -> dict[str, int]:
    numbers = {}
    with open(path) as header:
        for line in header:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "#define" and parts[2].isdigit():
                for prefix in prefixes:
                    if parts[1].startswith(prefix):
                        numbers[parts[1][len(prefix) :]] = int(parts[2])
    return numbers


@pytest.mark.parametrize(
    "arch, header, prefixes",
    [
        ("x86_64", "/usr/include/x86_64-linux-gnu/asm/unistd_64.h", ("__NR_",)),
        ("aarch64", "/usr/include/asm-generic/unistd.h", ("__NR_", "__NR3264_")),
    ],
)
def test_syscall_tables_match_kernel_headers(arch, header, prefixes):
    """Cross-check our hand-written numbers against the installed uapi headers."""
    if not os.path.exists(header):
        pytest.skip(f"{header} not installed")
    load_runner_modules()
    import runner.sandbox.syscalls as syscalls

    ours = {"x86_64": syscalls.X86_64, "aarch64": syscalls.AARCH64}[arch]
    theirs = _header_numbers(header, prefixes)
    checked = {name: nr for name, nr in ours.items() if name in theirs}
    assert {name: theirs[name] for name in checked} == checked
    assert len(checked) >= len(ours) - 20  # only syscalls newer than the headers go unchecked


@pytest.mark.parametrize("abi", [1, 3, 5])
def test_older_landlock_abis_degrade_and_are_reported(abi):
    """Simulate an older kernel: the smaller ruleset struct is accepted, gaps reported."""
    prelude = PRELUDE.replace(
        "import runner.sandbox as sb",
        f"import runner.sandbox as sb, runner.sandbox.landlock\nrunner.sandbox.landlock.abi_version = lambda: {abi}",
    )
    proc = run_child(
        """
    attempt("etc_passwd", lambda: open("/etc/passwd").read())
    attempt("kill_parent", lambda: os.kill(os.getppid(), 0))
    """,
        prelude=prelude,
    )
    assert proc.returncode == 0, proc.stderr
    found = outcomes(proc)
    assert found["etc_passwd"][:2] == ["DENIED", "PermissionError"]  # FS rules work on every ABI
    assert found["kill_parent"] == ["DENIED", "PermissionError", "1"]  # no scopes before ABI 6: seccomp's kill rule
    assert f"'landlock_abi': {abi}" in proc.stdout
    assert "landlock-scope: needs Landlock ABI 6" in proc.stdout
    assert ("landlock-net: needs Landlock ABI 4" in proc.stdout) == (abi < 4)


def test_landlock_rights_by_abi():
    load_runner_modules()
    import runner.sandbox.landlock as ll

    assert ll.handled_fs(0) == 0 and ll.handled_fs(1) == (1 << 13) - 1
    assert ll.handled_fs(2) == ll.handled_fs(1) | ll.ACCESS_FS_REFER
    assert ll.handled_fs(3) == ll.handled_fs(4) == ll.handled_fs(2) | ll.ACCESS_FS_TRUNCATE
    assert ll.handled_fs(5) == ll.handled_fs(7) == ll.handled_fs(99) == (1 << 16) - 1
    assert [len(ll._ruleset_attr(abi, 1, 0, 0)) for abi in (1, 3, 4, 5, 6, 7)] == [8, 8, 16, 16, 24, 24]


# --------------------------------------------------------------------------- unprivileged


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to switch to nobody with setpriv")
def test_sandbox_applies_as_unprivileged_user(victim):
    # nobody cannot enter pytest's tmp dirs (0700): copy our modules somewhere readable.
    base = tempfile.mkdtemp(prefix="sandchat-nobody-")
    try:
        os.chmod(base, 0o755)
        shutil.copytree(ROOT + "/runner", base + "/runner", ignore=shutil.ignore_patterns("__pycache__"))
        for dirpath, _, filenames in os.walk(base):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)
        code = f"""
        import socket, threading
        attempt("etc_passwd", lambda: open("/etc/passwd").read())
        attempt("fork", os.fork)
        attempt("inet", lambda: socket.socket().close())
        attempt("kill_victim", lambda: os.kill({victim.pid}, 0))
        t = threading.Thread(target=lambda: None)
        attempt("thread", lambda: (t.start(), t.join()))
        print("uid", os.getuid())
        """
        setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        read = [base + "/runner"]
        # The venv's interpreter lives under /root (0700): use the system one if there.
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        proc = run_child(code, argv_prefix=setpriv, root=base, read=read, python=python, limits={"nofile": 256, "as": 4 << 30})
        assert proc.returncode == 0, proc.stderr
        found = outcomes(proc)
        assert "uid 65534" in proc.stdout
        assert found["etc_passwd"][:2] == ["DENIED", "PermissionError"]
        assert found["fork"][:2] == ["DENIED", "PermissionError"]
        assert found["inet"][:2] == ["DENIED", "PermissionError"]
        assert found["kill_victim"][:2] == ["DENIED", "PermissionError"]
        assert found["thread"] == ["OK"]
        assert "'seccomp']" in proc.stdout and "'landlock-scope'" in proc.stdout
    finally:
        shutil.rmtree(base)


# --------------------------------------------------------------------------- cost


def test_measure_import_and_apply_time(capsys):
    """Prints (does not assert) what the sandbox costs the child's start-up."""
    code = f"""
    import time
    t0 = time.perf_counter()
    sb.apply("untrusted", {READ_PATHS!r}, ["/dev/null"], limits={{"nofile": 256}})
    print("apply_ms", round((time.perf_counter() - t0) * 1000, 2))
    """
    applies = []
    for _ in range(5):
        proc = run_child(code, sandbox=False)
        applies += [float(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("apply_ms")]
    baseline = "import sys, types"
    stub = (
        f"{baseline}; pkg = types.ModuleType('runner'); "
        f"pkg.__path__ = [{ROOT + '/runner'!r}]; sys.modules['runner'] = pkg; "
        "import runner.sandbox"
    )
    proc = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", stub], capture_output=True, text=True, timeout=25)
    importtime = [line for line in proc.stderr.splitlines() if line.rstrip().endswith("| runner.sandbox")]
    wall = {}
    for name, script in (("baseline", baseline), ("with sandbox", stub)):
        runs = []
        for _ in range(10):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-I", "-S", "-c", script], check=True)
            runs.append((time.perf_counter() - start) * 1000)
        wall[name] = sorted(runs)[len(runs) // 2]
    with capsys.disabled():
        print(f"\n[sandbox cost] apply() ms: {sorted(applies)}")
        print(f"[sandbox cost] -X importtime (self us | cumulative us): {importtime}")
        print(
            f"[sandbox cost] median wall: python -I -S -c '{baseline}': "
            f"{wall['baseline']:.1f} ms; + import runner.sandbox: {wall['with sandbox']:.1f} ms"
        )
    assert applies
