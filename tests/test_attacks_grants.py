"""Attacks on access decisions: grants bound to the bytes that run, companion files declared.

Found by an outside review and fixed: a granted plugin file replaced in place (same size
and mtime), or a symlink retargeted, ran its new code with the old grant after one
crash, because the decision was made once per client and files were compared by stamp;
and a plugin named ``keys.py`` in a folder that is also the sandchat home read
``keys.json`` as its "companion file". Now every start decides again from the bytes it
sends the child, and a plugin reads only the companion files its metadata declares.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import textwrap
from pathlib import Path

import pytest

import runner
from app import PluginManager
from app.grants import file_sha256
from tests.attackkit import Host, accepted, assert_host_healthy, errnos, listener, port
from tests.conftest import FAST, TEST_PLUGINS

pytestmark = pytest.mark.timeout(60)

# A plugin that crashes on "crash", reports its sandbox profile on "profile", and
# otherwise tries to send "laundered" to 127.0.0.1:PORT and to read the paths it is given.
_PLUGIN = '''
import json, os, socket
from llm_utils import LLMClient


class Probe(LLMClient):
    """{tag}"""

    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        if user_message == "crash":
            os._exit(3)
        order = json.loads(user_message)
        lines = []
        if order.get("port"):
            try:
                with socket.create_connection(("127.0.0.1", order["port"]), timeout=5) as s:
                    s.sendall(b"laundered")
                lines.append("LEAKED: connected")
            except OSError as exc:
                lines.append(f"BLOCKED: connect: {{type(exc).__name__}} {{exc.errno}}")
        for path in order.get("read", []):
            try:
                with open(path, "rb") as f:
                    lines.append(f"LEAKED: read {{path}}: {{f.read(60)!r}}")
            except OSError as exc:
                lines.append(f"BLOCKED: read {{path}}: {{type(exc).__name__}} {{exc.errno}}")
        return "\\n".join(lines)

    def count_tokens(self, text):
        return 1
'''


def probe_code(tag: str, metadata: str = "") -> str:
    block = f"# /// plugin\n{textwrap.indent(metadata, '# ')}\n# ///\n" if metadata else ""
    return block + _PLUGIN.format(tag=tag)


def same_shape(original: Path, new_text: str) -> None:
    """Overwrite ``original`` in place with ``new_text`` padded to its size, keeping its mtime."""
    before = original.stat()
    data = new_text.encode()
    assert len(data) <= before.st_size
    data += b"#" * (before.st_size - len(data))
    with open(original, "r+b") as f:  # the same inode: hard links see it too
        f.write(data)
    os.utime(original, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = original.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def crash_once(client: runner.Plugin) -> None:
    with pytest.raises(runner.PluginCrashed):
        client.generate_response("", "crash")


def launder_and_check(manager: PluginManager, name: str, server_port: int, replace: object) -> None:
    """Grant ``name`` the port, prove it works, swap the code via ``replace()``, crash, check the restart."""
    client = manager.handle(name)
    path = manager.plugin_file(name).path
    manager.grants.grant(name, file_sha256(path), network=(f"127.0.0.1:{server_port}",), env=())
    manager.forget(name)
    client = manager.handle(name)
    assert client.generate_response("", json.dumps({"port": server_port})) == "LEAKED: connected"
    replace()  # type: ignore[operator]
    crash_once(client)
    lines = client.generate_response("", json.dumps({"port": server_port})).splitlines()
    assert lines == [f"BLOCKED: connect: PermissionError {errno.EPERM}"], lines
    assert client.hello["sandbox"]["profile"] == "untrusted"
    assert "evil" in client.hello["doc"]  # the new code did run, without the grant


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "plugins"
    path.mkdir()
    return path


def test_code_replaced_with_same_size_and_mtime_loses_the_grant_on_restart(home: Path, host: Host, folder: Path) -> None:
    plugin = folder / "probe_plugin.py"
    plugin.write_text(probe_code("honest") + "#" * 64)
    with listener() as server, PluginManager([folder, TEST_PLUGINS], home=home, deadlines=FAST) as manager:
        launder_and_check(manager, "probe", port(server), lambda: same_shape(plugin, probe_code("evil")))
        assert accepted(server) == [b"laundered"]  # the one connection made while the grant applied
        assert_host_healthy(manager, host)


def test_retargeted_symlink_loses_the_grant_on_restart(home: Path, host: Host, folder: Path, tmp_path: Path) -> None:
    honest, evil = tmp_path / "honest.py", tmp_path / "evil.py"
    honest.write_text(probe_code("honest"))
    evil.write_text(probe_code("evil"))
    link = folder / "probe_plugin.py"
    link.symlink_to(honest)

    def retarget() -> None:
        link.unlink()
        link.symlink_to(evil)

    with listener() as server, PluginManager([folder, TEST_PLUGINS], home=home, deadlines=FAST) as manager:
        launder_and_check(manager, "probe", port(server), retarget)
        assert accepted(server) == [b"laundered"]
        assert_host_healthy(manager, host)


def test_hard_linked_file_changed_elsewhere_loses_the_grant_on_restart(home: Path, host: Host, folder: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text(probe_code("honest") + "#" * 64)
    os.link(elsewhere, folder / "probe_plugin.py")
    with listener() as server, PluginManager([folder, TEST_PLUGINS], home=home, deadlines=FAST) as manager:
        launder_and_check(manager, "probe", port(server), lambda: same_shape(elsewhere, probe_code("evil")))
        assert accepted(server) == [b"laundered"]
        assert_host_healthy(manager, host)


def test_the_child_runs_the_bytes_it_was_sent_and_cannot_read_its_file(home: Path, host: Host, folder: Path) -> None:
    plugin = folder / "probe_plugin.py"
    plugin.write_text(probe_code("first"))
    with PluginManager([folder, TEST_PLUGINS], home=home, deadlines=FAST) as manager:
        client = manager.handle("probe")
        assert client.generate_response("", json.dumps({"read": [str(plugin)]})).startswith(f"BLOCKED: read {plugin}: PermissionError")
        assert client.hello["doc"] == "first"
        plugin.write_text(probe_code("second"))  # the running process keeps what it was sent
        assert client.generate_response("", json.dumps({})) == ""
        assert client.hello["doc"] == "first"
        assert_host_healthy(manager, host)


# -- companion files ----------------------------------------------------------------------


def test_plugin_named_keys_in_the_sandchat_home_cannot_read_sandchat_files(home: Path, host: Host) -> None:
    (home / "keys.py").write_text(probe_code("keys"))
    with PluginManager([home, TEST_PLUGINS], home=home, deadlines=FAST) as manager:
        manager.keys.set("ANTHROPIC_API_KEY", "sk-ant-" + secrets.token_hex(8))
        manager.grants.grant("someone_else", "0" * 64, network=(), env=())
        manager.events.record("echo", "started", {})  # health.db exists
        targets = [manager.paths.keys_file, manager.paths.grants_file, manager.paths.health_db]
        assert all(t.exists() for t in targets)
        lines = manager.handle("keys").generate_response("", json.dumps({"read": [str(t) for t in targets]})).splitlines()
        assert all(line.startswith("BLOCKED: ") for line in lines) and len(lines) == 3, lines
        assert errnos(lines) == [errno.EACCES] * 3
        assert_host_healthy(manager, host)


def test_declared_companion_is_readable_and_its_neighbours_are_not(home: Path, host: Host, folder: Path) -> None:
    (folder / "probe_plugin.py").write_text(probe_code("c", 'files = ["probe_plugin.toml", "probe_plugin/words.txt"]'))
    (folder / "probe_plugin.toml").write_text("greeting = 'hello'\n")
    (folder / "probe_plugin").mkdir()
    (folder / "probe_plugin" / "words.txt").write_text("words")
    (folder / "probe_plugin.key").write_text("undeclared: a name that the old glob matched")
    (folder / "notes.txt").write_text("a neighbour")
    with PluginManager([folder, TEST_PLUGINS], home=home, deadlines=FAST) as manager:
        paths = [folder / "probe_plugin.toml", folder / "probe_plugin" / "words.txt", folder / "probe_plugin.key", folder / "notes.txt"]
        lines = manager.handle("probe").generate_response("", json.dumps({"read": [str(p) for p in paths]})).splitlines()
        assert lines[0] == f"LEAKED: read {paths[0]}: b\"greeting = 'hello'\\n\"", lines
        assert lines[1] == f"LEAKED: read {paths[1]}: b'words'", lines
        assert errnos(lines[2:]) == [errno.EACCES] * 2, lines
        assert_host_healthy(manager, host)


def test_a_declared_companion_that_does_not_exist_is_simply_absent(home: Path, host: Host, folder: Path) -> None:
    (folder / "probe_plugin.py").write_text(probe_code("c", 'files = ["probe_plugin.toml"]'))
    with PluginManager([folder, TEST_PLUGINS], home=home, deadlines=FAST) as manager:
        lines = manager.handle("probe").generate_response("", json.dumps({"read": [str(folder / "probe_plugin.toml")]}))
        assert lines.startswith("BLOCKED: read") and "FileNotFoundError" in lines, lines
        assert_host_healthy(manager, host)


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "folder"])
def test_companion_that_could_point_elsewhere_refuses_the_start(home: Path, host: Host, folder: Path, tmp_path: Path, kind: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("a file outside the plugin folder")
    companion = folder / "probe_plugin.toml"
    if kind == "symlink":
        companion.symlink_to(secret)
    elif kind == "hardlink":
        os.link(secret, companion)
    elif kind == "folder":
        companion.mkdir()
    (folder / "probe_plugin.py").write_text(probe_code("c", 'files = ["probe_plugin.toml"]'))
    with PluginManager([folder, TEST_PLUGINS], home=home, deadlines=FAST) as manager:
        with pytest.raises(runner.PluginLoadError) as caught:
            manager.handle("probe").generate_response("", "{}")
        message = str(caught.value)
        assert "\n" not in message and "'probe'" in message and "probe_plugin.toml" in message, message
        expected = {"symlink": "regular file", "hardlink": "hard links", "folder": "regular file"}[kind]
        assert expected in message, message
        assert_host_healthy(manager, host)


def test_companion_in_the_sandchat_home_is_refused(home: Path, host: Host) -> None:
    (home / "probe_plugin.py").write_text(probe_code("c", 'files = ["probe_plugin.toml"]'))
    (home / "probe_plugin.toml").write_text("in the sandchat home: not the plugin's to read")
    with PluginManager([home, TEST_PLUGINS], home=home, deadlines=FAST) as manager:
        with pytest.raises(runner.PluginLoadError, match="probe_plugin.toml.*sandchat's own folder"):
            manager.handle("probe").start()
        assert_host_healthy(manager, host)


@pytest.mark.parametrize("name", ["keys.json", ".ssh/id_ed25519", "other_plugin.toml", "probe_plugin.py",
                                  "probe_plugin/.hidden", "notes/probe_plugin.toml", "probe_pluginx.toml"])  # fmt: skip
def test_companion_that_is_not_visibly_its_own_is_refused(home: Path, host: Host, tmp_path: Path, name: str) -> None:
    """Found by a red team: any regular file below the folder could be declared, so a
    plugin kept in ~ read ~/.ssh/id_ed25519, and one among other plugins read their config."""
    folder = tmp_path / "fakehome"
    (folder / Path(name).parent).mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("-----BEGIN OPENSSH PRIVATE KEY----- secret")
    (folder / "probe_plugin.py").write_text(probe_code("c", f'files = ["{name}"]'))
    with PluginManager([folder, TEST_PLUGINS], home=home, deadlines=FAST) as manager:
        with pytest.raises(runner.PluginLoadError, match="is not its own: name files probe_plugin.* beside it"):
            manager.handle("probe").start()
        assert_host_healthy(manager, host)


def test_companion_path_outside_the_folder_is_a_metadata_error(home: Path, host: Host, folder: Path) -> None:
    (folder / "probe_plugin.py").write_text(probe_code("c", 'files = ["../secret.txt"]'))
    with PluginManager([folder, TEST_PLUGINS], home=home, deadlines=FAST) as manager:
        with pytest.raises(runner.PluginLoadError, match=r"bad metadata block.*\.\./secret\.txt"):
            manager.handle("probe").start()
        assert_host_healthy(manager, host)
