"""Plugin dependencies (issue 19): declared requirements, environments, pip plans and installs, the child's path.

Hermetic: every wheel and sdist is built here (tests/deps/builders.py) into a folder that
pip reads with the index off, under a pip configuration of nothing (``PIP_CONFIG_FILE`` is
/dev/null, no ``PIP_*`` of the machine's) and a cache of the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from app.depinstall import BUILD_WARNING, IndexOptions, InstallError, install, pip_environ, plan
from app.deps import Declared, DependencyError, env_key, missing, missing_message, parse_declared, python_problem
from app.envs import EnvStore, child_paths
from tests.deps.builders import build_sdist, build_wheel, module_files

ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).resolve().parent / "deps" / "probe.py"
PTH_MARKER = "pth-ran"
IMPORT_MARKER = "import-ran"
SETUP_MARKER = "setup-ran"


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local wheelhouse: two versions of tinylib (2.0 needs tinydep), a fake msgpack, code-carrying files."""
    base = tmp_path_factory.mktemp("house")
    wheels = base / "wheels"
    build_wheel(wheels, "tinylib", "1.0", module_files("tinylib", "1.0"))
    build_wheel(wheels, "tinylib", "2.0", module_files("tinylib", "2.0"), requires=["tinydep>=1"])
    build_wheel(wheels, "tinydep", "1.0", module_files("tinydep", "1.0"))
    build_wheel(wheels, "msgpack", "0.0.1", module_files("msgpack", "0.0.1-plugin"))
    markers = base / "markers"
    markers.mkdir()
    write = "import pathlib; pathlib.Path({!r}).write_text('x')"
    build_wheel(
        wheels,
        "pthlib",
        "1.0",
        {
            **module_files("pthlib", "1.0", extra=write.format(str(markers / IMPORT_MARKER)) + "\n"),
            "pthlib-hook.pth": "import os; " + write.format(str(markers / PTH_MARKER)) + "\n",
            "setup.py": write.format(str(markers / SETUP_MARKER)) + "\n",
        },
    )
    build_sdist(wheels, "srconly", "1.0", module_files("srconly", "1.0"), markers / "srconly-built")
    return base


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """A pip environment with nothing of the machine's pip settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_CACHE_DIR=str(tmp_path / "pip-cache"))
    return env


@pytest.fixture
def index(house: Path) -> IndexOptions:
    return IndexOptions(find_links=(str(house / "wheels"),), no_index=True)


@pytest.fixture
def store(tmp_path: Path) -> EnvStore:
    return EnvStore(tmp_path / "data" / "envs")


def _install(store: EnvStore, index: IndexOptions, environ: dict, deps: list[str], **kw):
    declared = parse_declared(deps)
    with plan(declared, store, index=index, environ=environ, allow_build=kw.pop("allow_build", False)) as p:
        return install(p, store, index=index, environ=environ, **kw)


def _leftovers(store: EnvStore) -> list[str]:
    return sorted(e.name for e in store.root.iterdir() if e.name.startswith(".") and e.name != ".lock")


# --- declared requirements -------------------------------------------------------------------


def test_equal_sets_share_one_key_and_different_sets_do_not() -> None:
    a = parse_declared(["TinyLib == 1.0", "tinydep", "tinydep"])
    b = parse_declared(["tinydep", "tinylib==1.0"])
    assert a.requirements == ("tinydep", "tinylib==1.0") and a.key == b.key
    assert parse_declared(["tinylib==2.0", "tinydep"]).key != a.key
    assert env_key(a, tag="cpython-312-linux-x86_64") != a.key  # another interpreter, another environment
    spaced = parse_declared(['Foo_Bar[B,a] >= 1.0, <2 ; python_version >= "3"'])
    assert spaced.requirements == ('foo-bar[a,b]<2,>=1.0; python_version >= "3"',)
    assert spaced.key == parse_declared(['foo-bar[a,b]>=1.0,<2; python_version>="3"']).key


@pytest.mark.parametrize(
    ("dependencies", "requires_python", "expected"),
    [
        (["tinylib >>= 1"], None, "dependencies entry 'tinylib >>= 1' is not a PEP 508 requirement"),
        (["ok", ""], None, "dependencies entry '' is not a PEP 508 requirement"),
        (["--index-url=http://evil/"], None, "dependencies entry '--index-url=http://evil/' is not a PEP 508"),
        (["x @ file:///etc/passwd"], None, "'x @ file:///etc/passwd' is a direct reference (a URL), which sandchat does not install"),
        (["x @ https://e.example/x-1.0-py3-none-any.whl"], None, "name a release from the package index instead, e.g. 'x>=1.0'"),
        ("tinylib", None, "dependencies must be a list of strings"),
        ([1], None, "dependencies must be a list of strings"),
        ([f"p{i}" for i in range(65)], None, "dependencies lists 65 entries; at most 64"),
        (["tinylib"], "3.11+", "requires-python '3.11+' is not a version specifier"),
        (["tinylib"], 3.11, "requires-python must be a string"),
    ],
)
def test_a_bad_declaration_is_one_line_naming_the_entry(dependencies, requires_python, expected) -> None:
    with pytest.raises(DependencyError) as caught:
        parse_declared(dependencies, requires_python)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_requires_python_is_checked_against_this_interpreter() -> None:
    assert python_problem(parse_declared(["x"], ">=3.11")) is None
    problem = python_problem(parse_declared(["x"], ">=99"))
    assert problem and problem.startswith("requires Python >=99; this is Python 3.")
    assert python_problem(parse_declared(["x"], "<3.11"), version="3.10.4") is None


# --- plan and install ------------------------------------------------------------------------


def test_plan_lists_names_versions_sizes_and_installs_nothing(store, index, environ, house) -> None:
    declared = parse_declared(["tinylib>=2"])
    with plan(declared, store, index=index, environ=environ) as p:
        assert [(i.name, i.version, i.wheel) for i in p.items] == [("tinydep", "1.0", True), ("tinylib", "2.0", True)]
        on_disk = (house / "wheels" / "tinylib-2.0-py3-none-any.whl").stat().st_size
        assert next(i for i in p.items if i.name == "tinylib").size == on_disk
        assert p.total_size == sum(i.unpacked for i in p.items) and p.download_size == sum(i.size for i in p.items)
        assert p.lines()[-1] == f"2 files, {p.total_size} B to install (unpacked; {p.download_size / 1024:.1f} KiB downloaded)"
        assert p.lines()[0].startswith("tinydep 1.0") and p.lines()[0].endswith("wheel")
        assert store.keys() == [] and store.status(declared).missing == ("tinylib>=2",)
    assert _leftovers(store) == []  # the discarded plan took its staging folder with it


def test_two_versions_of_one_library_in_two_environments(store, index, environ) -> None:
    one = _install(store, index, environ, ["tinylib==1.0"], plugin=("a", "/plugins/a.py"))
    two = _install(store, index, environ, ["tinylib>=2"], plugin=("b", "/plugins/b.py"))
    assert one.key != two.key and sorted(store.keys()) == sorted([one.key, two.key])
    assert (one.lib / "tinylib" / "__init__.py").read_text().startswith("__version__ = '1.0'")
    assert (two.lib / "tinylib" / "__init__.py").read_text().startswith("__version__ = '2.0'")
    assert not (one.lib / "tinydep").exists() and (two.lib / "tinydep").is_dir()
    assert (one.lib / "tinylib" / "__pycache__").is_dir()  # compiled at install: the sandbox cannot write .pyc later
    manifest = two.manifest
    assert [(d["name"], d["version"]) for d in manifest["distributions"]] == [("tinydep", "1.0"), ("tinylib", "2.0")]
    assert all(len(d["sha256"]) == 64 and d["size"] > 0 for d in manifest["distributions"])
    assert manifest["plugins"] == [{"plugin": "b", "path": "/plugins/b.py"}] and manifest["allow_build"] is False
    assert missing(parse_declared(["tinylib>=2"]), two.lib) == [] and missing(parse_declared(["tinylib>=2"]), one.lib) == ["tinylib>=2"]
    assert _leftovers(store) == []


def test_a_plugin_declaring_the_same_set_reuses_the_environment(store, index, environ) -> None:
    first = _install(store, index, environ, ["tinylib==1.0"], plugin=("a", "/p/a.py"))
    inode = first.lib.stat().st_ino
    again = _install(store, index, environ, ["TinyLib == 1.0"], plugin=("c", "/p/c.py"))
    assert again.key == first.key and again.lib.stat().st_ino == inode  # not reinstalled
    assert [u["plugin"] for u in again.manifest["plugins"]] == ["a", "c"]


def test_the_users_own_pip_settings_are_honoured(store, environ, house) -> None:
    """No index options from sandchat: PIP_FIND_LINKS and PIP_NO_INDEX from the user's environment do it."""
    environ.update(PIP_FIND_LINKS=str(house / "wheels"), PIP_NO_INDEX="1", PIP_TARGET="/nowhere", PIP_USER="1")
    with plan(parse_declared(["tinylib==1.0"]), store, environ=environ) as p:
        env = install(p, store, environ=environ)
    assert (env.lib / "tinylib").is_dir() and not Path("/nowhere").exists()
    kept = pip_environ({"PIP_INDEX_URL": "https://mirror.example/simple", "PIP_TARGET": "/x", "HTTPS_PROXY": "http://p:3128"})
    assert kept["PIP_INDEX_URL"] == "https://mirror.example/simple" and kept["HTTPS_PROXY"] == "http://p:3128"
    assert "PIP_TARGET" not in kept and kept["PIP_NO_INPUT"] == "1"


def test_an_sdist_only_requirement_is_refused_without_allow_build(store, index, environ, house) -> None:
    marker = house / "markers" / "srconly-built"
    with pytest.raises(InstallError) as caught:
        plan(parse_declared(["srconly"]), store, index=index, environ=environ)
    message = str(caught.value)
    assert "srconly is available only as source (an sdist)" in message and "--allow-build" in message and "\n" not in message
    assert not marker.exists(), "planning built the sdist: its code ran"
    assert store.keys() == [] and _leftovers(store) == []
    with pytest.raises(InstallError, match="srconly @ https://example.invalid/srconly-1.0.tar.gz is a direct reference"):
        plan(Declared(("srconly @ https://example.invalid/srconly-1.0.tar.gz",)), store, index=index, environ=environ)


def test_allow_build_builds_the_sdist_and_says_so(store, index, environ, house) -> None:
    """The positive control of the test above: the marker does show a build when one happens."""
    marker = house / "markers" / "srconly-built"
    marker.unlink(missing_ok=True)
    assert "outside the sandbox" in BUILD_WARNING
    env = _install(store, index, environ, ["srconly"], allow_build=True)
    assert marker.exists() and (env.lib / "srconly" / "__init__.py").is_file()
    assert env.manifest["built_from_source"] == ["srconly"] and env.manifest["allow_build"] is True
    marker.unlink()


def test_installing_a_wheel_runs_none_of_its_code(store, index, environ, house, tmp_path) -> None:
    """A .pth file, a setup.py and module code in a wheel: installed as files, none of them run, then or at start."""
    markers = house / "markers"
    env = _install(store, index, environ, ["pthlib"])
    assert (env.lib / "pthlib-hook.pth").is_file() and (env.lib / "setup.py").is_file()
    assert env.manifest["pth_files_never_processed"] == ["pthlib-hook.pth"]
    assert not any((markers / m).exists() for m in (PTH_MARKER, IMPORT_MARKER, SETUP_MARKER))
    # The child's way: -I -S, the environment a plain sys.path entry (runner/child/path.py isolate), no site.main().
    as_child = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('cp', {str(ROOT / 'runner' / 'child' / 'path.py')!r})\n"
        "cp = importlib.util.module_from_spec(spec); spec.loader.exec_module(cp)\n"
        f"cp.isolate([{str(env.lib)!r}], sys.path, forget=())\n"
        "import json; print(json.dumps(sys.path))"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", as_child], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout)[0] == str(env.lib)
    assert not (markers / PTH_MARKER).exists(), "the .pth file ran with the environment on the child's path"
    # Positive control: processed as a site folder, the same .pth file does run.
    subprocess.run([sys.executable, "-I", "-S", "-c", f"import site; site.addsitedir({str(env.lib)!r})"], timeout=60, check=True)
    assert (markers / PTH_MARKER).exists()
    assert not (markers / SETUP_MARKER).exists() and not (markers / IMPORT_MARKER).exists()
    (markers / PTH_MARKER).unlink()


def test_a_failed_install_leaves_nothing_half_made(store, index, environ) -> None:
    """A staged file changed after the plan was shown: pip's hash check refuses it, and no environment appears."""
    declared = parse_declared(["tinylib>=2"])
    p = plan(declared, store, index=index, environ=environ)
    staged = p.stage / "tinydep-1.0-py3-none-any.whl"
    staged.write_bytes(staged.read_bytes() + b"\0")
    with pytest.raises(InstallError) as caught:
        install(p, store, index=index, environ=environ)
    assert "cannot install tinylib>=2: " in str(caught.value) and "hash" in str(caught.value).lower()
    assert store.keys() == [] and _leftovers(store) == [] and store.find(declared) is None


# --- status, messages, pruning ---------------------------------------------------------------


def test_status_and_the_one_line_error(store, index, environ) -> None:
    declared = parse_declared(["tinylib>=2"])
    status = store.status(declared)
    assert not status.ok and status.env is None
    assert status.message("b") == "plugin 'b' needs tinylib>=2, which is not installed: run: sandchat plugins deps b"
    assert status.reason("b") == "needs tinylib>=2, which is not installed: run: sandchat plugins deps b"
    env = _install(store, index, environ, ["tinylib>=2"], plugin=("a", "/p/a.py"))
    assert store.status(declared).ok and store.status(declared, verify=True).ok
    for item in env.lib.glob("tinydep*"):  # a broken environment: the dependency's files gone
        subprocess.run(["rm", "-rf", str(item)], check=True, timeout=30)
    assert store.status(declared).ok  # the fast check trusts the atomic install
    assert store.status(declared, verify=True).missing == ("tinylib>=2",)
    with plan(declared, store, index=index, environ=environ) as p:  # plugins deps NAME repairs it in place
        repaired = install(p, store, index=index, environ=environ, replace=True, plugin=("b", "/p/b.py"))
    assert store.status(declared, verify=True).ok and (repaired.lib / "tinydep").is_dir() and _leftovers(store) == []
    assert repaired.manifest["plugins"] == [{"plugin": "a", "path": "/p/a.py"}, {"plugin": "b", "path": "/p/b.py"}]
    assert missing_message("x", ["a", "b>1"]) == "plugin 'x' needs a, b>1, which are not installed: run: sandchat plugins deps x"
    wrong_python = store.status(parse_declared(["tinylib>=2"], ">=99"))
    assert wrong_python.message("b").startswith("plugin 'b' requires Python >=99; this is Python")


def test_prune_removes_environments_no_plugin_uses(store, index, environ, tmp_path) -> None:
    kept_file = tmp_path / "elsewhere" / "c_plugin.py"
    kept_file.parent.mkdir()
    kept_file.write_text("# a plugin in a folder not scanned this time\n")
    one = _install(store, index, environ, ["tinylib==1.0"], plugin=("a", tmp_path / "gone_plugin.py"))
    two = _install(store, index, environ, ["tinylib>=2"], plugin=("b", tmp_path / "b_plugin.py"))
    three = _install(store, index, environ, ["tinydep"], plugin=("c", kept_file))
    stale = store.root / ".tmp-dead-1"
    stale.mkdir()
    os.utime(stale, (0, 0))
    fresh = store.root / ".stage-busy-2"  # another process's plan in progress
    fresh.mkdir()
    assert store.prune(keep=[two.key]) == [one.key]
    assert sorted(store.keys()) == sorted([two.key, three.key])  # three: its recorded user's file is still there
    assert not stale.exists() and fresh.exists()
    assert store.prune(keep=[], keep_recorded=False) == sorted([two.key, three.key]) and store.keys() == []


def test_prune_leaves_every_folder_sandchat_did_not_make(store, index, environ) -> None:
    """envs/ may be a link to a disk of the user's: only a folder whose manifest names it is an environment."""
    env = _install(store, index, environ, ["tinylib==1.0"])
    photos = store.root / "photos"
    (photos / "2024").mkdir(parents=True)
    copied = store.root / ("c" * 24)  # an environment copied under another name: its manifest names env.key
    copied.mkdir()
    (copied / "manifest.json").write_text((env.path / "manifest.json").read_text())
    broken = store.root / ("b" * 24)
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    assert store.foreign() == sorted(["photos", copied.name, broken.name])
    assert store.prune(keep=[], keep_recorded=False) == [env.key]
    assert photos.is_dir() and copied.is_dir() and broken.is_dir() and not env.path.exists()


def test_a_plugin_that_changes_its_set_moves_its_record(store, index, environ, tmp_path) -> None:
    path = tmp_path / "a_plugin.py"
    path.write_text("")
    old = _install(store, index, environ, ["tinylib==1.0"], plugin=("a", path))
    new = _install(store, index, environ, ["tinylib>=2"], plugin=("a", path))
    assert store.manifest(old.key)["plugins"] == [] and store.manifest(new.key)["plugins"] == [{"plugin": "a", "path": str(path)}]
    assert store.prune(keep=[new.key]) == [old.key]


# --- the child's import path -----------------------------------------------------------------


def _probe(env, other_env, imports: list[str], reads: list[str], other_module: str) -> dict:
    paths = child_paths(env)
    system = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/dev/urandom"]
    read = [*system, *paths.read_paths, str(ROOT / "llm_utils.py"), str(ROOT / "runner")]
    args = {
        "root": str(ROOT), "host_dirs": list(paths.host_dirs), "read": read, "env_paths": list(paths.env_paths),
        "imports": imports, "reads": reads, "other_envs": [str(other_env.lib)], "other_module": other_module,
    }  # fmt: skip
    out = subprocess.run([sys.executable, "-I", "-S", str(PROBE), json.dumps(args)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_in_the_sandbox_each_plugin_sees_its_own_version_and_nothing_of_sandchats(store, index, environ) -> None:
    a = _install(store, index, environ, ["tinylib==1.0"])
    b = _install(store, index, environ, ["tinylib>=2", "msgpack==0.0.1"])
    site_packages = Path(sysconfig.get_paths()["purelib"])
    pytest_file = Path(pytest.__file__)
    venv_layout = sys.prefix != sys.base_prefix and not pytest_file.is_relative_to(sys.base_prefix)
    seen_a = _probe(a, b, ["tinylib", "tinydep", "msgpack", "pytest", "app", "anthropic"], [str(pytest_file)], "tinydep")
    seen_b = _probe(b, a, ["tinylib", "tinydep", "msgpack", "pytest"], [str(a.lib / "tinylib" / "__init__.py")], "tinylib")

    assert "landlock" in " ".join(seen_a["layers"])
    assert seen_a["imports"] == {
        "tinylib": "1.0", "tinydep": "ModuleNotFoundError", "msgpack": "ModuleNotFoundError",
        "pytest": "ModuleNotFoundError", "app": "ModuleNotFoundError", "anthropic": "ModuleNotFoundError",
    }  # fmt: skip
    assert seen_b["imports"] == {"tinylib": "2.0", "tinydep": "1.0", "msgpack": "0.0.1-plugin", "pytest": "ModuleNotFoundError"}
    for seen, env in ((seen_a, a), (seen_b, b)):
        assert seen["path"][0] == str(env.lib) and str(site_packages) not in seen["path"] and str(ROOT) not in seen["path"]
        assert seen["runner_roundtrip"] == [[0, 7, "ping", []]]  # the runner kept sandchat's own msgpack
        assert Path(seen["runner_msgpack"]).is_relative_to(Path(child_paths(env).host_dirs[0]))
        assert seen["llm_utils"] == str(ROOT / "llm_utils.py") and seen["exit_builtin"] is True
    # Neither can reach the other's environment, even by putting it on its own path: Landlock.
    assert seen_a["other_env"] == ["ModuleNotFoundError"] and seen_b["other_env"] == ["ModuleNotFoundError"]
    assert seen_b["reads"] == {str(a.lib / "tinylib" / "__init__.py"): "PermissionError"}
    if venv_layout:  # a venv's site-packages is outside the interpreter's tree: not even readable
        assert seen_a["reads"] == {str(pytest_file): "PermissionError"}


def test_a_set_whose_markers_exclude_this_machine_installs_an_empty_environment(store, index, environ) -> None:
    declared = parse_declared(['tinylib==1.0; sys_platform == "nonesuch"'])
    with plan(declared, store, index=index, environ=environ) as p:
        assert p.items == ()
        env = install(p, store, index=index, environ=environ)
    assert list(env.lib.iterdir()) == [] and store.status(declared, verify=True).ok


# --- what a plan may hold: references, sizes, files (app/depstage.py) ------------------------


def _own_index(index: IndexOptions, folder: Path) -> IndexOptions:
    return IndexOptions(find_links=(*index.find_links, str(folder)), no_index=True)


def test_a_dependencys_https_reference_is_refused_before_pip_contacts_it(store, index, environ, tmp_path) -> None:
    """The probe reads carrier's Requires-Dist before any pip run resolves it: no connection, one line naming both."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    url = f"https://127.0.0.1:{listener.getsockname()[1]}/internal-1.0-py3-none-any.whl"
    build_wheel(tmp_path / "own", "carrier", "1.0", module_files("carrier", "1.0"), requires=["tinylib>=2", f"internal @ {url}"])
    try:
        with pytest.raises(InstallError) as caught:
            plan(parse_declared(["carrier"]), store, index=_own_index(index, tmp_path / "own"), environ=environ)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        listener.close()
    message = str(caught.value)
    assert message.startswith(f"carrier 1.0 requires 'internal @ {url}', a direct reference") and "\n" not in message
    assert _leftovers(store) == []


def test_a_reference_in_an_extra_nobody_asked_for_is_refused_too(store, index, environ, tmp_path) -> None:
    """PyPI refuses any wheel whose Requires-Dist has a direct reference, whatever its marker: so does sandchat."""
    requires = ['fast @ file:///etc/passwd ; extra == "fast"\nProvides-Extra: fast']
    build_wheel(tmp_path / "own", "nice", "1.0", module_files("nice", "1.0"), requires=requires)
    with pytest.raises(InstallError, match="nice 1.0 requires 'fast @ file:///etc/passwd"):
        plan(parse_declared(["nice"]), store, index=_own_index(index, tmp_path / "own"), environ=environ)


def test_the_plan_shows_unpacked_sizes_and_refuses_past_the_cap(store, index, environ, tmp_path, monkeypatch) -> None:
    from app import depstage
    from tests.deps.builders import wheel_bytes
    from tests.redteam_deps.hostile import deflated

    own = tmp_path / "own"
    own.mkdir()
    (own / "zeros-1.0-py3-none-any.whl").write_bytes(deflated(wheel_bytes("zeros", "1.0", {"zeros/z.bin": b"\0" * (3 << 20)})))
    with plan(parse_declared(["zeros"]), store, index=_own_index(index, own), environ=environ) as p:
        [item] = p.items
        assert item.unpacked > 3 << 20 > 100 * item.size and p.total_size == item.unpacked
        assert p.lines()[0].split()[2:4] == ["3.0", "MiB"] and "3.0 MiB to install (unpacked;" in p.lines()[-1]
    monkeypatch.setattr(depstage, "MAX_UNPACKED_BYTES", 2 << 20)
    with pytest.raises(InstallError) as caught:
        plan(parse_declared(["zeros"]), store, index=_own_index(index, own), environ=environ)
    expected = "the dependencies unpack to more than 2 MiB (at zeros-1.0-py3-none-any.whl, the limit of one environment): refused"
    assert str(caught.value) == expected
    monkeypatch.setattr(depstage, "MAX_WHEEL_ENTRIES", 3)
    with pytest.raises(InstallError, match=r"^zeros-1.0-py3-none-any.whl holds \d+ files; at most 3 are allowed$"):
        plan(parse_declared(["zeros"]), store, index=_own_index(index, own), environ=environ)
    assert _leftovers(store) == []


def test_every_staged_file_is_shown_or_the_plan_is_refused(tmp_path) -> None:
    from app.depstage import PINS, staged

    stage = tmp_path / "stage"
    stage.mkdir()
    build_wheel(stage, "tinylib", "1.0", module_files("tinylib", "1.0"))
    (stage / PINS).write_text("tinylib==1.0\n")  # sandchat's own file: not pip's, not shown
    assert [i.filename for i in staged(stage, allow_build=False)] == ["tinylib-1.0-py3-none-any.whl"]
    (stage / "evil-1.0.tar.gz").write_bytes(b"")
    with pytest.raises(InstallError, match=r"^pip fetched 'evil-1.0.tar.gz', which is not a wheel: refused \(building needs --allow"):
        staged(stage, allow_build=False)
    assert [i.filename for i in staged(stage, allow_build=True)] == ["evil-1.0.tar.gz", "tinylib-1.0-py3-none-any.whl"]
    (stage / "evil-1.0.tar.gz").unlink()
    (stage / "evil.tar.gz").write_bytes(b"")  # no version: no sdist name either
    for allow_build in (False, True):
        with pytest.raises(InstallError, match="'evil.tar.gz', which is not"):
            staged(stage, allow_build=allow_build)
