"""The agent's forker with real processes: a warm prompt runs in a forked worker, exactly as it would run itself.

Each test starts an agent in its own home (``tests.agentkit``); the forker beside it is
found through ``agent status``. A command served by a worker is seen as a process whose
parent is the forker, while it runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agentkit import PACED, cleanup, first_bytes, our_zombies, paced_answer, popen, run, status, wait_warm
from tests.helpers import SANDCHAT, cli_env, gone, parent_of, processes, wait_until

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


def forker_pid(home: Path) -> int:
    """The ready forker's pid, once the agent reports one (it loads its modules first)."""
    found = wait_until(lambda: (s := status(home)) and (s.get("forker") or {}).get("ready") and s, 40, "the forker to listen")
    return int(found["forker"]["pid"])


def workers(forker: int) -> list[int]:
    """The forker's live children (a refused one exits at once: a zombie until the forker reaps it)."""
    return [pid for pid, fields, _ in processes() if fields[0] != b"Z" and parent_of(pid) == forker]


def warmed(home: Path, *args: str) -> int:
    """Run ``args`` once (which starts the agent), wait until that plugin is warm and the forker listens."""
    first = run(home, *args)
    assert first.returncode == 0, first.stderr
    wait_warm(home, args[args.index("-p") + 1])
    return forker_pid(home)


def test_a_warm_prompt_runs_in_a_worker_of_the_forker(home: Path, paced: Path) -> None:
    forker = warmed(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "w")
    proc = popen(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "x")
    assert first_bytes(proc).startswith(b"x0 ")
    assert len(workers(forker)) == 1  # the command is running in the forker's child, not in the process we started
    _, err = proc.communicate(timeout=40)
    assert (proc.returncode, err) == (0, b"")
    wait_until(lambda: not workers(forker), 20, "the worker to end")


def test_output_and_exit_status_are_those_of_the_command_run_itself(home: Path, tmp_path: Path) -> None:
    warmed(home, "prompt", "-p", "echo", "w")
    cases = [
        (("prompt", "-p", "echo", "two words"), None),
        (("tokens", "-p", "echo", "one two three"), None),
        (("tokens", "-p", "echo"), "piped in\nand more\n"),
        (("prompt", "-p", "echo", "after"), "notes\n"),
        (("prompt", "-p", "nosuch", "hi"), None),
        (("prompt", "-p", "echo"), None),
        (("prompt", "--help"), None),
        (("prompt", "--temperature", "hot", "x"), None),
    ]
    for args, stdin in cases:
        through = run(home, *args, stdin=stdin)
        direct = run(home, *args, stdin=stdin, SANDCHAT_AGENT_IDLE="0")
        assert (through.returncode, through.stdout, through.stderr) == (direct.returncode, direct.stdout, direct.stderr), args


def test_a_warm_prompt_into_a_pipe_whose_reader_left_ends_quietly_with_141_as_it_would_alone(home: Path, paced: Path) -> None:
    forker = warmed(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "w")
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([*SANDCHAT, "prompt", "--plugins-dir", str(paced), "-p", "paced", "x"], stdin=subprocess.DEVNULL,
                                stdout=write, stderr=subprocess.PIPE, env=cli_env(home, SANDCHAT_AGENT_IDLE="600"), timeout=60)  # fmt: skip
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, b"")
    assert "a command ran itself" not in (home / "agent" / "agent.log").read_text()  # the worker ran it
    wait_until(lambda: not workers(forker), 20, "the worker to end")


def test_the_worker_takes_the_clients_working_directory_and_environment(home: Path, paced: Path, tmp_path: Path) -> None:
    warmed(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "w")
    here = tmp_path  # holds plugins/: a relative --plugins-dir only resolves from the client's directory
    result = subprocess.run([*SANDCHAT, "prompt", "--plugins-dir", "plugins", "-p", "paced", "r"], cwd=here,
                            env=cli_env(home, SANDCHAT_AGENT_IDLE="600"), stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert (result.returncode, result.stdout) == (0, paced_answer("r")), result.stderr
    chosen = run(home, "prompt", "x", SANDCHAT_DEFAULT_PLUGIN="echo")  # the worker reads the client's environment, not the forker's
    assert (chosen.returncode, chosen.stdout) == (0, "echo: x\n"), chosen.stderr
    run(home, "prompt", "x", SANDCHAT_DEFAULT_PLUGIN="nosuch")  # says once where the default comes from
    alone = run(home, "prompt", "x", SANDCHAT_DEFAULT_PLUGIN="nosuch", SANDCHAT_AGENT_IDLE="0")
    missing = run(home, "prompt", "x", SANDCHAT_DEFAULT_PLUGIN="nosuch")
    assert (missing.returncode, missing.stdout, missing.stderr) == (alone.returncode, alone.stdout, alone.stderr) != (0, "", "")


def test_ctrl_c_reaches_the_worker_and_ends_the_command_as_it_would_alone(home: Path, paced: Path) -> None:
    forker = warmed(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "w")
    proc = popen(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "c")
    first_bytes(proc)
    (worker,) = workers(forker)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=40)
    assert proc.returncode == 130 and b"interrupted" in err, err
    wait_until(lambda: gone(worker), 20, "the worker to end")
    again = run(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "n")
    assert (again.returncode, again.stdout) == (0, paced_answer("n"))


def test_a_client_killed_mid_reply_ends_its_worker_and_the_next_command_works(home: Path, paced: Path) -> None:
    forker = warmed(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "w")
    proc = popen(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "k")
    first_bytes(proc)
    (worker,) = workers(forker)
    proc.kill()
    proc.wait(timeout=20)
    wait_until(lambda: gone(worker), 20, "the orphaned worker to end (its client's end is a hang-up)")
    again = run(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "n")
    assert (again.returncode, again.stdout) == (0, paced_answer("n"))


@pytest.mark.parametrize("env", [{"PYTHONDONTWRITEBYTECODE": "1"}, {"PYTHONPATH": "/nonexistent"}, {"LC_ALL": "C"}])
def test_a_client_of_another_interpreter_setup_runs_the_command_itself(home: Path, paced: Path, env: dict[str, str]) -> None:
    forker = warmed(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "w")
    proc = popen(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "e", **env)
    first_bytes(proc)
    assert workers(forker) == []  # refused: flags, module path or locale differ, so the worker would not run the same code
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0 and out, err


def test_agent_stop_ends_the_forker_and_leaves_a_running_worker_to_finish(home: Path, paced: Path) -> None:
    forker = warmed(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "w")
    proc = popen(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "s")
    first_bytes(proc)
    assert run(home, "agent", "stop").returncode == 0
    wait_until(lambda: gone(forker), 20, "the forker to end with its agent")
    proc.communicate(timeout=40)
    assert proc.returncode in (0, 1)  # its reply is cut when the agent leaves (as before the forker), never hung
    assert not (home / "agent" / "forker.sock").exists()
    assert os.path.exists(home / "agent")


def test_a_connection_from_another_uid_is_refused_by_the_forker_itself() -> None:
    """The second wall, as for the agent: with the directory opened up by hand, nobody's connection is closed unanswered."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a client as user nobody")
    base = Path(tempfile.mkdtemp(prefix="sandchat-forker-", dir="/tmp"))  # pytest's tmp is 0700 root
    home, zombies = base / "home", our_zombies()
    home.mkdir()
    directory = home / "agent"
    try:
        forker = warmed(home, "prompt", "-p", "echo", "w")
        for path in (base, home):
            os.chmod(path, 0o755)
        os.chmod(directory, 0o711)  # what sandchat never does: only so nobody can reach the socket at all
        os.chmod(directory / "forker.sock", 0o777)
        probe = (f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({str(directory / 'forker.sock')!r})\n"
                 "s.settimeout(10)\ntry:\n    print(repr(s.recv(100)))\nexcept ConnectionResetError:\n    print(repr(b''))")  # fmt: skip
        nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-I", "-S", "-c", probe],
                                capture_output=True, text=True, timeout=30)  # fmt: skip
        assert nobody.stdout.strip() == "b''", nobody.stderr  # closed without a word, no worker forked for it
        refused = "forker: refused a connection: the peer runs as uid 65534, not as this user (uid 0)"
        wait_until(lambda: refused in (directory / "agent.log").read_text(), 20, "the log line")
        assert workers(forker) == []
        os.chmod(directory, 0o700)
        again = run(home, "prompt", "-p", "echo", "still")
        assert (again.returncode, again.stdout) == (0, "echo: still\n")
    finally:
        if directory.exists():
            os.chmod(directory, 0o700)
        cleanup(home, zombies)
        shutil.rmtree(base, ignore_errors=True)
