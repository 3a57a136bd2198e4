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


@pytest.mark.xfail(strict=True, reason="HOLE: Requires-Dist 'x @ file:///x.tar.gz' in a wheel builds an sdist at plan, no --allow-build")
def test_transitive_direct_reference_to_an_sdist_builds_nothing(store, house, environ, tmp_path) -> None:
    marker = tmp_path / "built-marker"
    hostile.transitive_sdist(house, tmp_path / "elsewhere", marker)
    try:
        with plan(parse_declared(["carrier"]), store, index=_index(house), environ=environ):
            pass
    except InstallError:
        pass
    assert not marker.exists(), "the sdist's build backend ran on the host, outside the sandbox"


@pytest.mark.xfail(strict=True, reason="HOLE: Requires-Dist 'x @ file:///u.whl' in a wheel reads a user file")
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
