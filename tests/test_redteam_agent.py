"""Red team of the agent: attacks on its walls, its reuse rule, its bounds and its fidelity.

Every attack is a real process (sandchat with the agent on, hostile plugin files written
into the test's tmp dirs, real sockets). An attack the agent contains is a passing test;
one that breaks a claim is ``xfail(strict=True)`` with ``HOLE:`` in its reason.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.agent import wire
from app.agent.client import AgentClient
from app.agent.paths import AgentPaths, ensure_private
from app.version import build
from tests.agentkit import ON, cleanup, client, first_bytes, our_zombies, popen, reap, run, status, wait_warm, warm
from tests.helpers import HOSTILE_PLUGINS, SANDCHAT, TEST_PLUGINS, cli_env, gone, processes, sandchat, sandchat_bytes, wait_until

pytestmark = pytest.mark.timeout(120)


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    path.mkdir()
    zombies = our_zombies()
    yield path
    cleanup(path, zombies)


@pytest.fixture
def plugdir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    return folder


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / f"{name}_plugin.py"
    path.write_text(source)
    return path


def start_agent(home: Path) -> dict:
    """An agent listening for this home, with echo warm in it."""
    first = run(home, "prompt", "-p", "echo", "start the agent")
    assert first.returncode == 0, first.stderr
    wait_warm(home, "echo")
    found = status(home)
    assert found is not None
    return found


def both_ways(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]]:
    """The command without the agent, then through a running agent (bytes: nothing hidden)."""
    direct = sandchat_bytes(home, *args)
    start_agent(home)
    through = sandchat_bytes(home, *args, **ON)
    return direct, through


def same(direct: subprocess.CompletedProcess[bytes], through: subprocess.CompletedProcess[bytes]) -> None:
    assert through.returncode == direct.returncode, (direct.stderr[-500:], through.stderr[-500:])
    assert through.stdout == direct.stdout, (direct.stdout[-300:], through.stdout[-300:])
    assert through.stderr == direct.stderr, (direct.stderr[-500:], through.stderr[-500:])


def ended(pid: int) -> bool:
    """The process is gone or a zombie: no code of it runs (read from /proc, never from the agent's answer)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except OSError:
        return True


def agent_proc_of(home: Path) -> int:
    pid = client(home).pid()
    assert pid is not None
    return pid


BIG_CHUNK = '''"""One streamed chunk of 9 MiB: within the runner's 16 MiB message, past the agent's 8 MiB frame."""
from llm_utils import LLMClient

SIZE = 9 * 2**20


class BigChunk(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "a" * SIZE + " end"

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        yield "a" * SIZE
        yield " end"

    def count_tokens(self, text):
        return 1
'''

CTRL_CHUNK = '''"""A 1.5 MB chunk of control characters (each six bytes in JSON), then visible text."""
from llm_utils import LLMClient


class CtrlChunk(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "".join(self.stream_response(system, user_message))

    def stream_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        yield "\\x01" * 1_500_000
        yield "visible"

    def count_tokens(self, text):
        return 1
'''

BIG_TRACE = '''"""Raises with 1.5 MB of control characters in its message (and so in its traceback)."""
from llm_utils import LLMClient


class BigTrace(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        raise RuntimeError("boom" + "\\x01" * 1_500_000)

    def count_tokens(self, text):
        return 1
'''

SLOW_COUNT = '''"""count_tokens of a text with "slow" in it takes 25 s; any other answers at once."""
import time

from llm_utils import LLMClient


class SlowCount(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "ok"

    def count_tokens(self, text):
        if "slow" in text:
            time.sleep(25)
        return len(text.split())
'''

HEARTBEAT = '''# /// plugin
# env = ["HB_SECRET"]
# ///
"""Keeps a thread running from import on: code that runs between calls, holding its keys."""
import os
import threading
import time

from llm_utils import LLMClient

SECRET = os.environ.get("HB_SECRET", "")


def _beat():
    n = 0
    while True:
        n += 1
        try:
            with open(os.path.join(os.environ["HOME"], "beat"), "w") as f:
                f.write(f"{n} {len(SECRET)}")
        except OSError:
            pass
        time.sleep(0.02)


threading.Thread(target=_beat, daemon=True).start()


class Heartbeat(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "secret " + ("set" if SECRET else "unset")

    def count_tokens(self, text):
        return 1
'''

PROBE = '''"""Tries every way out of its sandbox towards the agent that hosts it; one line each."""
import os
import socket

from llm_utils import LLMClient


def attempt(label, action):
    try:
        result = action()
    except BaseException as exc:  # noqa: BLE001
        return f"BLOCKED {label}: {type(exc).__name__}"
    return f"LEAKED {label}: {str(result)[:60]!r}"


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s.recv(10)


def dgram(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    return s.sendto(b"x", path)


def pair_send(path):
    a, b = socket.socketpair()
    return a.sendto(b"x", path)


def read(path):
    with open(path, "rb") as f:
        return f.read(40)


class Probe(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        d = user_message.strip()
        ppid = os.getppid()
        lines = [
            attempt("connect", lambda: connect(d + "/agent.sock")),
            attempt("abstract", lambda: connect("\\0sandchat")),
            attempt("dgram", lambda: dgram(d + "/agent.sock")),
            attempt("pair-sendto", lambda: pair_send(d + "/agent.sock")),
            attempt("list", lambda: os.listdir(d)),
            attempt("log", lambda: read(d + "/agent.log")),
            attempt("lock", lambda: read(d + "/agent.lock")),
            attempt("environ", lambda: read(f"/proc/{ppid}/environ")),
            attempt("mem", lambda: read(f"/proc/{ppid}/mem")),
            attempt("fds", lambda: os.listdir(f"/proc/{ppid}/fd")),
            attempt("signal", lambda: os.kill(ppid, 0)),
            attempt("make-warm", lambda: open(d + "/warm-0000000000000000.json", "w").write("{}")),
            attempt("make-sock", lambda: socket.socket(socket.AF_UNIX).bind(os.environ["HOME"] + "/s")),
        ]
        return "\\n".join(lines)

    def count_tokens(self, text):
        return 1
'''

WHOAMI = '''"""Says which file it is and where its HOME (scratch) is."""
import os

from llm_utils import LLMClient

MARK = "one"


class Whoami(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return f"{MARK} {os.environ['HOME']}"

    def count_tokens(self, text):
        return 1
'''


# -- 1. output, errors and exits are the same through the agent as without it ---------------


HOSTILE_CASES = [
    (HOSTILE_PLUGINS, "hostile", ("go",)),
    (TEST_PLUGINS, "escapes", ("go",)),
    (TEST_PLUGINS, "raises", ("go",)),
    (TEST_PLUGINS, "wrong_types", ("go",)),
    (TEST_PLUGINS, "garbage", ("go",)),
    (TEST_PLUGINS, "exit_in_call", ("go",)),
    (TEST_PLUGINS, "stderr_flood", ("go",)),
    (TEST_PLUGINS, "huge", ("go",)),
    (HOSTILE_PLUGINS, "deep", ("0",)),
    (HOSTILE_PLUGINS, "liar", ("go",)),
]


@pytest.mark.parametrize(("folder", "plugin", "words"), HOSTILE_CASES, ids=[c[1] for c in HOSTILE_CASES])
def test_a_hostile_plugins_prompt_reads_the_same_through_the_agent(home: Path, folder: Path, plugin: str, words: tuple[str, ...]) -> None:
    direct, through = both_ways(home, "prompt", "--plugins-dir", str(folder), "-p", plugin, *words)
    same(direct, through)


@pytest.mark.parametrize(("plugin", "text"), [("wrong_types", "negative"), ("wrong_types", "bool"), ("wrong_types", "x"),
                                              ("forged_result", "x"), ("hostile", "raise")])  # fmt: skip
def test_a_hostile_count_reads_the_same_through_the_agent(home: Path, plugin: str, text: str) -> None:
    folder = HOSTILE_PLUGINS if plugin == "hostile" else TEST_PLUGINS
    direct, through = both_ways(home, "tokens", "--plugins-dir", str(folder), "-p", plugin, text)
    same(direct, through)


def test_a_chunk_larger_than_a_frame_is_printed_as_without_the_agent(home: Path, plugdir: Path) -> None:
    write(plugdir, "bigchunk", BIG_CHUNK)
    direct, through = both_ways(home, "prompt", "--plugins-dir", str(plugdir), "-p", "bigchunk", "go")
    assert direct.returncode == 0 and direct.stdout.endswith(b" end\n")
    same(direct, through)


def test_a_chunk_of_control_characters_is_cleaned_as_without_the_agent(home: Path, plugdir: Path) -> None:
    write(plugdir, "ctrlchunk", CTRL_CHUNK)
    direct, through = both_ways(home, "prompt", "--plugins-dir", str(plugdir), "-p", "ctrlchunk", "go")
    assert direct.returncode == 0 and b"visible" in direct.stdout
    same(direct, through)


def test_an_error_with_a_huge_traceback_reads_the_same_through_the_agent(home: Path, plugdir: Path) -> None:
    write(plugdir, "bigtrace", BIG_TRACE)
    direct, through = both_ways(home, "prompt", "--plugins-dir", str(plugdir), "-p", "bigtrace", "go")
    assert direct.returncode == 1
    same(direct, through)


def test_health_of_a_hostile_plugin_reads_the_same_through_the_agent(home: Path) -> None:
    args = ("plugins", "health", "--plugins-dir", str(HOSTILE_PLUGINS), "hostile", "--json")
    direct, through = both_ways(home, *args)
    assert direct.returncode == through.returncode
    volatile = {"pid", "uptime_s", "calls", "startup_ms", "ping_ms", "check_ms", "count_ms", "rss_bytes", "memory_bytes", "cgroup",
                "restarts", "started", "last_start"}  # fmt: skip
    [d], [t] = json.loads(direct.stdout), json.loads(through.stdout)

    def steady(report: dict) -> dict:
        return {k: v for k, v in report.items() if k not in volatile and not k.endswith(("_ms", "_s"))}

    assert steady(d) == steady(t)
    assert b"\x1b" not in through.stdout


def test_a_plugin_that_crashes_every_call_reads_the_same_on_every_command(home: Path) -> None:
    args = ("prompt", "--plugins-dir", str(TEST_PLUGINS), "-p", "exit_in_call", "go")
    direct = sandchat_bytes(home, *args)
    start_agent(home)
    for _ in range(7):
        same(direct, sandchat_bytes(home, *args, **ON))


# -- 2. deadlines, Ctrl-C and a hung agent ---------------------------------------------------


def test_an_agent_stopped_before_the_hello_is_passed_over_at_once(home: Path) -> None:
    pid = start_agent(home)["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        result = run(home, "prompt", "-p", "echo", "frozen")
        took = time.monotonic() - began
        assert (result.returncode, result.stdout, result.stderr) == (0, "echo: frozen\n", "")
        assert took < 60, took  # not the frozen agent's deadlines (start + total: 630 s); the fallback itself is ~1 s when idle
    finally:
        os.kill(pid, signal.SIGCONT)


def test_an_agent_that_hangs_mid_reply_keeps_the_commands_timeout(home: Path) -> None:
    (home / "config.toml").write_text("[plugins.slow_stream]\nstart = 20\n")
    plugins = ("--plugins-dir", str(TEST_PLUGINS))
    run(home, "tokens", *plugins, "-p", "slow_stream", "x")
    wait_warm(home, "slow_stream")
    pid = agent_proc_of(home)
    proc = popen(home, "prompt", *plugins, "--timeout", "8", "-p", "slow_stream", "go")
    try:
        first_bytes(proc)
        began = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            proc.communicate(timeout=60)
        finally:
            os.kill(pid, signal.SIGCONT)
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert took < 8 + 5, f"the command took {took:.1f}s with --timeout 8"


def test_ctrl_c_of_a_count_frees_the_plugin_for_the_next_command(home: Path, plugdir: Path) -> None:
    write(plugdir, "slowcount", SLOW_COUNT)
    (home / "config.toml").write_text("[plugins.slowcount]\ncount_tokens = 30\n")
    plugins = ("--plugins-dir", str(plugdir))
    assert run(home, "tokens", *plugins, "-p", "slowcount", "a b").stdout == "2\n"
    wait_warm(home, "slowcount")
    proc = popen(home, "tokens", *plugins, "-p", "slowcount", "slow")
    wait_until(lambda: (e := warm(home, "slowcount")) and e["calls"] >= 2, 40, "the count to run in the agent")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    began = time.monotonic()
    after = run(home, "tokens", *plugins, "-p", "slowcount", "one two three")
    took = time.monotonic() - began
    assert (after.returncode, after.stdout) == (0, "3\n"), after.stderr
    assert took < 10, f"the next count took {took:.1f}s"


def test_ctrl_c_of_a_stream_ends_the_call_in_the_agent(home: Path) -> None:
    plugins = ("--plugins-dir", str(TEST_PLUGINS))
    run(home, "tokens", *plugins, "-p", "slow_stream", "x")
    wait_warm(home, "slow_stream")
    proc = popen(home, "prompt", *plugins, "-p", "slow_stream", "go")
    first_bytes(proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    wait_until(lambda: (e := warm(home, "slow_stream")) and e["state"] == "ready", 10, "the stream to end in the agent")


# -- 3. the reuse rule: a warm process never outlives the decision that started it -----------


def test_disabling_a_plugin_ends_its_warm_process(home: Path, plugdir: Path) -> None:
    write(plugdir, "heartbeat", HEARTBEAT)
    plugins = ("--plugins-dir", str(plugdir))
    granted = run(home, "plugins", "grant", "heartbeat", "--env", "HB_SECRET", "--yes", *plugins)
    assert granted.returncode == 0, granted.stderr
    assert run(home, "prompt", *plugins, "-p", "heartbeat", "x", HB_SECRET="s3cret").stdout == "secret set\n"
    pid = wait_warm(home, "heartbeat")["pid"]
    off = run(home, "plugins", "disable", "heartbeat", *plugins)
    assert off.returncode == 0, off.stderr
    refused = run(home, "prompt", *plugins, "-p", "heartbeat", "x", HB_SECRET="s3cret")
    assert refused.returncode != 0  # the command itself refuses it, as without the agent
    wait_until(lambda: ended(pid), 10, "the disabled plugin's process to end")


def test_revoking_a_grant_ends_the_warm_process_that_holds_it(home: Path, plugdir: Path) -> None:
    write(plugdir, "heartbeat", HEARTBEAT)
    plugins = ("--plugins-dir", str(plugdir))
    assert run(home, "plugins", "grant", "heartbeat", "--env", "HB_SECRET", "--yes", *plugins).returncode == 0
    assert run(home, "prompt", *plugins, "-p", "heartbeat", "x", HB_SECRET="s3cret").stdout == "secret set\n"
    pid = wait_warm(home, "heartbeat")["pid"]
    revoked = run(home, "plugins", "revoke", "heartbeat", *plugins)
    assert revoked.returncode == 0, revoked.stderr
    wait_until(lambda: ended(pid), 10, "the process holding the revoked key to end")


def test_a_revoked_grant_is_not_served_by_the_warm_process_on_the_next_command(home: Path, plugdir: Path) -> None:
    write(plugdir, "heartbeat", HEARTBEAT)
    plugins = ("--plugins-dir", str(plugdir))
    assert run(home, "plugins", "grant", "heartbeat", "--env", "HB_SECRET", "--yes", *plugins).returncode == 0
    assert run(home, "prompt", *plugins, "-p", "heartbeat", "x", HB_SECRET="s3cret").stdout == "secret set\n"
    pid = wait_warm(home, "heartbeat")["pid"]
    assert run(home, "prompt", *plugins, "-p", "heartbeat", "x", HB_SECRET="s3cret").stdout == "secret set\n"
    assert wait_warm(home, "heartbeat")["pid"] == pid  # warm reuse, for the same decision
    assert run(home, "plugins", "revoke", "heartbeat", *plugins).returncode == 0
    after = run(home, "prompt", *plugins, "-p", "heartbeat", "x", HB_SECRET="s3cret")
    assert after.stdout == "secret unset\n", after.stderr
    assert wait_warm(home, "heartbeat")["pid"] != pid


def test_a_same_size_same_mtime_rewrite_of_the_plugin_runs_the_new_bytes(home: Path, plugdir: Path) -> None:
    path = write(plugdir, "whoami", WHOAMI)
    ask = ("prompt", "--plugins-dir", str(plugdir), "-p", "whoami", "x")
    assert run(home, *ask).stdout.startswith("one ")
    wait_warm(home, "whoami")
    assert run(home, *ask).stdout.startswith("one ")
    before = path.stat()
    path.write_text(WHOAMI.replace('MARK = "one"', 'MARK = "two"'))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    after = run(home, *ask)
    assert after.stdout.startswith("two "), (after.stdout, after.stderr)


def test_a_same_named_plugin_of_another_folder_never_gets_the_warm_process(home: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    write(first, "whoami", WHOAMI)
    write(second, "whoami", WHOAMI.replace('MARK = "one"', 'MARK = "two"'))
    assert run(home, "prompt", "--plugins-dir", str(first), "-p", "whoami", "x").stdout.startswith("one ")
    wait_warm(home, "whoami")
    for folder, mark in ((second, "two"), (first, "one"), (second, "two")):
        got = run(home, "prompt", "--plugins-dir", str(folder), "-p", "whoami", "x")
        assert got.stdout.startswith(mark + " "), got


def test_two_homes_sharing_a_runtime_dir_agent_never_share_a_process(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    homes = [tmp_path / "h1", tmp_path / "h2"]
    for h in homes:
        h.mkdir()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    write(plugins, "whoami", WHOAMI)
    env = {**ON, "XDG_RUNTIME_DIR": str(runtime)}
    reach = AgentClient(AgentPaths(runtime / "sandchat"), build())
    zombies = our_zombies()
    try:
        assert sandchat(homes[0], "prompt", "--plugins-dir", str(plugins), "-p", "whoami", "x", **env).returncode == 0
        wait_until(lambda: (r := reach.ask({"op": "status"})) and any(p["name"] == "whoami" and p.get("pid") for p in r["plugins"]),
                   40, "whoami warm in the shared agent")  # fmt: skip
        for h in (homes[1], homes[0], homes[1]):
            got = sandchat(h, "prompt", "--plugins-dir", str(plugins), "-p", "whoami", "x", **env)
            assert got.returncode == 0 and str(h) in got.stdout, got  # its own home's scratch: a process of its own decision
    finally:

        def none_left() -> bool:
            pid = reach.pid()
            if pid is not None:
                sandchat(homes[0], "agent", "stop", **env)
                reap(pid)
            return not any(f"--dir {runtime}" in cmd for _, _, cmd in processes())

        wait_until(none_left, 30, "the shared agent to end")
        for zombie in our_zombies() - zombies:
            try:
                os.waitpid(zombie, os.WNOHANG)
            except ChildProcessError:
                pass


# -- 4. a sandboxed plugin against the agent that hosts it -----------------------------------


def test_a_plugin_in_the_agent_cannot_reach_the_socket_its_files_or_its_host(home: Path, plugdir: Path) -> None:
    write(plugdir, "probe", PROBE)
    agent = start_agent(home)
    directory = str(home / "agent")
    ask = ("prompt", "--plugins-dir", str(plugdir), "-p", "probe", directory)
    result = run(home, *ask)
    assert result.returncode == 0, result.stderr
    entry = wait_warm(home, "probe")
    assert entry is not None  # the probe ran inside the agent: the agent is its host
    lines = result.stdout.splitlines()
    assert len(lines) == 13 and all(line.startswith("BLOCKED") for line in lines), lines
    assert not list((home / "agent").glob("warm-*"))
    after = wait_until(lambda: status(home), 20, "the agent to answer")
    assert after is not None and after["pid"] == agent["pid"]


def test_a_plugin_cannot_learn_another_plugins_key_through_the_agent(home: Path, plugdir: Path) -> None:
    write(plugdir, "heartbeat", HEARTBEAT)
    write(plugdir, "probe", PROBE)
    plugins = ("--plugins-dir", str(plugdir))
    assert run(home, "plugins", "grant", "heartbeat", "--env", "HB_SECRET", "--yes", *plugins).returncode == 0
    assert run(home, "prompt", *plugins, "-p", "heartbeat", "x", HB_SECRET="k-" + "9" * 20).returncode == 0
    wait_warm(home, "heartbeat")
    env = run(home, "prompt", "--plugins-dir", str(TEST_PLUGINS), "-p", "envdump", "x", HB_SECRET="k-" + "9" * 20)
    assert env.returncode == 0 and "HB_SECRET" not in env.stdout.split()  # the other plugin: no key it was not granted
    # the agent process itself: its environment and argv hold no key
    pid = agent_proc_of(home)
    with open(f"/proc/{pid}/environ", "rb") as f:
        assert b"9" * 20 not in f.read()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert b"9" * 20 not in f.read()


# -- 5. the directory, its files, and the walls ---------------------------------------------


def test_a_symlinked_agent_directory_is_refused_and_the_command_still_works(home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (home / "agent").symlink_to(elsewhere)
    result = run(home, "prompt", "-p", "echo", "hi")
    assert (result.returncode, result.stdout, result.stderr) == (0, "echo: hi\n", "")
    again = run(home, "prompt", "-p", "echo", "hi")
    assert (again.returncode, again.stdout) == (0, "echo: hi\n")
    assert list(elsewhere.iterdir()) == []  # no socket, lock, log or warm file written through the link
    assert not any(f"--dir {home}" in cmd for _, _, cmd in processes())


def test_an_agent_directory_others_may_enter_is_refused(home: Path) -> None:
    directory = home / "agent"
    directory.mkdir(mode=0o700)
    os.chmod(directory, 0o711)
    result = run(home, "prompt", "-p", "echo", "hi")
    assert (result.returncode, result.stdout, result.stderr) == (0, "echo: hi\n", "")
    assert list(directory.iterdir()) == []
    assert os.stat(directory).st_mode & 0o777 == 0o711


def test_an_agent_directory_of_another_owner_is_refused(home: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to make a directory another uid owns")
    directory = home / "agent"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    result = run(home, "prompt", "-p", "echo", "hi")
    assert (result.returncode, result.stdout, result.stderr) == (0, "echo: hi\n", "")
    assert list(directory.iterdir()) == []
    os.chown(directory, 0, 0)


def test_a_shared_runtime_dir_is_not_used_for_the_socket(home: Path, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir()
    os.chmod(runtime, 0o777)
    env = {"XDG_RUNTIME_DIR": str(runtime)}
    result = run(home, "prompt", "-p", "echo", "hi", **env)
    assert result.returncode == 0
    wait_warm(home, "echo")  # under the data dir, not the open runtime dir
    assert not (runtime / "sandchat").exists()


def test_warm_handover_files_do_not_outlive_the_start_and_files_are_private(home: Path, plugdir: Path) -> None:
    write(plugdir, "heartbeat", HEARTBEAT)
    plugins = ("--plugins-dir", str(plugdir))
    assert run(home, "plugins", "grant", "heartbeat", "--env", "HB_SECRET", "--yes", *plugins).returncode == 0
    secret = "k-" + "7" * 24
    assert run(home, "prompt", *plugins, "-p", "heartbeat", "x", HB_SECRET=secret).returncode == 0
    wait_warm(home, "heartbeat")
    directory = home / "agent"
    assert not list(directory.glob("warm-*"))
    assert os.stat(directory).st_mode & 0o777 == 0o700
    for name in ("agent.sock", "agent.lock", "agent.log"):
        assert os.stat(directory / name).st_mode & 0o077 == 0, name
    assert secret.encode() not in (directory / "agent.log").read_bytes()


def test_a_warm_file_that_is_a_symlink_into_the_directory_is_read_once_and_removed(home: Path, tmp_path: Path) -> None:
    """The agent deletes its handover file: pointed at the user's file, it must not delete the target."""
    paths = ensure_private(AgentPaths(home / "agent"))
    target = tmp_path / "precious.json"
    target.write_text("{}")
    link = paths.directory / "warm-feedfacefeedface.json"
    link.symlink_to(target)
    proc = subprocess.run([*SANDCHAT, "agent", "serve", "--dir", str(paths.directory), "--idle", "2", "--warm", str(link)],
                          env=cli_env(home), capture_output=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert target.read_text() == "{}"  # unlink removes the link, never the file it names
    assert not link.is_symlink()


def test_a_garbage_peer_does_not_take_the_agent_down(home: Path) -> None:
    agent = start_agent(home)
    path = str(home / "agent" / "agent.sock")
    payloads = [
        b"\xff\xff\xff\xff",  # a length past the cap
        b"\x00\x00\x00\x05[1,2]",  # not an object
        wire.encode(wire.hello(build())) + b"\x00\x00\x00\x04nope",
        wire.encode(wire.hello(build())) + wire.encode({"op": "stream", "name": "echo", "config": {"__type__": "os.system"}}),
        wire.encode(wire.hello(build())) + wire.encode({"op": "stream", "config": [[[[[[[[[[[[1]]]]]]]]]]]]}),
        wire.encode(wire.hello(build())) + struct_frame(b"[" * 100_000 + b"]" * 100_000),
        wire.encode(wire.hello(build())) + wire.encode({"op": "probe", "config": {"__map__": [[1, 2, 3]]}}),
    ]
    for payload in payloads:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            try:
                while s.recv(65536):
                    pass
            except OSError:
                pass
    after = wait_until(lambda: status(home), 20, "the agent to answer")
    assert after is not None and after["pid"] == agent["pid"]
    again = run(home, "prompt", "-p", "echo", "still")
    assert (again.returncode, again.stdout, again.stderr) == (0, "echo: still\n", "")


def struct_frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def test_a_client_that_never_finishes_its_request_does_not_block_the_others(home: Path) -> None:
    start_agent(home)
    path = str(home / "agent" / "agent.sock")
    idle = []
    try:
        for _ in range(40):  # more than the listen backlog, each holding a thread
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.sendall(wire.encode(wire.hello(build()))[:3])
            idle.append(s)
        result = run(home, "prompt", "-p", "echo", "through")
        assert (result.returncode, result.stdout, result.stderr) == (0, "echo: through\n", "")
    finally:
        for s in idle:
            s.close()


# -- 6. lifetime: stop, idle, upgrade --------------------------------------------------------


def test_agent_stop_while_a_reply_streams_leaves_nothing_and_the_client_says_one_line(home: Path) -> None:
    plugins = ("--plugins-dir", str(TEST_PLUGINS))
    run(home, "tokens", *plugins, "-p", "slow_stream", "x")
    plugin = wait_warm(home, "slow_stream")["pid"]
    agent = agent_proc_of(home)
    proc = popen(home, "prompt", *plugins, "-p", "slow_stream", "go")
    first_bytes(proc)
    stopped = run(home, "agent", "stop")
    assert stopped.returncode == 0, stopped.stderr
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert err.decode().count("\n") <= 2, err
    reap(agent)
    wait_until(lambda: gone(plugin), 20, "the plugin to end")


def test_a_stopped_agent_with_a_busy_plugin_leaves_no_process(home: Path, plugdir: Path) -> None:
    write(plugdir, "slowcount", SLOW_COUNT)
    plugins = ("--plugins-dir", str(plugdir))
    run(home, "tokens", *plugins, "-p", "slowcount", "a")
    plugin = wait_warm(home, "slowcount")["pid"]
    agent = agent_proc_of(home)
    proc = popen(home, "tokens", *plugins, "-p", "slowcount", "slow")
    wait_until(lambda: (e := warm(home, "slowcount")) and e["calls"] >= 2, 40, "the count to run")
    began = time.monotonic()
    assert run(home, "agent", "stop").returncode == 0
    proc.communicate(timeout=30)
    reap(agent)
    wait_until(lambda: gone(plugin), 20, "the busy plugin to end")
    assert time.monotonic() - began < 20


@pytest.mark.xfail(
    strict=True, reason="HOLE: build() hashes size+mtime only: a same-size edit with the old mtime keeps the old agent serving"
)
def test_a_same_size_edit_of_the_code_with_its_old_mtime_replaces_the_agent(tmp_path: Path) -> None:
    import shutil

    from tests.helpers import ROOT

    tree = tmp_path / "src"
    for name in ("app", "runner", "llm_plugins"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("llm_utils.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, tree / name)
    h = tmp_path / "home"
    h.mkdir()
    zombies = our_zombies()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SANDCHAT, *args], env=cli_env(h, **ON), cwd=tree, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    def answering() -> int | None:
        doc = json.loads(cli("agent", "status", "--json").stdout)
        return doc["pid"] if doc.get("answering") and any(p["name"] == "echo" for p in doc.get("plugins", [])) else None

    try:
        assert cli("prompt", "-p", "echo", "one").returncode == 0
        old = wait_until(answering, 40, "echo warm")
        changed = tree / "runner" / "errors.py"
        before = changed.stat()
        text = changed.read_text()
        edited = text.replace("anything that went wrong with a plugin", "ANYTHING THAT WENT WRONG WITH A PLUGIN", 1)
        assert edited != text and len(edited) == len(text)
        changed.write_text(edited)
        os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert cli("prompt", "-p", "echo", "two").returncode == 0
        assert answering() != old, "the agent of the old code still answers"
    finally:

        def none_left() -> bool:
            pid = AgentClient(AgentPaths(h / "agent"), "any").pid()
            if pid is not None:
                cli("agent", "stop")
                reap(pid)
            return not any(f"--dir {h}" in cmd for _, _, cmd in processes())

        wait_until(none_left, 30, "the agents to end")
        for zombie in our_zombies() - zombies:
            try:
                os.waitpid(zombie, os.WNOHANG)
            except ChildProcessError:
                pass
