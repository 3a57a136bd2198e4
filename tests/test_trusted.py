"""llm_plugins/TRUSTED pins the content hash of every shipped plugin.

A shipped plugin runs with the permissions it requests only while its file matches
this list; editing a shipped plugin therefore means updating TRUSTED on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.access import access_of
from app.grants import file_sha256
from app.manager import SHIPPED_DIR, PluginManager

pytestmark = pytest.mark.timeout(30)


def expected_trusted() -> str:
    lines = [f"{file_sha256(path)}  {path.name}" for path in sorted(SHIPPED_DIR.glob("*_plugin.py"))]
    return "# sha256  file — shipped plugins trusted with what they request\n" + "\n".join(lines) + "\n"


def test_trusted_lists_every_shipped_plugin_as_it_is() -> None:
    actual = (SHIPPED_DIR / "TRUSTED").read_text(encoding="utf-8")
    assert actual == expected_trusted(), "llm_plugins/TRUSTED is stale; its content should be:\n" + expected_trusted()


def test_a_modified_shipped_plugin_loses_its_trust(tmp_path: Path, home: Path) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for name in ("claude_plugin.py", "TRUSTED"):
        (shipped / name).write_bytes((SHIPPED_DIR / name).read_bytes())
    with PluginManager(home=home, shipped_dir=shipped) as manager:
        access = access_of(manager.plugin_file("claude"), manager.grants)
        assert (access.profile, access.network) == ("network", ("api.anthropic.com:443",))
        assert "ANTHROPIC_API_KEY" in access.env
    with open(shipped / "claude_plugin.py", "a") as f:
        f.write("\n# a local edit\n")
    with PluginManager(home=home, shipped_dir=shipped) as manager:
        access = access_of(manager.plugin_file("claude"), manager.grants)
        assert (access.profile, access.grant) == ("untrusted", None)
        config = manager.launch_config("claude")
        assert config.sandbox.profile == "untrusted" and "ANTHROPIC_API_KEY" not in config.env
