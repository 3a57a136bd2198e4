"""Live reload: a running PluginManager picks up new, changed and deleted plugin files."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app import PluginManager
from app.manager import Changes
from tests.conftest import FAST

pytestmark = pytest.mark.timeout(60)

PLUGIN = """
from llm_utils import LLMClient


class Versioned(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        return "{answer}"

    def count_tokens(self, text):
        return 1
"""


def write(path: Path, answer: str) -> None:
    path.write_text(PLUGIN.format(answer=answer))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "live"
    path.mkdir()
    return path


def test_watch_sees_a_new_a_changed_and_a_deleted_file_within_a_second(folder: Path, home: Path) -> None:
    seen: list[Changes] = []
    event = threading.Event()

    def on_change(changes: Changes) -> None:
        seen.append(changes)
        event.set()

    with PluginManager([folder], home, deadlines=FAST) as manager:
        manager.watch(on_change, interval=0.1)
        write(folder / "fresh_plugin.py", "version one")
        assert event.wait(1.0), "a new file was not noticed within a second"
        assert seen[-1].added == ("fresh",)
        client = manager.handle("fresh")
        assert client.generate_response("", "x") == "version one"
        old_pid = client.pid

        event.clear()
        write(folder / "fresh_plugin.py", "version two, longer")
        assert event.wait(1.0), "a changed file was not noticed within a second"
        assert seen[-1].changed == ("fresh",)
        assert not client.running  # the old process is stopped at once ...
        renewed = manager.handle("fresh")
        assert renewed.generate_response("", "x") == "version two, longer"  # ... and the new file runs
        assert renewed.pid != old_pid

        event.clear()
        (folder / "fresh_plugin.py").unlink()
        assert event.wait(1.0), "a deleted file was not noticed within a second"
        assert seen[-1].removed == ("fresh",)
        assert "fresh" not in manager.names() and not renewed.running


def test_client_notices_a_changed_file_without_a_watcher(folder: Path, home: Path) -> None:
    write(folder / "quiet_plugin.py", "before")
    with PluginManager([folder], home, deadlines=FAST) as manager:
        assert manager.handle("quiet").generate_response("", "x") == "before"
        write(folder / "quiet_plugin.py", "after the edit")
        assert manager.handle("quiet").generate_response("", "x") == "after the edit"


def test_a_fixed_plugin_loads_after_its_file_changes(folder: Path, home: Path) -> None:
    from runner import PluginLoadError

    (folder / "broken_plugin.py").write_text("this is not python\n")
    with PluginManager([folder], home, deadlines=FAST) as manager:
        with pytest.raises(PluginLoadError):
            manager.handle("broken").count_tokens("x")
        with pytest.raises(PluginLoadError):  # unchanged file: fails fast, same error
            manager.handle("broken").count_tokens("x")
        write(folder / "broken_plugin.py", "repaired")
        assert manager.handle("broken").generate_response("", "x") == "repaired"
