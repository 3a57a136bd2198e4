"""The agent with real processes: warm reuse, restarts on a changed decision, two clients, failures, idle, stop."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.agent import wire
from app.agent.client import AgentClient
from app.agent.paths import AgentPaths, ensure_private
from app.version import build
from tests.agentkit import (
    PACED,
    cleanup,
    client,
    first_bytes,
    our_zombies,
    paced_answer,
    popen,
    reap,
    run,
    status,
    wait_warm,
    warm,
)
from tests.helpers import SANDCHAT, TEST_PLUGINS, cli_env, gone, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    path.mkdir()
    zombies = our_zombies()
    yield path
    cleanup(path, zombies)


@pytest.fixture
def paced(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "paced_plugin.py").write_text(PACED)
    return folder


def test_the_second_command_finds_the_plugin_warm_and_the_third_reuses_it(home: Path) -> None:
    first = run(home, "prompt", "-p", "echo", "hello")
    assert (first.returncode, first.stdout) == (0, "echo: hello\n"), first.stderr
    started = wait_warm(home, "echo")  # started in the background with the first command's decision
    for words in ("again", "and again"):
        result = run(home, "prompt", "-p", "echo", words)
        assert (result.returncode, result.stdout, result.stderr) == (0, f"echo: {words}\n", "")
    counted = run(home, "tokens", "-p", "echo", "one two three")
    assert (counted.returncode, counted.stdout) == (0, "3\n")
    after = warm(home, "echo")
    assert after is not None and after["pid"] == started["pid"] and after["starts"] == 1
    assert after["calls"] >= started["calls"] + 4  # two streams, a count and how it counts


def test_a_changed_decision_restarts_the_plugin_and_the_same_one_reuses_it(home: Path, paced: Path) -> None:
    ask = ("prompt", "--plugins-dir", str(paced), "-p", "paced", "w")
    assert run(home, *ask).stdout == paced_answer("w")
    pids = [wait_warm(home, "paced")["pid"]]

    def answered_by(**env: str) -> int:
        result = run(home, *ask, **env)
        assert (result.returncode, result.stdout) == (0, paced_answer("w")), result.stderr
        entry = warm(home, "paced")
        assert entry is not None
        return int(entry["pid"])

    (paced / "paced_plugin.py").write_text(PACED + "# the file changed\n")
    pids.append(answered_by())
    granted = run(home, "plugins", "grant", "paced", "--env", "PACED_VAR", "--yes", "--plugins-dir", str(paced))
    assert granted.returncode == 0, granted.stderr
    pids.append(answered_by(PACED_VAR="one"))  # a grant and a key: the environment differs
    pids.append(answered_by(PACED_VAR="two"))  # another value of the key
    (home / "config.toml").write_text("[plugins.paced]\nmax_reply = 100000\n")
    pids.append(answered_by(PACED_VAR="two"))  # a setting
    assert len(set(pids)) == len(pids), pids
    (home / "config.toml").write_text("[plugins.paced]\nmax_reply = 100000\ntotal = 30\n")
    assert answered_by(PACED_VAR="two") == pids[-1]  # a deadline is per call: no restart
    assert answered_by(PACED_VAR="two", SANDCHAT_AGENT_IDLE="600") == pids[-1]


def test_two_clients_at_once_get_their_whole_answers_unmixed(home: Path, paced: Path) -> None:
    run(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "x")
    pid = wait_warm(home, "paced")["pid"]
    procs = {word: popen(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", word) for word in ("a", "b")}
    for word, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert (proc.returncode, out.decode(), err.decode()) == (0, paced_answer(word), "")
    entry = warm(home, "paced")
    assert entry is not None and entry["pid"] == pid


def test_an_agent_killed_mid_reply_is_one_line_and_the_next_command_works(home: Path) -> None:
    run(home, "prompt", "-p", "echo", "start the agent")
    agent = wait_warm(home, "echo") and status(home)
    assert agent is not None
    proc = popen(home, "prompt", "--plugins-dir", str(TEST_PLUGINS), "-p", "slow_stream", "go")
    assert first_bytes(proc).startswith(b"0 ")
    os.kill(agent["pid"], signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    lines = err.decode().splitlines()
    assert proc.returncode == 1
    assert lines[0].startswith("sandchat: plugin 'slow_stream' crashed: the sandchat agent running it ended mid-call"), lines
    assert lines[1:] == ["sandchat: the answer above is incomplete"]
    reap(agent["pid"])
    after = run(home, "prompt", "-p", "echo", "still here")  # a stale socket now: it runs the plugin itself
    assert (after.returncode, after.stdout) == (0, "echo: still here\n"), after.stderr


def test_ctrl_c_cancels_the_reply_in_the_agent_and_keeps_the_plugin_warm(home: Path) -> None:
    plugins = ("--plugins-dir", str(TEST_PLUGINS))
    run(home, "tokens", *plugins, "-p", "slow_stream", "x")
    pid = wait_warm(home, "slow_stream")["pid"]
    proc = popen(home, "prompt", *plugins, "-p", "slow_stream", "go")
    first_bytes(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and err.decode().splitlines()[-1] == "sandchat: interrupted"
    entry = wait_until(lambda: (e := warm(home, "slow_stream")) and e["state"] == "ready" and e, 20, "the cancel to end the call")
    assert entry["pid"] == pid


@pytest.mark.parametrize(
    ("plugin", "args"),
    [("raises", ()), ("slow_stream", ("--timeout", "1")), ("nosuch", ())],
    ids=["plugin-raised", "deadline", "unknown-plugin"],
)
def test_errors_and_deadlines_read_the_same_through_the_agent(home: Path, plugin: str, args: tuple[str, ...]) -> None:
    ask = ("prompt", "--plugins-dir", str(TEST_PLUGINS), *args, "-p", plugin, "hi")
    direct = run(home, *ask, SANDCHAT_AGENT_IDLE="0")
    run(home, "prompt", "-p", "echo", "start the agent")
    wait_warm(home, "echo")
    through = run(home, *ask)
    served = status(home)
    assert served is not None and (plugin in {p["name"] for p in served["plugins"]}) == (plugin != "nosuch")  # it ran in the agent
    assert (through.returncode, through.stderr) == (direct.returncode, direct.stderr)
    if plugin == "slow_stream":  # how many words came before the deadline is the machine's timing, either way
        for result in (direct, through):
            words = result.stdout.split()
            assert words and words == [str(i) for i in range(len(words))], result.stdout
    else:
        assert through.stdout == direct.stdout
    assert direct.returncode in (1, 2) and direct.stderr


def test_a_stale_socket_is_passed_over_and_replaced(home: Path) -> None:
    paths = ensure_private(AgentPaths(home / "agent"))
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(paths.socket))  # bound, never listening, then closed: what a killed agent leaves
    result = run(home, "prompt", "-p", "echo", "hi")
    assert (result.returncode, result.stdout, result.stderr) == (0, "echo: hi\n", "")
    wait_warm(home, "echo")  # a new agent took the lock, removed the stale file, and listens


class _FakeAgent:
    """Holds the lock and the socket like an agent, but says hello as another version, or never answers."""

    def __init__(self, home: Path, mode: str) -> None:
        self.paths = ensure_private(AgentPaths(home / "agent"))
        self.mode = mode
        self.frames: list[dict[str, object]] = []
        self._lock = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(str(self.paths.socket))
        self._listener.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with sock:
                sock.settimeout(5)
                try:
                    self.frames.append(wire.receive(sock))
                    if self.mode == "other-version":
                        wire.send(sock, {"type": "hello", "version": "0.0.1-other", "protocol": wire.PROTOCOL})
                        self.frames.append(wire.receive(sock))  # nothing more comes: the client falls back
                    else:
                        self.frames.append(wire.receive(sock))  # silent: the client gives up after 0.2 s
                except Exception as exc:  # noqa: BLE001 - recorded for the test
                    self.frames.append({"ended": type(exc).__name__})

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(10)
        os.unlink(self.paths.socket)
        os.close(self._lock)


@pytest.mark.parametrize("mode", ["other-version", "silent"])
def test_an_agent_of_another_version_or_one_that_hangs_is_passed_over(home: Path, mode: str) -> None:
    fake = _FakeAgent(home, mode)
    try:
        result = run(home, "prompt", "-p", "echo", "hi")
        counted = run(home, "tokens", "-p", "echo", "a b")
    finally:
        fake.close()
    assert (result.returncode, result.stdout, result.stderr) == (0, "echo: hi\n", "")
    assert (counted.returncode, counted.stdout) == (0, "2\n")
    hellos = [frame for frame in fake.frames if frame.get("type") == "hello"]
    # one hello per command, and one from each agent they started (the fake's lock held, it asks the
    # holder who it is, and, not answered as its own build, waits for the lock): never a request
    assert 2 <= len(hellos) <= 4 and not any("op" in frame for frame in fake.frames)


def test_the_agent_exits_when_idle_and_leaves_nothing(home: Path) -> None:
    run(home, "prompt", "-p", "echo", "hi", SANDCHAT_AGENT_IDLE="1")
    pid = wait_until(lambda: client(home).pid(), 30, "the agent to listen")
    reap(pid, 30)
    assert not (home / "agent" / "agent.sock").exists()


def test_agent_stop_ends_the_agent_and_its_plugins_and_twice_is_fine(home: Path) -> None:
    run(home, "prompt", "-p", "echo", "hi")
    plugin = wait_warm(home, "echo")["pid"]
    agent = client(home).pid()
    assert agent is not None
    stopped = run(home, "agent", "stop")
    assert (stopped.returncode, stopped.stderr) == (0, f"sandchat: stopped the agent (pid {agent})\n")
    reap(agent)
    wait_until(lambda: gone(plugin), 20, "the agent's plugin to end")
    assert not (home / "agent" / "agent.sock").exists()
    again = run(home, "agent", "stop")
    assert (again.returncode, again.stderr) == (0, "sandchat: no agent is running\n")
    shown = run(home, "agent", "status")
    assert shown.stdout.startswith("agent: not running")


def test_idle_zero_turns_the_agent_off(home: Path) -> None:
    result = run(home, "prompt", "-p", "echo", "hi", SANDCHAT_AGENT_IDLE="0")
    assert (result.returncode, result.stdout) == (0, "echo: hi\n")
    assert not (home / "agent").exists()


def test_a_bad_idle_value_is_a_usage_error(home: Path) -> None:
    result = run(home, "prompt", "-p", "echo", "hi", SANDCHAT_AGENT_IDLE="soon")
    assert result.returncode == 2 and "SANDCHAT_AGENT_IDLE" in result.stderr


def test_two_agents_started_at_once_leave_one_listening(home: Path) -> None:
    directory = ensure_private(AgentPaths(home / "agent")).directory
    argv = [*SANDCHAT, "agent", "serve", "--dir", str(directory), "--idle", "60"]
    starters = [subprocess.Popen(argv, env=cli_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        loser = next(iter(wait_until(lambda: [p for p in starters if p.poll() is not None], 30, "the second starter to give up")))
        assert loser.returncode == 0 and loser.stderr is not None and loser.stderr.read() == b""
        winner = next(p for p in starters if p is not loser)
        assert wait_until(lambda: status(home), 30, "the winner to answer")["pid"] == winner.pid
    finally:
        run(home, "agent", "stop")
        for proc in starters:
            proc.wait(timeout=30)
            if proc.stderr is not None:
                proc.stderr.close()


def test_a_prompt_the_agent_cannot_carry_runs_on_the_direct_handle(home: Path) -> None:
    run(home, "prompt", "-p", "echo", "start the agent")
    before = wait_warm(home, "echo")
    big = "word " * (9 * 2**20 // 5)  # 9 MiB: under a plugin's 16 MiB message, over the agent's 8 MiB frame
    result = subprocess.run([*SANDCHAT, "prompt", "-p", "echo"], input=big, capture_output=True, text=True,
                            env=cli_env(home, SANDCHAT_AGENT_IDLE="600"), timeout=50)  # fmt: skip
    assert result.returncode == 0 and result.stdout.startswith("echo: word word "), result.stderr
    entry = warm(home, "echo")
    # one call through the agent (the start, for the context window), the 9 MiB stream not: it ran on the direct handle
    assert entry is not None and (entry["pid"], entry["calls"]) == (before["pid"], before["calls"] + 1)


def test_bytes_that_are_not_utf8_are_one_line_through_the_agent_and_without_it(home: Path) -> None:
    run(home, "prompt", "-p", "echo", "start the agent")
    wait_warm(home, "echo")
    # Bytes that are not UTF-8 on standard input reach the prompt as lone surrogates: said before anything is sent.
    for idle in ("600", "0"):
        result = subprocess.run([*SANDCHAT, "prompt", "-p", "echo"], input=b"caf\xe9", capture_output=True,
                                env=cli_env(home, SANDCHAT_AGENT_IDLE=idle), timeout=50)  # fmt: skip
        assert (result.returncode, result.stdout) == (2, b""), result.stderr
        assert (
            result.stderr == b"sandchat: standard input is not UTF-8 text (byte 0xe9 at character 3); "
            b"convert it first, e.g. iconv -f LATIN1 -t UTF-8 FILE | sandchat prompt ...\n"
        )


def test_a_connection_from_another_uid_is_refused_by_the_agent_itself(tmp_path: Path) -> None:
    """The second wall: even with the directory opened up by hand, another uid gets no hello."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a client as user nobody")
    base = Path(tempfile.mkdtemp(prefix="sandchat-agent-", dir="/tmp"))  # pytest's tmp is 0700 root
    home, zombies = base / "home", our_zombies()
    try:
        directory = ensure_private(AgentPaths(base / "agent")).directory
        with open(directory / "agent.log", "ab") as log:  # the agent's own lines, as spawn_detached would put them
            agent = subprocess.Popen([*SANDCHAT, "agent", "serve", "--dir", str(directory), "--idle", "60"], env=cli_env(home),
                                     stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        reach = AgentClient(AgentPaths(directory), build())
        wait_until(lambda: reach.ask({"op": "status"}), 30, "the agent to answer")
        os.chmod(base, 0o755)
        os.chmod(directory, 0o711)  # what the agent never does: only so nobody can reach the socket at all
        os.chmod(directory / "agent.sock", 0o777)
        # Whether the agent's close reaches the client as EOF, a reset or a broken pipe depends on timing: all are "no word".
        probe = (f"import socket, struct\ns = socket.socket(socket.AF_UNIX)\ns.connect({str(directory / 'agent.sock')!r})\n"
                 "b = b'{\"type\":\"hello\",\"version\":\"x\",\"protocol\":1}'\ntry:\n"
                 "    s.sendall(struct.pack('>I', len(b)) + b)\n    print(repr(s.recv(100)))\n"
                 "except (ConnectionResetError, BrokenPipeError):\n    print(repr(b''))")  # fmt: skip
        nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-I", "-S", "-c", probe],
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert nobody.stdout.strip() == "b''", nobody.stderr  # closed without a word
        assert "agent: refused a connection: the peer runs as uid 65534, not as this user (uid 0)" in (directory / "agent.log").read_text()
        os.chmod(directory, 0o700)
        reach.ask({"op": "stop"})
        agent.wait(timeout=30)
    finally:
        cleanup(home, zombies)
        shutil.rmtree(base, ignore_errors=True)


def test_plugins_health_reports_the_warm_process_with_its_calls_across_commands(home: Path) -> None:
    import json

    assert run(home, "prompt", "-p", "echo", "hello").returncode == 0
    started = wait_warm(home, "echo")
    first = run(home, "plugins", "health", "echo", "--json")
    assert first.returncode == 0, first.stderr
    [report] = json.loads(first.stdout)
    assert (report["pid"], report["state"], report["ready"], report["restarts"]) == (started["pid"], "ready", True, 0)
    assert report["profile"] == "untrusted" and report["path"].endswith("echo_plugin.py")
    second = json.loads(run(home, "plugins", "health", "echo", "--json").stdout)[0]
    assert second["pid"] == started["pid"]
    assert second["calls"] > report["calls"] and second["uptime_s"] > report["uptime_s"]  # counted since the process started
    off = json.loads(run(home, "plugins", "health", "echo", "--json", SANDCHAT_AGENT_IDLE="0").stdout)[0]
    assert off["pid"] != started["pid"] and off["ready"]  # without the agent: a process of its own, as before


def _short_deadlines(home: Path, **deadlines: float) -> None:
    """Deadlines for slow_stream in the home's settings file: each command's decision carries them."""
    lines = "".join(f"{key} = {value}\n" for key, value in deadlines.items())
    (home / "config.toml").write_text(f"[plugins.slow_stream]\n{lines}")


def test_an_agent_that_hangs_mid_reply_costs_the_idle_deadline_not_the_whole_reply(home: Path) -> None:
    _short_deadlines(home, idle=1, cancel_grace=1, stop_grace=1)  # silence allowed after a chunk: 1 + 1 + 2 + 5 s
    plugins = ("--plugins-dir", str(TEST_PLUGINS))
    run(home, "tokens", *plugins, "-p", "slow_stream", "x")
    wait_warm(home, "slow_stream")
    agent = status(home)
    assert agent is not None
    proc = popen(home, "prompt", *plugins, "-p", "slow_stream", "go")
    assert first_bytes(proc).startswith(b"0 ")
    os.kill(agent["pid"], signal.SIGSTOP)  # hung: the socket stays open, nothing more comes
    try:
        _, err = proc.communicate(timeout=40)  # the whole reply's deadline is 600 s
    finally:
        os.kill(agent["pid"], signal.SIGCONT)
    lines = err.decode().splitlines()
    assert proc.returncode == 1
    assert lines[0] == "sandchat: plugin 'slow_stream' timed out: the sandchat agent running it stopped answering", lines


def test_a_call_queued_longer_than_its_silence_bound_is_still_served(home: Path) -> None:
    # before its first frame a client allows start + first chunk + cancel + 2 stops + 5 s = 11 s of silence
    _short_deadlines(home, start=2, first_chunk=1, cancel_grace=1, stop_grace=1)
    plugins = ("--plugins-dir", str(TEST_PLUGINS))
    run(home, "tokens", *plugins, "-p", "slow_stream", "x")
    wait_warm(home, "slow_stream")
    first = popen(home, "prompt", *plugins, "--timeout", "13", "-p", "slow_stream", "first")
    assert first_bytes(first).startswith(b"0 ")
    second = popen(home, "prompt", *plugins, "-p", "slow_stream", "queued")  # a stream waits for the slot up to its total deadline
    assert first_bytes(second, 60).startswith(b"0 ")  # ~13 s later, once the first hit its --timeout
    first.communicate(timeout=30)
    assert first.returncode == 1  # its own --timeout
    second.send_signal(signal.SIGINT)
    _, err = second.communicate(timeout=30)
    assert second.returncode == 130 and err.decode().splitlines()[-1] == "sandchat: interrupted", err
