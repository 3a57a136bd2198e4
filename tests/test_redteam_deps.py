"""Red team: plugin dependencies (issue 19). Each test is a real attack; it asserts the attack failed.

Holes (attacks that succeed) are ``xfail(strict=True, reason="HOLE: ...")``. Everything is
built here (tests/deps/builders.py, tests/redteam_deps/hostile.py); pip runs with the index off.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.depinstall import IndexOptions, InstallError, install, plan
from app.deps import DependencyError, parse_declared
from app.envs import EnvStore
from tests.deps.builders import build_wheel, module_files
from tests.helpers import sandchat, sandchat_bytes
from tests.redteam_deps import hostile

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def house(tmp_path: Path) -> Path:
    base = tmp_path / "house"
    build_wheel(base, "tinylib", "1.0", module_files("tinylib", "1.0"))
    return base


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_CACHE_DIR=str(tmp_path / "pip-cache"))
    return env


@pytest.fixture
def pip_env(house: Path, tmp_path: Path) -> dict[str, str]:
    return {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(house), "PIP_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture
def store(tmp_path: Path) -> EnvStore:
    return EnvStore(tmp_path / "data" / "envs")


def _index(house: Path) -> IndexOptions:
    return IndexOptions(find_links=(str(house),), no_index=True)


def _install(store, house, environ, deps, **kw):
    with plan(parse_declared(deps), store, index=_index(house), environ=environ) as p:
        return install(p, store, index=_index(house), environ=environ, **kw)


# --- 1. install runs code ----------------------------------------------------------------------


def test_transitive_direct_reference_to_an_sdist_builds_nothing(store, house, environ, tmp_path) -> None:
    marker = tmp_path / "built-marker"
    hostile.transitive_sdist(house, tmp_path / "elsewhere", marker)
    try:
        with plan(parse_declared(["carrier"]), store, index=_index(house), environ=environ):
            pass
    except InstallError:
        pass
    assert not marker.exists(), "the sdist's build backend ran on the host, outside the sandbox"


def test_transitive_file_reference_is_not_followed(store, house, environ, tmp_path) -> None:
    hostile.transitive_file_wheel(house, tmp_path / "elsewhere")
    try:
        with plan(parse_declared(["carrier2"]), store, index=_index(house), environ=environ) as p:
            names = [i.name for i in p.items]
    except InstallError:
        names = []
    assert "secretw" not in names


# --- 2. entries becoming options, paths, URLs ------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        "-e .",
        "--index-url http://evil",
        "--index-url=http://evil",
        "-r /etc/passwd",
        "file:///tmp/x",
        "pkg @ file:///tmp/x.whl",
        "pkg @ http://evil/x.whl",
        "pkg @ HTTPS://evil/x.whl",
        "pkg @ ftp://evil/x.whl",
        "./tinylib",
        "/etc/passwd",
        "~/x",
        "pkg\n--index-url=http://evil",
        "pkg\x00",
        "pkg --hash=sha256:00",
        "pkg @ https://e/x.whl\n-r /etc/passwd",
        "x" * 1001,
        "",
        " ",
        "pkg==1.0 -i http://evil",
        "git+https://evil/x",
    ],
)
def test_an_entry_cannot_become_an_option_path_or_url(entry: str) -> None:
    with pytest.raises(DependencyError) as caught:
        parse_declared([entry])
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("deps", "rp"),
    [
        ([f"p{i}" for i in range(5000)], None),
        ([1], None),
        ([None], None),
        ([["x"]], None),
        ({"x": 1}, None),
        (["x"], "garbage;;"),
        (["x"], ">=3\n-r /etc/passwd"),
        (["x"], 3),
        (["x"], [">=3"]),
    ],
)
def test_bad_shapes_are_refused(deps, rp) -> None:
    with pytest.raises(DependencyError):
        parse_declared(deps, rp)


# --- 3. run-time isolation --------------------------------------------------------------------


def test_plugin_cannot_write_its_env_read_user_files_or_import_host_packages(tmp_path: Path, pip_env: dict[str, str]) -> None:
    home, folder = tmp_path / "home", tmp_path / "plugins"
    secret = tmp_path / "user-secret.txt"
    secret.write_text("s3cret")
    run = lambda *a: sandchat(home, "--plugins-dir", str(folder), *a, **pip_env)  # noqa: E731
    hostile.plugin(folder, "victim", ["tinylib==1.0"])
    assert run("plugins", "deps", "victim", "--yes").returncode == 0
    [env] = [p for p in (home / "envs").iterdir() if not p.name.startswith(".")]
    lib = env / "lib"
    import site

    actions = [
        ("write", str(lib / "tinylib" / "__init__.py")),
        ("write", str(lib / "evil.pth")),
        ("write", str(env / "manifest.json")),
        ("read", str(secret)),
        ("list", str(tmp_path)),
        ("read", str(home / "settings.toml")),
        ("list", str(home)),
        ("import", "app"),
        ("import", "runner.cli"),
        ("import", "anthropic"),
        ("import", "pytest"),
        ("import", "packaging"),
        ("list", site.getsitepackages()[0]),
    ]
    hostile.plugin(folder, "attacker", ["tinylib==1.0"], actions)
    done = run("prompt", "-p", "attacker", "go")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "written" not in result.values() and "read" not in result.values() and "listed" not in result.values(), result
    assert [k for k, v in result.items() if v == "imported"] == [], result
    assert "poisoned" not in (lib / "tinylib" / "__init__.py").read_text()


# --- 5. terminal escapes in requirement strings -----------------------------------------------


def test_escapes_in_a_requirement_marker_never_reach_the_terminal(tmp_path: Path, pip_env: dict[str, str]) -> None:
    home, folder = tmp_path / "home", tmp_path / "plugins"
    evil = 'tinylib==1.0; platform_release != "\x1b]52;c;ZXZpbA==\x07\x1b[2J\x1b[31m\r"'
    path = hostile.plugin(folder, "esc", [])
    path.write_text(path.read_text().replace("# dependencies = []", "# dependencies = [" + json.dumps(evil) + "]"))
    for args in (
        ("plugins", "deps", "esc"),
        ("plugins", "deps", "esc", "--yes"),
        ("plugins", "list"),
        ("plugins", "list", "--json"),
        ("plugins", "check", str(path)),
        ("prompt", "-p", "esc", "hi"),
    ):
        out = sandchat_bytes(home, "--plugins-dir", str(folder), *args, **pip_env)
        for stream in (out.stdout, out.stderr):
            assert b"\x1b" not in stream and b"\x07" not in stream and b"\r" not in stream, (args, stream[-300:])


# --- batch 2 -----------------------------------------------------------------------------------


def test_no_answer_runs_no_code_even_with_a_transitive_sdist(tmp_path: Path, house: Path, pip_env: dict[str, str]) -> None:
    home, folder, marker = tmp_path / "home", tmp_path / "plugins", tmp_path / "built-marker"
    hostile.transitive_sdist(house, tmp_path / "elsewhere", marker)
    hostile.plugin(folder, "carrier", ["carrier"])
    asked = sandchat(home, "--plugins-dir", str(folder), "plugins", "deps", "carrier", **pip_env)  # no terminal: a "no"
    assert asked.returncode != 0
    assert not marker.exists(), "built on the host before the user was asked"


def test_traversing_and_absolute_wheel_entries_stay_inside_the_env(store, house, environ, tmp_path) -> None:
    from tests.deps.builders import wheel_bytes

    outside = tmp_path / "outside"
    entries = {
        "trav/__init__.py": "",
        "../../../../escape1.txt": "x",
        str(outside / "abs.txt"): "x",
        "trav-1.0.data/data/../../../escape2.txt": "x",
        "trav-1.0.data/scripts/../../../../escape3.txt": "x",
        "trav-1.0.data/purelib/../../../../escape4.txt": "x",
        "trav-1.0.data/headers/../../../../escape5.txt": "x",
    }
    (house / "trav-1.0-py3-none-any.whl").write_bytes(wheel_bytes("trav", "1.0", entries))
    before = {p for p in tmp_path.rglob("*")}
    try:
        env = _install(store, house, environ, ["trav"])
    except InstallError:
        env = None
    new = {p for p in tmp_path.rglob("*")} - before
    lib = env.lib if env else store.root
    escaped = [p for p in new if "escape" in p.name or p.name == "abs.txt"]
    assert all(p.is_relative_to(store.root) for p in escaped) and not outside.exists(), escaped
    if env:
        assert all(p.is_relative_to(lib) for p in escaped), escaped


def test_shadowing_names_and_pth_in_an_env_run_nowhere(tmp_path: Path, house: Path, pip_env: dict[str, str]) -> None:
    home, folder, markers = tmp_path / "home", tmp_path / "plugins", tmp_path / "markers"
    markers.mkdir()
    hostile.shadowing_wheel(house, markers)
    folder.mkdir()
    (folder / "shadow_plugin.py").write_text(hostile.SHADOW_PLUGIN)
    run = lambda *a: sandchat(home, "--plugins-dir", str(folder), *a, **pip_env)  # noqa: E731
    done = run("plugins", "deps", "shadow", "--yes")
    assert done.returncode == 0, done.stderr
    for args in (("plugins", "list"), ("plugins", "check", str(folder / "shadow_plugin.py")), ("plugins", "deps", "shadow")):
        run(*args)
    answer = run("prompt", "-p", "shadow", "hi")
    assert answer.returncode == 0, answer.stderr
    reply = json.loads(answer.stdout)
    assert sorted(os.listdir(markers)) == [], "host ran env code"
    # json is the plugin's own `import json` finding the env's json.py first: its own choice, not counted
    assert [name for name in reply["ran"] if name != "json"] == [], reply
    env_lib = str(home / "envs")
    assert not reply["llm_utils"].startswith(env_lib), reply
    assert not any(p.startswith(env_lib) for p in reply["runner"] or []), reply


def test_prune_and_remove_never_delete_through_a_symlink(tmp_path: Path, pip_env: dict[str, str]) -> None:
    home, folder = tmp_path / "home", tmp_path / "plugins"
    precious = tmp_path / "precious"
    (precious / "lib").mkdir(parents=True)
    (precious / "lib" / "keep.txt").write_text("mine")
    (precious / "keep.txt").write_text("mine")
    hostile.plugin(folder, "victim", ["tinylib==1.0"])
    run = lambda *a: sandchat(home, "--plugins-dir", str(folder), *a, **pip_env)  # noqa: E731
    assert run("plugins", "deps", "victim", "--yes").returncode == 0
    envs = home / "envs"
    [real] = [p for p in envs.iterdir() if not p.name.startswith(".")]
    (real / "lib" / "link").symlink_to(precious)  # a symlink inside an environment
    (envs / ("f" * 24)).symlink_to(precious)  # an "environment" that is a symlink to a user folder
    stale = envs / ".tmp-ffff-1"
    stale.symlink_to(precious)
    os.utime(precious, (1, 1))  # the stale check stats through the link
    fake = json.loads((real / "manifest.json").read_text())
    (precious / "manifest.json").write_text(json.dumps({**fake, "key": "e" * 24, "plugins": []}))
    (envs / ("e" * 24)).symlink_to(precious)
    run("plugins", "deps", "--prune")
    (folder / "victim_plugin.py").unlink()
    run("plugins", "deps", "--prune")
    assert (precious / "keep.txt").read_text() == "mine" and (precious / "lib" / "keep.txt").read_text() == "mine"


def test_the_size_shown_before_the_question_is_what_lands_on_disk(store, house, environ) -> None:
    from tests.deps.builders import wheel_bytes

    data = wheel_bytes("bomb", "1.0", {"bomb/__init__.py": "", "bomb/zeros.bin": b"\0" * (50 << 20)})
    (house / "bomb-1.0-py3-none-any.whl").write_bytes(hostile.deflated(data))
    with plan(parse_declared(["bomb"]), store, index=_index(house), environ=environ) as p:
        shown = p.total_size
        env = install(p, store, index=_index(house), environ=environ)
    assert env.manifest["installed_bytes"] <= 4 * shown, (shown, env.manifest["installed_bytes"])


@pytest.mark.parametrize("field", ["name", "version"])
def test_escapes_in_a_wheels_metadata_never_reach_the_terminal(tmp_path: Path, house: Path, pip_env: dict[str, str], field) -> None:
    from tests.deps import builders

    home, folder = tmp_path / "home", tmp_path / "plugins"
    evil = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\r"
    name, version = ("esclib" + evil, "1.0") if field == "name" else ("esclib", "1.0" + evil)
    data = builders.wheel_bytes("esclib", "1.0", {"esclib/__init__.py": ""})
    import io
    import zipfile

    src, buf = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.endswith("METADATA"):
                body = builders._metadata(name, version, ()).encode() + b"Summary: " + evil.encode() + b"\n"
            out.writestr(info, body)
    (house / "esclib-1.0-py3-none-any.whl").write_bytes(buf.getvalue())
    hostile.plugin(folder, "esc", ["esclib"])
    for args in (("plugins", "deps", "esc", "--yes"), ("plugins", "list"), ("plugins", "check", str(folder / "esc_plugin.py"))):
        out = sandchat_bytes(home, "--plugins-dir", str(folder), *args, **pip_env)
        for stream in (out.stdout, out.stderr):
            assert b"\x1b" not in stream and b"\x07" not in stream and b"\r" not in stream, (args, stream[-300:])


# --- batch 3 -----------------------------------------------------------------------------------


def test_transitive_reference_to_a_local_folder_builds_nothing(store, house, environ, tmp_path) -> None:
    marker = tmp_path / "built-marker"
    hostile.transitive_directory(house, tmp_path / "project", marker)
    try:
        with plan(parse_declared(["carrier3"]), store, index=_index(house), environ=environ):
            pass
    except InstallError:
        pass
    assert not marker.exists()


def test_an_extra_with_a_transitive_sdist_builds_nothing(store, house, environ, tmp_path) -> None:
    marker = tmp_path / "built-marker"
    hostile.extra_sdist(house, tmp_path / "elsewhere", marker)
    try:
        with plan(parse_declared(["nice[fast]"]), store, index=_index(house), environ=environ):
            pass
    except InstallError:
        pass
    assert not marker.exists()


def test_plugins_install_of_a_downloaded_file_runs_no_code_before_asking(tmp_path: Path, house: Path, pip_env: dict[str, str]) -> None:
    home, marker = tmp_path / "home", tmp_path / "built-marker"
    hostile.transitive_sdist(house, tmp_path / "elsewhere", marker)
    source = hostile.plugin(tmp_path / "download", "carrier", ["carrier"])
    refused = sandchat(home, "plugins", "install", str(source), **pip_env)
    assert refused.returncode != 0 and not (home / "plugins" / "carrier_plugin.py").exists()
    assert not marker.exists()


@pytest.mark.parametrize("entry", ["evil.tar.gz", "evil-1.0.tar.gz", "evil.zip", "evil-1.0-py3-none-any.whl"])
def test_a_name_that_looks_like_a_file_in_the_users_cwd_is_not_used(tmp_path: Path, house: Path, pip_env, entry) -> None:
    from tests.deps.builders import build_sdist

    home, folder, cwd, marker = tmp_path / "home", tmp_path / "plugins", tmp_path / "Downloads", tmp_path / "built-marker"
    made = build_sdist(cwd, "evil", "1.0", module_files("evil", "1.0"), marker)
    build_wheel(cwd, "evil", "1.0", module_files("evil", "1.0"))
    for alias in ("evil.tar.gz", "evil.zip"):
        (cwd / alias).write_bytes(made.read_bytes())
    hostile.plugin(folder, "cwd", [entry])
    out = sandchat(home, "--plugins-dir", str(folder), "plugins", "deps", "cwd", "--yes", cwd=cwd, **pip_env)
    assert not marker.exists()
    assert out.returncode != 0 or not list((home / "envs").glob("*/lib/evil")), out.stdout + out.stderr


# --- batch 4 -----------------------------------------------------------------------------------


def test_a_plugin_cannot_read_its_envs_manifest_or_list_the_store(tmp_path: Path, pip_env: dict[str, str]) -> None:
    """The manifest lists every plugin file sharing the environment; the store lists every other environment."""
    home, folder = tmp_path / "home", tmp_path / "plugins"
    run = lambda *a: sandchat(home, "--plugins-dir", str(folder), *a, **pip_env)  # noqa: E731
    hostile.plugin(folder, "victim", ["tinylib==1.0"])
    assert run("plugins", "deps", "victim", "--yes").returncode == 0
    [env] = [p for p in (home / "envs").iterdir() if not p.name.startswith(".")]
    actions = [
        ("read", str(env / "manifest.json")),
        ("list", str(env)),
        ("list", str(home / "envs")),
        ("read", str(home / "envs" / ".lock")),
    ]
    hostile.plugin(folder, "attacker", ["tinylib==1.0"], actions)
    done = run("prompt", "-p", "attacker", "go")
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout).values()) <= {"PermissionError", "FileNotFoundError"}, done.stdout


def test_a_plugin_without_dependencies_cannot_reach_the_environments(tmp_path: Path, pip_env: dict[str, str]) -> None:
    home, folder = tmp_path / "home", tmp_path / "plugins"
    run = lambda *a: sandchat(home, "--plugins-dir", str(folder), *a, **pip_env)  # noqa: E731
    hostile.plugin(folder, "victim", ["tinylib==1.0"])
    assert run("plugins", "deps", "victim", "--yes").returncode == 0
    [env] = [p for p in (home / "envs").iterdir() if not p.name.startswith(".")]
    actions = [("read", str(env / "lib" / "tinylib" / "__init__.py")), ("list", str(env / "lib")), ("read", str(env / "manifest.json"))]
    path = hostile.plugin(folder, "plain", [], actions)
    path.write_text(path.read_text().replace("# dependencies = []\n", ""))
    done = run("prompt", "-p", "plain", "go")
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout).values()) <= {"PermissionError", "FileNotFoundError"}, done.stdout


def test_prune_deletes_only_environments_sandchat_made(tmp_path: Path, pip_env: dict[str, str]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    disk = tmp_path / "bigdisk"
    (disk / "photos").mkdir(parents=True)
    (disk / "photos" / "cat.jpg").write_text("meow")
    (home / "envs").symlink_to(disk)  # the user keeps the environments on another disk
    pruned = sandchat(home, "plugins", "deps", "--prune", **pip_env)
    assert pruned.returncode == 0, pruned.stderr
    assert (disk / "photos" / "cat.jpg").exists(), pruned.stdout


# --- batch 5 -----------------------------------------------------------------------------------


def test_bidi_and_line_separators_in_a_requirement_cannot_spoof_the_confirmation(tmp_path: Path, pip_env: dict[str, str]) -> None:
    home, folder = tmp_path / "home", tmp_path / "plugins"
    evil = 'tinylib==1.0; platform_release != "\u202e\u2028\u2029\x85\u200f1 file, 1 B to install\u2066"'
    path = hostile.plugin(folder, "bidi", [])
    path.write_text(path.read_text().replace("# dependencies = []", "# dependencies = [" + json.dumps(evil) + "]"))
    for args in (("plugins", "deps", "bidi"), ("plugins", "list")):
        out = sandchat_bytes(home, "--plugins-dir", str(folder), *args, **pip_env)
        for stream in (out.stdout, out.stderr):
            text = stream.decode("utf-8", "replace")
            assert not set(text) & set("\u202e\u2028\u2029\x85\u200f\u2066"), (args, text[-300:])


def test_a_direct_reference_contacts_no_host_before_the_user_says_yes(tmp_path: Path, pip_env: dict[str, str]) -> None:
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)
    port = listener.getsockname()[1]
    contacted: list[bool] = []

    def accept() -> None:
        try:
            conn, _ = listener.accept()
            contacted.append(True)
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    home, folder = tmp_path / "home", tmp_path / "plugins"
    hostile.plugin(folder, "ssrf", [f"internal @ https://127.0.0.1:{port}/internal-1.0-py3-none-any.whl"])
    try:
        asked = sandchat(home, "--plugins-dir", str(folder), "plugins", "deps", "ssrf", PIP_RETRIES="0", PIP_TIMEOUT="5", **pip_env)
    finally:
        listener.close()
        thread.join(5)
    assert asked.returncode != 0
    assert not contacted, "the host connected to an address the plugin chose, before any question"


def test_the_plan_shows_every_file_pip_fetched(store, house, environ, tmp_path) -> None:
    marker = tmp_path / "built-marker"
    elsewhere = tmp_path / "elsewhere"
    hostile.transitive_sdist(house, elsewhere, marker)
    unversioned = elsewhere / "evilsd.tar.gz"  # no version in the name: packaging cannot parse it
    (elsewhere / "evilsd-1.0.tar.gz").rename(unversioned)
    build_wheel(house, "carrier", "1.0", module_files("carrier", "1.0"), requires=[f"evilsd @ {unversioned.as_uri()}"])
    try:
        with plan(parse_declared(["carrier"]), store, index=_index(house), environ=environ) as p:
            staged = sorted(f.name for f in p.stage.iterdir())
            shown = sorted(i.filename for i in p.items)
            lines = p.lines()
    except InstallError as refused:  # no plan, so nothing shown and nothing asked: the attack failed, if nothing is left staged
        staged, shown, lines = sorted(f.name for f in store.root.iterdir() if f.name.startswith(".stage-")), [], [str(refused)]
    assert staged == shown, (staged, lines)
