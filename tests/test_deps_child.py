"""A plugin with an environment of its own, in a real sandboxed child: its import path is that
environment and the standard library, not sandchat's packages (runner/child/path.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

import runner
from runner import Deadlines, Plugin, PluginConfig, SandboxPolicy

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import importlib, json, sys
from llm_utils import LLMClient


def _try(name):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        return "ImportError"
    return getattr(module, "__version__", "imported")


class Probe(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        if user_message.startswith("path:"):  # what a plugin pointing its path at a folder finds
            sys.path.insert(0, user_message[5:])
            sys.modules.pop("tinylib", None)
        names = ["tinylib", "msgpack", "pytest", "anthropic", "app"]
        return json.dumps({name: _try(name) for name in names} | {"site": "site" in sys.modules and hasattr(sys, "ps1")})

    def count_tokens(self, text):
        return len(text.split())
"""


def _env(folder: Path, version: str) -> Path:
    """A plugin environment as pip --target leaves it: a plain folder of packages (and a .pth, which must not run)."""
    (folder / "tinylib").mkdir(parents=True)
    (folder / "tinylib" / "__init__.py").write_text(f"__version__ = {version!r}\n")
    (folder / "evil.pth").write_text(f"import os; open({str(folder / 'PTH-RAN')!r}, 'w')\n")
    return folder


def _read_paths(*extra: Path) -> list[str]:
    msgpack_dir = Path(msgpack.__file__).resolve().parent
    system = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/dev/urandom", sys.base_prefix]
    return [*system, str(msgpack_dir), str(ROOT / "llm_utils.py"), str(ROOT / "runner"), *map(str, extra)]


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[dict[str, Plugin]]:
    (tmp_path / "probe.py").write_text(PROBE)
    made = {}
    for name, version in (("a", "1.0"), ("b", "2.0")):
        env = _env(tmp_path / f"env-{name}", version)
        config = PluginConfig(
            name=name, path=tmp_path / "probe.py", scratch_dir=tmp_path / f"scratch-{name}", source=PROBE.encode(),
            sandbox=SandboxPolicy(profile="untrusted", read_paths=_read_paths(env)), deadlines=Deadlines(start=30),
            env_paths=(str(env),), runner_lib_dirs=(str(Path(msgpack.__file__).resolve().parent.parent),),
        )  # fmt: skip
        made[name] = Plugin(config)
    yield made
    for plugin in made.values():
        plugin.close()


def test_two_plugins_see_their_own_version_and_none_of_sandchats_packages(plugins: dict[str, Plugin], tmp_path: Path) -> None:
    import json

    seen = {name: json.loads(plugin.generate_response("", "what do you see?")) for name, plugin in plugins.items()}
    assert seen["a"]["tinylib"] == "1.0" and seen["b"]["tinylib"] == "2.0"
    for view in seen.values():
        # sandchat's own packages and the runner's msgpack are not the plugin's to import
        assert view["msgpack"] == view["pytest"] == view["anthropic"] == view["app"] == "ImportError"
    assert not list(tmp_path.glob("env-*/PTH-RAN")), "a .pth file in a plugin environment ran"
    assert plugins["a"].count_tokens("the runner still speaks msgpack") == 5  # the runner kept its own copy


def test_a_plugin_cannot_import_the_other_plugins_environment(plugins: dict[str, Plugin], tmp_path: Path) -> None:
    import json

    seen = json.loads(plugins["a"].generate_response("", f"path:{tmp_path / 'env-b'}"))
    assert seen["tinylib"] == "1.0"  # not 2.0: env-b is not on a's read list, so its own is found


def test_env_paths_are_checked_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runner_lib_dirs"):
        PluginConfig(name="x", path=tmp_path / "x.py", scratch_dir=tmp_path, runner_lib_dirs=("/usr",))
    config = PluginConfig(name="x", path=tmp_path / "x.py", scratch_dir=tmp_path, env_paths=(tmp_path / "env",))
    argv = config.child_argv(ROOT)
    assert argv[argv.index("--env") + 1] == os.fspath(tmp_path / "env")
    assert isinstance(runner.PluginConfig, type)
