"""The agent's socket directory and wire format: private paths, bounded frames, the hello."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

from app.agent import paths, wire
from app.agent.errors import AgentError, UnsafeDirectory, VersionMismatch, WireError

pytestmark = pytest.mark.timeout(30)


def test_the_socket_goes_under_a_private_runtime_dir(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    chosen = paths.ensure_private(paths.choose(str(runtime), tmp_path / "data"))
    assert chosen.socket == runtime / "sandchat" / "agent.sock"
    assert (os.stat(chosen.directory).st_mode & 0o777) == 0o700


@pytest.mark.parametrize("runtime", [None, "", "missing", "open"])
def test_without_a_usable_runtime_dir_the_data_dir_is_used(tmp_path: Path, runtime: str | None) -> None:
    given = runtime
    if runtime in ("missing", "open"):
        given = str(tmp_path / runtime)
    if runtime == "open":
        (tmp_path / "open").mkdir(mode=0o755)
        os.chmod(tmp_path / "open", 0o755)  # the umask may have narrowed it
    chosen = paths.ensure_private(paths.choose(given, tmp_path / "data"))
    assert chosen.directory == tmp_path / "data" / "agent"
    assert (os.stat(chosen.directory).st_mode & 0o777) == 0o700


def test_a_directory_open_to_others_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "agent"
    directory.mkdir()
    os.chmod(directory, 0o750)
    with pytest.raises(UnsafeDirectory, match="open to group or others"):
        paths.ensure_private(paths.AgentPaths(directory))


def test_a_symlink_in_place_of_the_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "agent").symlink_to(real)
    with pytest.raises(UnsafeDirectory, match="not a directory"):
        paths.ensure_private(paths.AgentPaths(tmp_path / "agent"))


def test_a_relative_directory_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="absolute"):
        paths.AgentPaths(Path("agent"))


def test_a_frame_round_trips_over_a_real_socket() -> None:
    left, right = socket.socketpair()
    with left, right:
        document = {"type": "chunk", "text": "héllo \x1b[31m", "n": [1, 2]}
        wire.send(left, document)
        assert wire.receive(right) == document


def test_a_frame_announcing_more_than_the_bound_is_refused_before_it_is_read() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(struct.pack(">I", wire.MAX_FRAME + 1))
        with pytest.raises(WireError, match="exceeds"):
            wire.receive(right)


@pytest.mark.parametrize(("body", "problem"), [(b"[1]", "not an object"), (b"\xff", "not JSON"), (b"{", "not JSON")])
def test_a_frame_that_is_not_a_json_object_is_refused(body: bytes, problem: str) -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(struct.pack(">I", len(body)) + body)
        with pytest.raises(WireError, match=problem):
            wire.receive(right)


def test_a_peer_closing_mid_frame_is_a_wire_error() -> None:
    left, right = socket.socketpair()
    with right:
        left.sendall(struct.pack(">I", 10) + b"{}")
        left.close()
        with pytest.raises(WireError, match="mid-frame"):
            wire.receive(right)


def test_a_silent_peer_costs_only_the_socket_timeout() -> None:
    left, right = socket.socketpair()
    with left, right:
        right.settimeout(0.05)
        with pytest.raises(WireError, match="cannot receive"):
            wire.receive(right)


def test_the_hello_matches_only_the_same_version_and_protocol() -> None:
    wire.check_hello(wire.hello("0.1.0"), "0.1.0")
    with pytest.raises(VersionMismatch, match="0.0.9"):
        wire.check_hello(wire.hello("0.0.9"), "0.1.0")
    with pytest.raises(VersionMismatch, match="protocol"):
        wire.check_hello({**wire.hello("0.1.0"), "protocol": wire.PROTOCOL + 1}, "0.1.0")
    with pytest.raises(VersionMismatch, match="expected a hello"):
        wire.check_hello({"type": "chunk"}, "0.1.0")


def test_every_agent_error_has_one_root() -> None:
    assert all(issubclass(kind, AgentError) for kind in (UnsafeDirectory, WireError, VersionMismatch))


def test_text_that_is_not_utf8_is_a_wire_error_not_a_crash() -> None:
    with pytest.raises(WireError, match="not UTF-8"):
        wire.encode({"text": "bad \udcff byte"})
