"""The agent's two walls and its reuse rule: the peer's uid, and the launch decision's digest."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import runner
from app.agent import decision
from app.agent.peer import ForeignPeer, peer_uid, require_same_user

pytestmark = pytest.mark.timeout(30)

NOBODY = 65534


def _config(tmp_path: Path, **changes: object) -> runner.PluginConfig:
    base = runner.PluginConfig(
        name="claude",
        path=tmp_path / "claude_plugin.py",
        scratch_dir=tmp_path / "scratch",
        env={"PATH": "/usr/bin", "ANTHROPIC_API_KEY": "sk-one"},
        sandbox=runner.SandboxPolicy(profile="network", endpoints=("api.anthropic.com:443",)),
        source=b"class Plugin: ...\n",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_the_same_decision_has_the_same_digest(tmp_path: Path) -> None:
    assert decision.digest(_config(tmp_path)) == decision.digest(_config(tmp_path))


@pytest.mark.parametrize(
    "change",
    [
        {"source": b"class Plugin: pass  # changed\n"},  # a changed plugin file
        {"sandbox": runner.SandboxPolicy(profile="untrusted")},  # a revoked grant
        {"sandbox": runner.SandboxPolicy(profile="network", endpoints=("api.anthropic.com:443", "example.com:443"))},
        {"env": {"PATH": "/usr/bin", "ANTHROPIC_API_KEY": "sk-two"}},  # a new key
        {"env": {"PATH": "/usr/bin"}},  # a removed key
        {"max_reply": 10},  # a setting
        {"sandbox": runner.SandboxPolicy(profile="network", endpoints=("api.anthropic.com:443",), allow_unsandboxed=True)},
    ],
    ids=["file-bytes", "grant-revoked", "grant-widened", "new-key", "key-removed", "setting", "sandbox-profile"],
)
def test_every_kind_of_change_changes_the_digest(tmp_path: Path, change: dict[str, object]) -> None:
    assert decision.digest(_config(tmp_path, **change)) != decision.digest(_config(tmp_path))


def test_the_deadlines_are_per_call_and_do_not_change_it(tmp_path: Path) -> None:
    quick = _config(tmp_path, deadlines=runner.Deadlines(total=5.0))
    assert decision.digest(quick) == decision.digest(_config(tmp_path))


def test_the_canonical_form_holds_a_hash_of_the_source_not_the_source(tmp_path: Path) -> None:
    form = decision.canonical(_config(tmp_path))
    assert set(form["source"]) == {"sha256"}
    assert "deadlines" not in form


def test_a_same_user_peer_is_accepted() -> None:
    left, right = socket.socketpair()
    with left, right:
        assert peer_uid(right) == os.getuid()
        require_same_user(right)


def test_another_uid_is_refused() -> None:
    if os.getuid() != 0:
        pytest.skip("not root: cannot run a client as user nobody")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    base = Path(tempfile.mkdtemp(prefix="sandchat-peer-", dir="/tmp"))  # pytest's tmp is 0700 root
    try:
        os.chmod(base, 0o755)  # only so nobody can reach this socket: the agent's own directory is 0700
        path = base / "agent.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
            server.bind(str(path))
            os.chmod(path, 0o777)
            server.listen(1)
            server.settimeout(10)
            probe = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(path)!r}); s.recv(1)"
            client = subprocess.Popen(
                ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-I", "-S", "-c", probe]
            )
            try:
                connection, _ = server.accept()
                with connection:
                    assert peer_uid(connection) == NOBODY
                    with pytest.raises(ForeignPeer, match=f"uid {NOBODY}"):
                        require_same_user(connection)
            finally:
                client.wait(timeout=10)  # the connection closed above ends its recv
    finally:
        shutil.rmtree(base)


def test_a_whole_config_crosses_json_and_comes_back_equal(tmp_path: Path) -> None:
    import json

    proxies = runner.proxies_from({"https_proxy": "http://user:pw@proxy.example:8080", "no_proxy": "internal.example"})
    config = _config(
        tmp_path,
        sandbox=runner.SandboxPolicy(profile="network", endpoints=("*.anthropic.com:443",), proxies=proxies),
        deadlines=runner.Deadlines(total=7.5),
        log_path=tmp_path / "log",
        source=b"\x00\xff binary\n",
        env={"__type__": "not a tag", "__map__": "nor this"},
    )
    back = decision.from_plain(json.loads(json.dumps(decision.to_plain(config))))
    assert back == config
    assert decision.digest(back) == decision.digest(config)
    assert back.deadlines.total == 7.5


@pytest.mark.parametrize(
    "data",
    [{"__type__": "Popen", "args": ["sh"]}, {"__type__": "Deadlines"}, [1], {"__type__": "PluginConfig", "name": "x"}],
    ids=["foreign-class", "not-a-config", "not-an-object", "missing-fields"],
)
def test_from_plain_builds_nothing_but_a_launch_decision(data: object) -> None:
    with pytest.raises(ValueError):
        decision.from_plain(data)


def test_errors_cross_as_data_and_come_back_as_the_same_class() -> None:
    import json

    from app.agent.errordata import error_data, error_from

    sent = [
        runner.PluginTimeout("echo", "timed out after 5s (the total deadline)", phase="total", seconds=5.0),
        runner.PluginRaised("echo", "raised ValueError: no", remote_type="ValueError", remote_traceback="Traceback ...", refused="a:1"),
        runner.PluginUnavailable("echo", "is quarantined", reason="quarantined"),
        runner.PluginCrashed("echo", "crashed: killed by SIGKILL", signal=9, stderr_tail=("last words",)),
        runner.PluginStartTimeout("echo", "did not say hello", seconds=20.0),
        runner.PluginCancelled("echo", chars=12),
    ]
    for exc in sent:
        back = error_from(json.loads(json.dumps(error_data(exc))), "other")
        assert type(back) is type(exc)
        assert str(back) == str(exc)
        assert {k: v for k, v in vars(back).items()} == {k: v for k, v in vars(exc).items()}
    assert type(error_from({"type": "SystemExit", "message": "x"}, "echo")) is runner.PluginError
