"""Plugin dependencies through the CLI as a user runs it (issue 19): declare, fail with one line, install, load.

Every wheel and sdist is built here (tests/deps/builders.py); pip reads them with the index
off (``PIP_NO_INDEX``, ``PIP_FIND_LINKS``: the user's own index settings, which sandchat
passes to pip) under a pip configuration of nothing and a cache of the test's own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.deps.builders import build_sdist, build_wheel, module_files
from tests.helpers import sandchat

pytestmark = pytest.mark.timeout(240)

PROBE = """\
# /// plugin
# description = "reports what it can import"
# dependencies = [{deps}]
# ///
import importlib
import json
import os

import tinylib
from llm_utils import LLMClient


def _try(name):
    try:
        importlib.import_module(name)
    except ImportError:
        return "ImportError"
    return "imported"


class Probe(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        try:
            os.listdir(user_message)  # another plugin's environment
            other = "readable"
        except OSError as exc:
            other = type(exc).__name__
        found = {{name: _try(name) for name in ("pytest", "app", "anthropic", "tinydep")}}
        return json.dumps({{"tinylib": tinylib.__version__, "other": other, **found}})

    def count_tokens(self, text):
        return len(text.split())
"""


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two versions of tinylib (2.0 needs tinydep), and a library published only as source."""
    base = tmp_path_factory.mktemp("house")
    build_wheel(base, "tinylib", "1.0", module_files("tinylib", "1.0"))
    build_wheel(base, "tinylib", "2.0", module_files("tinylib", "2.0"), requires=["tinydep>=1"])
    build_wheel(base, "tinydep", "1.0", module_files("tinydep", "1.0"))
    build_sdist(base, "srconly", "1.0", module_files("srconly", "1.0"), base / "srconly-built")
    return base


@pytest.fixture
def pip_env(house: Path, tmp_path: Path) -> dict[str, str]:
    """The user's pip settings: the local folder, the index off, no configuration file of the machine's."""
    return {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(house), "PIP_CACHE_DIR": str(tmp_path / "cache")}


def _plugin(folder: Path, name: str, deps: list[str], body: str = PROBE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}_plugin.py"
    path.write_text(body.format(deps=", ".join(json.dumps(d) for d in deps)))
    return path


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_from_missing_to_working_each_plugin_with_its_own_version(tmp_path: Path, pip_env: dict[str, str]) -> None:
    home, folder = tmp_path / "home", tmp_path / "plugins"
    _plugin(folder, "a", ["tinylib==1.0"])
    _plugin(folder, "b", ["tinylib==2.0"])
    run = lambda *args: sandchat(home, "--plugins-dir", str(folder), *args, **pip_env)  # noqa: E731

    failed = run("prompt", "-p", "a", "hi")
    assert failed.returncode != 0 and failed.stdout == ""
    assert _lines(failed.stderr) == ["sandchat: plugin 'a' needs tinylib==1.0, which is not installed: run: sandchat plugins deps a"]

    listed = json.loads(run("plugins", "list", "--json").stdout)
    rows = {r["name"]: r for r in listed["plugins"]}
    assert rows["a"]["state"] == "needs deps" and rows["a"]["dependencies"]["missing"] == ["tinylib==1.0"]
    assert rows["a"]["dependencies"]["installed"] is False and "plugins deps a" in rows["a"]["problem"]
    table = run("plugins", "list").stdout
    assert "needs deps" in table  # and the reason whole, into a pipe: it ends in the command that fixes it
    assert "  ! a: plugin 'a' needs tinylib==1.0, which is not installed: run: sandchat plugins deps a\n" in table

    [health] = json.loads(run("plugins", "health", "a", "--json").stdout)
    assert health["state"] == "needs deps" and health["healthy"] is False and "plugins deps a" in health["last_error"]

    checked = run("plugins", "check", str(folder / "a_plugin.py"))
    assert checked.returncode != 0
    assert any(line.startswith("dependencies") and "FAIL" in line and "plugins deps a" in line for line in checked.stdout.splitlines())

    asked = run("plugins", "deps", "a")  # no terminal and no --yes: never installs
    assert asked.returncode != 0 and "nothing installed" in asked.stderr
    assert "tinylib 1.0" in asked.stdout and "1 file" in asked.stdout  # what it would have installed, with sizes
    assert not (home / "envs").exists() or not [p for p in (home / "envs").iterdir() if not p.name.startswith(".")]

    for name, files in (("a", "1 file"), ("b", "2 files")):
        done = run("plugins", "deps", name, "--yes")
        assert done.returncode == 0, done.stderr
        assert files in done.stdout and f"installed the dependencies of {name!r}" in done.stdout
    envs = sorted(p for p in (home / "envs").iterdir() if not p.name.startswith("."))
    assert len(envs) == 2

    replies = {}
    for name, other in (("a", envs[1]), ("b", envs[0])):
        answer = run("prompt", "-p", name, str(other / "lib"))
        assert answer.returncode == 0, answer.stderr
        replies[name] = json.loads(answer.stdout)
    assert {n: r["tinylib"] for n, r in replies.items()} == {"a": "1.0", "b": "2.0"}
    for reply in replies.values():  # sandchat's own and its test-only packages are not importable
        assert reply["pytest"] == reply["app"] == reply["anthropic"] == "ImportError"
        assert reply["other"] == "PermissionError"  # the other plugin's environment is not even readable
    assert replies["a"]["tinydep"] == "ImportError" and replies["b"]["tinydep"] == "imported"

    again = run("plugins", "deps", "a")
    assert again.returncode == 0 and "installed in" in again.stdout  # already there: no pip, no question
    rows = {r["name"]: r for r in json.loads(run("plugins", "list", "--json").stdout)["plugins"]}
    assert rows["a"]["state"] == "stopped" and rows["a"]["dependencies"]["installed"] is True and rows["a"]["problem"] is None
    [health] = json.loads(run("plugins", "health", "a", "--json").stdout)
    assert health["state"] == "ready" and health["healthy"] is True
    assert "dependencies" in run("plugins", "check", str(folder / "a_plugin.py")).stdout


def test_an_undeclared_import_fails_with_one_line_and_check_says_to_declare_it(tmp_path: Path, pip_env: dict[str, str]) -> None:
    home, folder = tmp_path / "home", tmp_path / "plugins"
    body = PROBE.replace("# dependencies = [{deps}]\n", "").replace("{{", "{").replace("}}", "}")
    folder.mkdir()
    (folder / "u_plugin.py").write_text(body)
    failed = sandchat(home, "--plugins-dir", str(folder), "prompt", "-p", "u", "hi", **pip_env)
    assert failed.returncode != 0
    assert len(_lines(failed.stderr)) == 1 and "plugin 'u'" in failed.stderr and "tinylib" in failed.stderr
    checked = sandchat(home, "plugins", "check", str(folder / "u_plugin.py"), **pip_env)
    assert "declare the library it comes from in the metadata block" in checked.stdout
    assert "sandchat plugins deps u" in checked.stdout


def test_an_sdist_only_requirement_is_refused_without_allow_build_and_builds_nothing(
    tmp_path: Path, pip_env: dict[str, str], house: Path
) -> None:
    home, folder = tmp_path / "home", tmp_path / "plugins"
    _plugin(folder, "s", ["srconly"])
    marker = house / "srconly-built"
    refused = sandchat(home, "--plugins-dir", str(folder), "plugins", "deps", "s", "--yes", **pip_env)
    assert refused.returncode != 0 and not marker.exists()
    assert _lines(refused.stderr) == [
        "sandchat: plugin 's': cannot resolve srconly: srconly is available only as source (an sdist), not as a wheel; "
        "building runs the package's code outside the sandbox: rerun with --allow-build if you trust it"
    ]
    assert not [p for p in (home / "envs").iterdir() if p.name != ".lock"]  # no environment, no staging left


def test_requires_python_this_interpreter_lacks_is_one_line_with_no_install_advice(tmp_path: Path, pip_env: dict[str, str]) -> None:
    home, folder = tmp_path / "home", tmp_path / "plugins"
    path = _plugin(folder, "future", ["tinylib==1.0"])
    path.write_text(path.read_text().replace("# ///\nimport", '# requires-python = ">=4"\n# ///\nimport', 1))
    failed = sandchat(home, "--plugins-dir", str(folder), "prompt", "-p", "future", "hi", **pip_env)
    assert failed.returncode != 0
    [line] = _lines(failed.stderr)
    assert line.startswith("sandchat: plugin 'future' requires Python >=4; this is Python 3.") and "plugins deps" not in line
    deps = sandchat(home, "--plugins-dir", str(folder), "plugins", "deps", "future", "--yes", **pip_env)
    assert deps.returncode != 0 and "requires Python >=4" in deps.stderr and not (home / "envs").exists()


def test_install_brings_the_dependencies_and_remove_and_prune_delete_unused_environments(tmp_path: Path, pip_env: dict[str, str]) -> None:
    home = tmp_path / "home"
    source = _plugin(tmp_path / "download", "probe", ["tinylib==1.0"])
    installed = sandchat(home, "plugins", "install", str(source), "--yes", **pip_env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "tinylib 1.0" in installed.stdout and "installed 'probe'" in installed.stdout
    assert "dependencies" in installed.stdout and "loads in the sandbox" in installed.stdout
    [env] = [p for p in (home / "envs").iterdir() if not p.name.startswith(".")]
    users = json.loads((env / "manifest.json").read_text())["plugins"]
    assert users == [{"plugin": "probe", "path": str(home / "plugins" / "probe_plugin.py")}]
    answer = sandchat(home, "prompt", "-p", "probe", "/nonexistent", **pip_env)
    assert answer.returncode == 0 and json.loads(answer.stdout)["tinylib"] == "1.0"

    removed = sandchat(home, "plugins", "remove", "probe", **pip_env)
    assert removed.returncode == 0 and f"removed the dependency environment no plugin uses any more: {env}" in removed.stdout
    assert not env.exists()

    other = _plugin(tmp_path / "elsewhere", "gone", ["tinylib==2.0"])
    assert sandchat(home, "--plugins-dir", str(other.parent), "plugins", "deps", "gone", "--yes", **pip_env).returncode == 0
    kept = sandchat(home, "plugins", "deps", "--prune", **pip_env)  # its file still exists: kept though not discovered now
    assert kept.returncode == 0 and kept.stdout == "no unused environment\n"
    other.unlink()
    pruned = sandchat(home, "plugins", "deps", "--prune", **pip_env)
    assert pruned.returncode == 0 and pruned.stdout.startswith("removed unused environment ")
    assert not [p for p in (home / "envs").iterdir() if not p.name.startswith(".")]


def test_prune_says_in_one_line_which_folders_it_left(tmp_path: Path, pip_env: dict[str, str]) -> None:
    home = tmp_path / "home"
    (home / "envs" / "photos").mkdir(parents=True)
    (home / "envs" / "music").mkdir()
    pruned = sandchat(home, "plugins", "deps", "--prune", **pip_env)
    assert pruned.returncode == 0, pruned.stderr
    envs = home / "envs"
    assert pruned.stdout == f"no unused environment\nleft 2 folders in {envs} that sandchat did not make (no manifest): music, photos\n"
    assert (envs / "photos").is_dir() and (envs / "music").is_dir()


def test_install_answered_no_installs_nothing_at_all(tmp_path: Path, pip_env: dict[str, str]) -> None:
    home = tmp_path / "home"
    source = _plugin(tmp_path / "download", "probe", ["tinylib==1.0"])
    refused = sandchat(home, "plugins", "install", str(source), **pip_env)  # no terminal: the question is a no
    assert refused.returncode != 0 and "nothing installed" in refused.stderr and "nothing was copied" in refused.stderr
    assert not (home / "plugins" / "probe_plugin.py").exists()
    assert not [p for p in (home / "envs").iterdir() if not p.name.startswith(".")]


def test_the_guide_example_goes_from_failure_to_working(tmp_path: Path, pip_env: dict[str, str]) -> None:
    """docs/plugin-guide.md's `yourlib` plugin, as printed there, with a your-llm-library wheel built here."""
    from tests.test_plugin_guide import PLUGINS

    [body] = [body for name, _, body in PLUGINS if name == "yourlib_plugin.py"]
    folder, house = tmp_path / "plugins", tmp_path / "house"
    folder.mkdir()
    (folder / "yourlib_plugin.py").write_text(body)
    library = """\
__version__ = "1.2"


class _Reply:
    def __init__(self, text):
        self.text = text


class Client:
    def generate(self, system_prompt, user_input, max_length, temperature):
        return _Reply(f"your_llm_library {__version__} answers: {user_input}")

    def count_tokens(self, text):
        return len(text.split())
"""
    build_wheel(house, "your-llm-library", "1.2", {"your_llm_library/__init__.py": library})
    env = {**pip_env, "PIP_FIND_LINKS": str(house)}
    run = lambda *args: sandchat(tmp_path / "home", "--plugins-dir", str(folder), *args, **env)  # noqa: E731

    failed = run("prompt", "-p", "yourlib", "hello")
    hint = "sandchat: plugin 'yourlib' needs your-llm-library>=1.2, which is not installed: run: sandchat plugins deps yourlib"
    assert failed.returncode != 0 and _lines(failed.stderr) == [hint]
    installed = run("plugins", "deps", "yourlib", "--yes")
    assert installed.returncode == 0, installed.stderr
    assert "your-llm-library 1.2" in installed.stdout and "wheel" in installed.stdout
    answer = run("prompt", "-p", "yourlib", "hello")
    assert (answer.returncode, answer.stdout, answer.stderr) == (0, "your_llm_library 1.2 answers: hello\n", "")
    assert "all checks passed" in run("plugins", "check", str(folder / "yourlib_plugin.py")).stdout


def test_plugins_new_declares_dependencies_and_the_stub_passes_check_once_they_are_installed(
    tmp_path: Path, pip_env: dict[str, str]
) -> None:
    home = tmp_path / "home"
    made = sandchat(home, "plugins", "new", "mine", "--dependency", 'TinyLib==1.0; python_version >= "3"', **pip_env)
    assert made.returncode == 0, made.stderr
    assert 'install what it declares (tinylib==1.0; python_version >= "3"):  sandchat plugins deps mine' in made.stdout
    path = home / "plugins" / "mine_plugin.py"
    assert '# dependencies = ["tinylib==1.0; python_version >= \\"3\\""]' in path.read_text()  # valid TOML: quotes escaped
    before = sandchat(home, "plugins", "check", str(path), **pip_env)
    assert before.returncode == 1 and "it cannot load until its dependencies are installed" in before.stdout
    assert sandchat(home, "plugins", "deps", "mine", "--yes", **pip_env).returncode == 0
    after = sandchat(home, "plugins", "check", str(path), **pip_env)
    assert after.returncode == 0 and "all checks passed" in after.stdout
    refused = sandchat(home, "plugins", "new", "bad", "--dependency", "x >>= 1", **pip_env)
    assert refused.returncode == 2 and _lines(refused.stderr)[0].startswith("sandchat: dependencies entry 'x >>= 1' is not a PEP 508")
