"""runner.cgroup on the real kernel: real cgroups, real child processes, no mocks.

Each limit is shown to bite on a child (a plain ``python -I -S -c`` script, not a
plugin) inside a cage, and, where it is cheap, not to bite on the same child outside
one: a test that cannot fail proves nothing. Tests that need a cgroup skip, with the
reason open_cage gives, on a machine that has none.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import cgroup as cg
from runner import cgroupfs
from runner.cgroup import Cage, CageError, CageLimits, open_cage, systemd_scope_argv

pytestmark = pytest.mark.timeout(60)

ROOT = str(Path(__file__).resolve().parent.parent)
MiB = 1 << 20
LIMITS = CageLimits(tasks=32, memory=128 * MiB)

# Starts threads until the kernel refuses one (or 200 run), reports, then waits for a line.
THREADS = """
import sys, threading
go = threading.Event()
started, error = 0, None
for _ in range(200):
    try:
        threading.Thread(target=go.wait, daemon=True).start()
    except RuntimeError as exc:
        error = exc
        break
    started += 1
print("started", started, repr(error), flush=True)
sys.stdin.readline()
go.set()
"""

# Puts argv[1] MiB into a memfd by fallocate or write (argv[2]); the pages are not mapped,
# so they are in no process's RSS. Reports, then waits for a line.
MEMFD = """
import os, sys
fd = os.memfd_create("hog")
size, how = int(sys.argv[1]) << 20, sys.argv[2]
try:
    if how == "fallocate":
        os.posix_fallocate(fd, 0, size)
    else:
        chunk = b"x" * (1 << 20)
        for _ in range(size >> 20):
            os.write(fd, chunk)
except OSError as exc:
    print("refused", exc.errno, flush=True)
else:
    print("allocated", flush=True)
sys.stdin.readline()
"""

# Forks two grandchildren and starts threads, reports every pid, then waits for ever.
FAMILY = """
import os, sys, threading, time
pids = [os.getpid()]
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    pids.append(pid)
for _ in range(3):
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
print(*pids, flush=True)
sys.stdin.readline()
"""

WAIT = "import sys; print('ready', flush=True); sys.stdin.readline()"


def spawn(argv: list[str], cage: Cage | None = None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        cage.wrap(argv) if cage else argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if cage is not None and cage.kind == "systemd-scope":
        cage.add(proc.pid)  # the scope learns its cgroup from the pid
    return proc


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", code, *args]


def read_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The child's next stdout line; "" once it has exited."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output from the child within {timeout}s"
    return proc.stdout.readline().strip()  # type: ignore[union-attr]


@contextlib.contextmanager
def running(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Yield the child; afterwards make sure it is dead and reaped."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def exited(pid: int, timeout: float = 30.0) -> bool:
    """Wait for any process (ours or not) to exit: a pidfd becomes readable when it does."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def members(cage: Cage) -> set[int]:
    found: set[int] = set()
    for d in cage.paths:
        found.update(int(p) for p in Path(d, "cgroup.procs").read_text().split())
    return found


@pytest.fixture
def cage() -> Iterator[Cage]:
    """A cage of whichever kind this machine gives, with LIMITS; skip if none."""
    made = open_cage("test", LIMITS)
    if isinstance(made, str):
        pytest.skip(made)
    yield made
    made.close()


@pytest.fixture
def dir_cage(cage: Cage) -> Cage:
    """A cage whose directories sandchat made itself (not a systemd scope)."""
    if cage.kind == "systemd-scope":
        pytest.skip("this machine gives systemd scopes, whose cgroups are systemd's")
    return cage


def test_limits_must_be_positive_ints() -> None:
    for tasks, memory in ((0, MiB), (1, 0), (-1, MiB), (True, MiB), (1, 1.5)):
        with pytest.raises(ValueError):
            CageLimits(tasks, memory)  # type: ignore[arg-type]


def test_thread_bomb_stops_at_the_task_limit(cage: Cage) -> None:
    with running(spawn(python(THREADS))) as free:
        assert read_line(free) == "started 200 None"  # control: nothing else stops it
        free.communicate("\n", timeout=30)
    with running(spawn(python(THREADS), cage)) as caged:
        words = read_line(caged).split(maxsplit=2)
        assert words[0] == "started"
        assert int(words[1]) == LIMITS.tasks - 1  # the main thread is the 32nd task
        assert "can't start new thread" in words[2]
        assert cage.tasks() == LIMITS.tasks
        caged.communicate("\n", timeout=30)
    assert caged.returncode == 0


@pytest.mark.parametrize("how", ["fallocate", "write"])
def test_memfd_past_the_limit_is_oom_killed(cage: Cage, how: str) -> None:
    with running(spawn(python(MEMFD, "512", how), cage)) as proc:
        assert read_line(proc) == ""  # neither "allocated" nor "refused": it died
        assert proc.wait(timeout=30) == -signal.SIGKILL
    assert cage.oom_killed()
    assert not members(cage)


def test_memfd_past_the_limit_without_a_cage_is_allocated() -> None:
    # The control for the test above: RLIMIT-free, the same child gets its 512 MiB.
    with running(spawn(python(MEMFD, "512", "fallocate"))) as proc:
        assert read_line(proc) == "allocated"


def test_memory_bytes_counts_memfd_pages_that_vmrss_does_not(cage: Cage) -> None:
    with running(spawn(python(MEMFD, "64", "fallocate"), cage)) as proc:
        assert read_line(proc) == "allocated"
        charged, rss = cage.memory_bytes(), vm_rss(proc.pid)
        print(
            f"\n64 MiB memfd: cage memory_bytes={charged} ({charged / MiB:.1f} MiB), "  # type: ignore[operator]
            f"VmRSS={rss} ({rss / MiB:.1f} MiB)"
        )
        assert charged is not None and charged >= 64 * MiB
        assert rss < 64 * MiB
        assert not cage.oom_killed()
        proc.communicate("\n", timeout=30)
    assert proc.returncode == 0


def test_kill_leaves_no_task(cage: Cage) -> None:
    with running(spawn(python(FAMILY), cage)) as proc:
        pids = [int(p) for p in read_line(proc).split()]
        assert set(pids) <= members(cage)
        assert cage.tasks() == 3 + 3  # three processes, three more threads
        assert cage.kill()
        assert not members(cage)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    for grandchild in pids[1:]:
        assert exited(grandchild)
        with contextlib.suppress(ChildProcessError):  # reparented to us if we are a subreaper
            os.waitpid(grandchild, 0)


def test_wrap_enters_the_cage_before_the_command_runs(dir_cage: Cage) -> None:
    with running(spawn(python("print(open('/proc/self/cgroup').read(), flush=True)"), dir_cage)) as proc:
        out, _ = proc.communicate(timeout=30)
    names = {os.path.basename(d) for d in dir_cage.paths}
    lines = [line for line in out.splitlines() if os.path.basename(line) in names]
    assert len(lines) == len(dir_cage.paths), out  # one line per hierarchy the cage spans


def test_add_moves_a_running_process(dir_cage: Cage) -> None:
    with running(spawn(python(WAIT))) as proc:
        assert read_line(proc) == "ready"
        assert proc.pid not in members(dir_cage)
        dir_cage.add(proc.pid)
        assert members(dir_cage) == {proc.pid}
        assert dir_cage.tasks() == 1


def test_close_removes_the_directories_and_is_idempotent(dir_cage: Cage) -> None:
    paths = dir_cage.paths
    with running(spawn(python(WAIT), dir_cage)) as proc:
        assert read_line(proc) == "ready"
        closers = [threading.Thread(target=dir_cage.close) for _ in range(4)]
        for t in closers:
            t.start()
        for t in closers:
            t.join(timeout=30)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    assert not any(os.path.exists(d) for d in paths)
    dir_cage.close()
    assert dir_cage.memory_bytes() is None and dir_cage.tasks() is None and not dir_cage.oom_killed()
    with running(spawn(python("print('ran')"), dir_cage)) as proc:
        out, err = proc.communicate(timeout=30)
    assert out == "" and proc.returncode != 0, (out, err)  # no cage, no run
    with pytest.raises(CageError):
        dir_cage.add(os.getpid())


def _make_with_task(folder: str, pid: int) -> None:
    """``folder`` as a cgroup holding ``pid``. Until the pid is in, it is an empty leftover of
    a dead host, which another test process's open_cage() may sweep (pytest-xdist): again."""
    for _ in range(100):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)
        try:
            Path(folder, "cgroup.procs").write_text(str(pid))
            return
        except FileNotFoundError:
            continue
    raise AssertionError(f"{folder} was swept 100 times before the task went in")


def test_open_cage_removes_empty_leftovers_of_dead_hosts(dir_cage: Cage) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert not Path(f"/proc/{dead.pid}").exists()
    parents = {os.path.dirname(d) for d in dir_cage.paths}
    stale = [os.path.join(p, f"sandchat-{dead.pid}-gone-0") for p in parents]
    busy = [os.path.join(p, f"sandchat-{dead.pid}-busy-0") for p in parents]
    live = [os.path.join(p, "sandchat-1-live-0") for p in parents]  # pid 1 is alive
    for d in stale + live:
        os.mkdir(d)
    try:
        with running(spawn(python(WAIT))) as proc:
            assert read_line(proc) == "ready"
            for d in busy:
                _make_with_task(d, proc.pid)
            fresh = open_cage("test", LIMITS)
            assert isinstance(fresh, Cage), fresh
            fresh.close()
            assert not any(os.path.exists(d) for d in stale)
            assert all(os.path.exists(d) for d in busy + live)  # a task inside, or a live host
    finally:
        for d in busy + live:
            with contextlib.suppress(OSError):
                os.rmdir(d)


def test_cages_of_a_host_killed_by_sigkill_are_removed_by_the_next_open(dir_cage: Cage) -> None:
    host = (
        f"import sys; sys.path.insert(0, {ROOT!r}); from runner.cgroup import *; "
        "c = open_cage('orphan', CageLimits(8, 1 << 26)); print(*c.paths, flush=True); sys.stdin.readline()"
    )
    with running(spawn([sys.executable, "-I", "-c", host])) as proc:
        left = read_line(proc).split()
        assert left and all(os.path.basename(d).startswith(f"sandchat-{proc.pid}-orphan-") for d in left)
        proc.kill()  # no close(): its directories stay behind
        proc.wait(timeout=30)
    assert all(os.path.isdir(d) for d in left)
    fresh = open_cage("test", LIMITS)
    assert isinstance(fresh, Cage), fresh
    fresh.close()
    assert not any(os.path.exists(d) for d in left)


def test_no_cgroup_gives_a_one_line_reason() -> None:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to hide the cgroup mounts in a private mount namespace")
    code = f"import sys; sys.path.insert(0, {ROOT!r}); from runner.cgroup import *; print(repr(open_cage('x', CageLimits(8, 1 << 26))))"
    # In a mount namespace of its own, the child detaches every cgroup mount, then asks.
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", 'umount -l /sys/fs/cgroup && exec "$0" -c "$1"', sys.executable, code],
        capture_output=True,
        text=True,
        timeout=30,
    )
    reason = eval(result.stdout)  # the repr of a str, printed by our own child
    assert isinstance(reason, str) and "\n" not in reason, result
    assert reason.startswith("no cgroup for plugins: cgroup v2: not mounted"), reason


# cgroup v2 here may have no pids/memory controllers (they can be bound to v1); its
# membership, cgroup.kill and delegation checks need none, so they are tested directly.


@pytest.fixture
def v2_dir() -> Iterator[str]:
    """A fresh child of the host's v2 cgroup, removed afterwards; skip if none can be made."""
    path = cgroupfs.cgroups_of().get("")
    parents = [cgroupfs.host_dir(m[0], m[1], path) for m in cgroupfs.mounts() if m[2] == "cgroup2" and path]
    if not any(parents):
        pytest.skip("no cgroup v2 hierarchy is mounted")
    d = os.path.join(next(p for p in parents if p), f"sandchat-{os.getpid()}-v2test-0")
    try:
        os.mkdir(d)
    except OSError as exc:
        pytest.skip(f"cannot create a v2 cgroup: {exc}")
    yield d
    with contextlib.suppress(OSError):
        os.rmdir(d)


def test_v2_cage_kills_with_cgroup_kill_and_closes(v2_dir: str) -> None:
    if not os.path.exists(os.path.join(v2_dir, "cgroup.kill")):
        pytest.skip("kernel older than 5.14: no cgroup.kill")
    cage = Cage("cgroup2", LIMITS, [v2_dir], memory_dir=v2_dir, pids_dir=v2_dir)
    with running(spawn(python(FAMILY), cage)) as proc:
        pids = [int(p) for p in read_line(proc).split()]
        assert set(pids) == members(cage)
        assert cage.kill()
        assert not members(cage)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    for grandchild in pids[1:]:
        assert exited(grandchild)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(grandchild, 0)
    cage.close()
    cage.close()
    assert not os.path.exists(v2_dir)


def test_v2_host_moves_only_out_of_a_delegated_cgroup_it_has_alone(v2_dir: str) -> None:
    with running(spawn(python(WAIT))) as one, running(spawn(python(WAIT))) as two:
        assert read_line(one) == read_line(two) == "ready"
        Path(v2_dir, "cgroup.procs").write_text(str(one.pid))
        assert not cg._may_move_host(v2_dir, one.pid, False)  # alone, but not delegated
        try:
            os.setxattr(v2_dir, "trusted.delegate", b"1")
        except OSError as exc:
            pytest.skip(f"cannot mark the cgroup delegated: {exc}")
        assert cg._may_move_host(v2_dir, one.pid, False)
        Path(v2_dir, "cgroup.procs").write_text(str(two.pid))
        assert not cg._may_move_host(v2_dir, one.pid, False)  # someone else is there too


def test_systemd_scope_argv() -> None:
    limits = CageLimits(tasks=64, memory=256 * MiB)
    env = shutil.which("env") or "/usr/bin/env"
    scope = [
        "--scope",
        "--quiet",
        "--collect",
        "--no-ask-password",
        "--unit=sandchat-7-p-0.scope",
        "--property=TasksMax=64",
        f"--property=MemoryMax={256 * MiB}",
        "--property=MemorySwapMax=0",
        "--",
    ]
    user = systemd_scope_argv("/usr/bin/systemd-run", "sandchat-7-p-0.scope", limits, "/run/user/1000")
    assert user == [env, "XDG_RUNTIME_DIR=/run/user/1000", "/usr/bin/systemd-run", "--user", *scope, env, "-u", "XDG_RUNTIME_DIR"]
    system = systemd_scope_argv("/usr/bin/systemd-run", "sandchat-7-p-0.scope", limits)
    assert system == ["/usr/bin/systemd-run", *scope]
    cage = Cage("systemd-scope", limits, prefix=user, unit="sandchat-7-p-0.scope")
    assert cage.wrap(["python", "-c", "pass"]) == [*user, "python", "-c", "pass"]


def test_systemd_scope_kill_before_the_scope_exists_kills_the_child() -> None:
    # Until systemd-run has moved itself into the scope, the recorded pid is all there is.
    cage = Cage("systemd-scope", LIMITS, unit="sandchat-7-never-0.scope")
    with running(spawn(python(WAIT))) as proc:
        assert read_line(proc) == "ready"
        cage.add(proc.pid)
        assert cage.paths == () and cage.memory_bytes() is None and cage.tasks() is None
        assert cage.kill()
        assert proc.wait(timeout=30) == -signal.SIGKILL
    cage.close()


def _user_manager() -> bool:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return bool(shutil.which("systemd-run") and runtime and os.path.exists(f"{runtime}/systemd/private"))


@pytest.mark.skipif(not _user_manager(), reason="no systemd user manager here (needs systemd-run and $XDG_RUNTIME_DIR/systemd/private)")
def test_systemd_user_scope_limits_threads_and_memory() -> None:
    try:
        cage = cg._cage_scope("scope-test", LIMITS)
    except cg._Unavailable as exc:
        pytest.skip(str(exc))
    try:
        with running(spawn(python(THREADS), cage)) as proc:
            words = read_line(proc).split(maxsplit=2)
            assert int(words[1]) < LIMITS.tasks and "can't start new thread" in words[2]
            assert cage.paths and cage.paths[0].endswith(".scope")
            assert cage.tasks() == LIMITS.tasks
            proc.communicate("\n", timeout=30)
    finally:
        cage.close()
    cage = cg._cage_scope("scope-test", LIMITS)
    try:
        with running(spawn(python(MEMFD, "512", "fallocate"), cage)) as proc:
            assert read_line(proc) == ""
            assert proc.wait(timeout=30) == -signal.SIGKILL
        assert cage.oom_killed()
    finally:
        cage.close()
