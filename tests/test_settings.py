"""Settings: the environment and config.toml, read once; per-plugin deadlines; bad files are one line."""

from __future__ import annotations

from pathlib import Path

import pytest

import runner
from app.manager import PluginManager
from app.settings import Paths, SettingsError, load
from tests.helpers import sandchat

pytestmark = pytest.mark.timeout(30)


def test_paths_follow_sandchat_home_then_xdg(tmp_path: Path) -> None:
    assert Paths.from_environ({"SANDCHAT_HOME": str(tmp_path)}) == Paths(tmp_path, tmp_path)
    xdg = Paths.from_environ({"HOME": "/home/u", "XDG_DATA_HOME": "/data"})
    assert (xdg.config_dir, xdg.data_dir) == (Path("/home/u/.config/sandchat"), Path("/data/sandchat"))


def test_per_plugin_deadlines_come_from_the_settings_file_and_timeout_caps_them(home: Path) -> None:
    (home / "config.toml").write_text("[plugins.echo]\nfirst_chunk = 30\ntotal = 300\n")
    settings = load({"SANDCHAT_HOME": str(home)})
    with PluginManager(settings=settings) as manager:
        deadlines = manager.launch_config("echo").deadlines
        assert (deadlines.first_chunk, deadlines.total, deadlines.idle) == (30, 300, runner.Deadlines().idle)
    with PluginManager(settings=settings, timeout=5) as manager:
        capped = manager.launch_config("echo").deadlines
        assert (capped.first_chunk, capped.idle, capped.total) == (5, 5, 5)


def test_a_bad_deadline_names_the_plugin(home: Path) -> None:
    (home / "config.toml").write_text("[plugins.echo]\ntotal = -1\n")
    with PluginManager(settings=load({"SANDCHAT_HOME": str(home)})) as manager:
        with pytest.raises(runner.PluginUnavailable, match="plugin 'echo' has a bad deadline in the settings file"):
            manager.handle("echo")


def test_a_broken_settings_file_is_one_line(home: Path) -> None:
    (home / "config.toml").write_text("default_plugin = [unclosed\n")
    with pytest.raises(SettingsError):
        load({"SANDCHAT_HOME": str(home)})
    result = sandchat(home, "plugins", "list")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "config.toml" in result.stderr


def test_a_corrupt_grants_file_is_one_line_not_a_traceback(home: Path) -> None:
    (home / "grants.json").write_text("{not json")
    result = sandchat(home, "plugins", "list")
    assert result.returncode == 2
    assert result.stderr.startswith("sandchat: ") and "grants.json" in result.stderr and "Traceback" not in result.stderr
