"""Attacks on the agent's forker by a client that speaks its socket by hand: each must fail, and the forker go on.

The forker (``app.agent.forker``) forks a worker for every connection of this user; the
worker reads one request and the three descriptors sent with it. Here a hostile client
sends what the real one (``app.agent.handoff``) never would: no descriptors or too many,
lengths, bodies and nesting no parser should follow, a request that names another command,
a byte a second, a flood of silent connections, signal frames for signals it must not relay.
After each attack the next real command is still served by a worker of the same forker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.agent import wire
from tests.agentkit import ON, PACED, cleanup, first_bytes, our_zombies, paced_answer, popen, run, status, wait_warm
from tests.helpers import SANDCHAT, cli_env, parent_of, processes, wait_until

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[1]
MAX_WORKERS = 32  # app.agent.forker.MAX_WORKERS: restated, so a change to it is seen here


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


def warmed(home: Path, paced: Path) -> int:
    """An agent with ``paced`` warm and its forker listening: the forker's pid."""
    first = run(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "w")
    assert first.returncode == 0, first.stderr
    wait_warm(home, "paced")
    found = wait_until(lambda: (s := status(home)) and (s.get("forker") or {}).get("ready") and s, 40, "the forker to listen")
    return int(found["forker"]["pid"])


def workers(forker: int) -> list[int]:
    return [pid for pid, fields, _ in processes() if fields[0] != b"Z" and parent_of(pid) == forker]


def still_served(home: Path, paced: Path, forker: int) -> None:
    """The forker survived: a real command runs in one of its workers and answers in full."""
    proc = popen(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "ok")
    assert first_bytes(proc).startswith(b"ok0 ")
    assert len(workers(forker)) == 1
    out, err = proc.communicate(timeout=40)
    assert (proc.returncode, b"ok0 " + out, err) == (0, paced_answer("ok").encode(), b"")
    assert "Traceback" not in (home / "agent" / "agent.log").read_text()


def connect(home: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.fspath(home / "agent" / "forker.sock"))  # blocking: a full backlog waits, as a flood would
    sock.settimeout(20)
    return sock


def attack(home: Path, data: bytes, fds: list[int] | None = None, hold: bool = False) -> bytes:
    """Send ``data`` with ``fds`` attached (default: three of /dev/null); all the forker's side said until it closed."""
    nulls = [os.open(os.devnull, os.O_RDWR) for _ in range(3)] if fds is None else []
    try:
        with connect(home) as sock:
            sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds or nulls)}i", *(fds or nulls)))])
            if not hold:
                sock.shutdown(socket.SHUT_WR)
            return read_all(sock)
    finally:
        for fd in nulls:
            os.close(fd)


def read_all(sock: socket.socket) -> bytes:
    said = b""
    while part := sock.recv(1 << 16):
        said += part
    return said


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def request(home: Path, words: list[str], **changes: Any) -> dict[str, Any]:
    """The request the real client would send for ``sandchat ARGV`` (its identity computed by the same interpreter)."""
    env = cli_env(home, **ON)
    probe = "import json; from app.agent.handoff import identity; print(json.dumps(identity()))"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=REPO, timeout=30, check=True)
    base = {"type": "run", "identity": json.loads(found.stdout), "argv0": str(REPO / "app" / "__main__.py"), "argv": words,
            "env": env, "cwd": str(REPO), "umask": 0o022, "streams": [["utf-8", "strict", False, False]] * 3}  # fmt: skip
    return {**base, **changes}


def test_requests_no_parser_should_follow_are_closed_unanswered(home: Path, paced: Path) -> None:
    forker = warmed(home, paced)
    null = os.open(os.devnull, os.O_RDWR)
    try:
        attacks = {
            "no descriptors": (frame(b'{"type":"run"}'), []),
            "two descriptors": (frame(b'{"type":"run"}'), [null, null]),
            "four descriptors": (frame(b'{"type":"run"}'), [null] * 4),
            "253 descriptors": (frame(b'{"type":"run"}'), [null] * 253),
            "a length of 4 GiB": (struct.pack(">I", 0xFFFFFFFF) + b"{}", None),
            "a length just past the bound": (struct.pack(">I", 4 * 1024 * 1024 + 1) + b"{}", None),
            "three bytes": (b"\x00\x00\x00", None),
            "not UTF-8": (frame(b"\xff\xfe{}"), None),
            "not JSON": (frame(b"run prompt"), None),
            "a JSON list": (frame(b'["run"]'), None),
            "nesting 200,000 deep": (frame(b"[" * 200_000 + b"]" * 200_000), None),
            "a number of 5,000 digits": (frame(b'{"type": ' + b"9" * 5000 + b"}"), None),
            "a body cut short": (struct.pack(">I", 100) + b'{"type"', None),
        }
        for name, (data, fds) in attacks.items():
            assert attack(home, data, fds) == b"", name
    finally:
        os.close(null)
    assert status(home) is not None  # the agent, too, is untouched
    still_served(home, paced, forker)


def test_a_request_for_another_command_is_refused_and_runs_nothing(home: Path, paced: Path, tmp_path: Path) -> None:
    """The entry point hands over ``prompt`` and ``tokens`` only: a worker runs nothing else, even for this user."""
    forker = warmed(home, paced)
    marker = tmp_path / "ran"
    for argv in (["agent", "stop"], ["plugins", "list"], ["--plugins-dir", str(paced)], [], ["chat", "-p", "paced"]):
        said = attack(home, wire.encode(request(home, argv, cwd=str(REPO))))
        assert said.startswith(struct.pack(">I", len(said) - 4)), argv
        reply = wire.decode(said[4:])
        assert reply["type"] == "refused" and "not a command the forker runs" in reply["why"], (argv, reply)
    shapes = {"argv": [1, 2], "env": {"A=B": "c"}, "umask": 0o7777, "streams": [["no-such-codec", "strict", False, False]] * 3,
              "cwd": str(marker), "type": "exec"}  # fmt: skip
    for key, value in shapes.items():
        reply = wire.decode(attack(home, wire.encode(request(home, ["prompt", "-p", "paced", "x"], **{key: value})))[4:])
        assert reply["type"] == "refused", (key, reply)
    assert status(home) is not None  # "agent stop" did not run
    assert not marker.exists()
    still_served(home, paced, forker)


def test_a_client_that_drips_its_request_holds_a_worker_for_the_bound_not_forever(home: Path, paced: Path) -> None:
    forker = warmed(home, paced)
    closed = threading.Event()
    null = os.open(os.devnull, os.O_RDWR)
    with connect(home) as sock:
        sock.sendmsg([struct.pack(">I", 1000) + b"{"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("3i", null, null, null))])
        os.close(null)

        def drip() -> None:  # a byte every 0.3 s for 60 s, unless the worker hangs up first
            for _ in range(200):
                try:
                    sock.send(b" ")
                except OSError:
                    break
                if closed.wait(0.3):
                    break

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        assert read_all(sock) == b""  # the worker hung up on us while we were still sending
        closed.set()
        dripper.join(10)
    wait_until(lambda: not workers(forker), 20, "the dripping client's worker to end")
    still_served(home, paced, forker)


def test_a_flood_of_silent_connections_costs_a_bounded_number_of_workers_and_no_command(home: Path, paced: Path) -> None:
    """Each silent connection holds a worker for the request's bound; past ``MAX_WORKERS`` they are closed at once."""
    forker = warmed(home, paced)
    seen: list[int] = []
    flooding = threading.Event()
    flooding.set()

    def count() -> None:
        while flooding.is_set():
            seen.append(len(workers(forker)))

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    flood: list[socket.socket] = []
    try:
        for _ in range(MAX_WORKERS + 20):
            flood.append(connect(home))
        during = run(home, "prompt", "--plugins-dir", str(paced), "-p", "paced", "during")  # served, or run by itself: never lost
        assert (during.returncode, during.stdout, during.stderr) == (0, paced_answer("during"), "")
        wait_until(lambda: not workers(forker), 30, "the flood's workers to end")
    finally:
        flooding.clear()
        counter.join(10)
        for sock in flood:
            sock.close()
    assert 1 <= max(seen) <= MAX_WORKERS, seen
    still_served(home, paced, forker)


def test_signal_frames_raise_only_the_signals_a_client_relays(home: Path, paced: Path) -> None:
    """SIGKILL, SIGSTOP, a boolean, a float: ignored. SIGINT: the command ends as Ctrl-C ends it, 130."""
    warmed(home, paced)
    for signums, code in (([signal.SIGKILL, signal.SIGSTOP, True, 2.0, -1, 10**30, "2"], 0), ([signal.SIGINT], 130)):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        data = wire.encode(request(home, ["prompt", "--plugins-dir", str(paced), "-p", "paced", "s"]))
        with connect(home) as sock:
            sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("3i", null, out_w, err_w))])
            for fd in (null, out_w, err_w):
                os.close(fd)
            assert wire.receive(sock)["type"] == "running"
            first = os.read(out_r, 4096)
            assert first.startswith(b"s0")  # the reply has begun: the signals land mid-call
            for signum in signums:
                sock.sendall(wire.encode({"type": "signal", "signum": signum}))
            exit_frame = wire.receive(sock)
        with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
            printed, errors = first + out.read(), err.read()
        assert exit_frame == {"type": "exit", "code": code}, errors
        if code == 0:
            assert (printed, errors) == (paced_answer("s").encode(), b"")  # the reply went on, whole
        else:
            assert not printed.endswith(b"s29 \n")  # cut, as Ctrl-C cuts it
    assert status(home) is not None


def test_a_client_in_a_network_namespace_of_its_own_is_not_run_from_the_forkers(home: Path, paced: Path) -> None:
    """``unshare -n sandchat prompt``: the same uid, less reach. Its command runs itself, in its namespace, not in a worker."""
    if os.getuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a network namespace")
    warmed(home, paced)
    result = subprocess.run(["unshare", "-n", *SANDCHAT, "prompt", "--plugins-dir", str(paced), "-p", "paced", "n"], cwd=REPO,
                            env=cli_env(home, **ON), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, paced_answer("n"), "")
    log = (home / "agent" / "agent.log").read_text()
    assert "forker: refused a connection: the peer is confined otherwise than this process (net namespace)" in log
    assert "agent: refused a connection: the peer is confined otherwise than this process (net namespace)" in log
    # The command it ran itself started an agent in its namespace (as any cold command does): that one
    # leaves at once, rather than wait for the lock and take over from an agent that will never leave for it.
    serving = f"agent serve --dir {home / 'agent'}"
    wait_until(
        lambda: sum(serving in cmd for _, _, cmd in processes()) == 1, 10, "the confined command's agent to leave"
    )  # under the 15 s it would wait
    assert status(home) is not None


def test_a_worker_takes_on_the_clients_resource_limits_and_niceness(home: Path, paced: Path) -> None:
    forker = warmed(home, paced)
    argv = ["prlimit", "--nofile=64:64", "--", "nice", "-n", "7", *SANDCHAT, "prompt", "--plugins-dir", str(paced), "-p", "paced", "l"]
    proc = subprocess.Popen(
        argv, cwd=REPO, env=cli_env(home, **ON), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert first_bytes(proc).startswith(b"l0 ")
        (worker,) = workers(forker)
        limits = Path(f"/proc/{worker}/limits").read_text()
        assert [line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files")] == [["64", "64"]]
        assert int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[16]) == 7  # field 19: nice
    finally:
        out, err = proc.communicate(timeout=40)
    assert (proc.returncode, err) == (0, b"")


def test_an_environment_no_process_could_have_is_refused_before_running(home: Path, paced: Path) -> None:
    warmed(home, paced)
    for env in ({"A": "b\0c"}, {f"V{i}": "x" for i in range(10_001)}):
        reply = wire.decode(attack(home, wire.encode(request(home, ["prompt", "-p", "paced", "x"], env=env)))[4:])
        assert reply["type"] == "refused" and "NUL" in reply["why"], reply
    for codec in ("rot13", "base64"):
        reply = wire.decode(
            attack(home, wire.encode(request(home, ["prompt", "-p", "paced", "x"], streams=[[codec, "strict", False, False]] * 3)))[4:]
        )
        assert reply == {"type": "refused", "why": "bad stream settings"}
    folder = os.open(REPO, os.O_RDONLY | os.O_DIRECTORY)
    try:
        said = attack(home, wire.encode(request(home, ["prompt", "-p", "paced", "x"])), [folder, folder, folder])
    finally:
        os.close(folder)
    assert wire.decode(said[4:]) == {"type": "refused", "why": "a standard stream is a directory"}
