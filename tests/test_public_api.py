"""The public surfaces are small and pinned: changing them is a deliberate act."""

from __future__ import annotations

import pytest

import app
import runner

pytestmark = pytest.mark.timeout(10)


def test_runner_all_is_sorted_and_exported() -> None:
    assert runner.__all__ == sorted(runner.__all__)
    assert all(hasattr(runner, name) for name in runner.__all__)


def test_runner_surface_is_pinned() -> None:
    assert set(runner.__all__) == {
        "CancelToken", "DEFAULT_MAX_REPLY", "MAX_SOURCE", "PROFILES", "PROTOCOL_VERSION", "Deadlines", "EgressUse", "Endpoint",
        "EndpointError", "Limits", "Plugin", "PluginCancelled", "PluginConfig", "Proxies", "parse_endpoint", "proxies_from",
        "PluginCrashed", "PluginError", "PluginLoadError", "PluginProtocolError", "PluginRaised",
        "PluginResultError", "PluginSandboxError", "PluginStartError", "PluginStartTimeout", "PluginStats",
        "PluginTimeout", "PluginUnavailable", "PluginVersionError", "Readiness", "RestartPolicy", "STATES", "SandboxPolicy", "Stream",
        "StreamCleaner", "clean_text",
        "fork_session", "harden_host", "resident_bytes", "spawn_companion", "spawn_detached", "stop_companion", "stop_detached",
        "LOG_HOST", "LOG_PREFIX", "LOG_TIME_FORMAT", "STDOUT_TAG",
    }  # fmt: skip


def test_runner_names_load_on_first_use() -> None:
    """``runner.cleantext`` (which all output needs) comes without the process machinery."""
    import importlib
    import subprocess
    import sys

    probe = "import sys, runner.cleantext; print(sorted(m for m in sys.modules if m.startswith('runner')))"
    light = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert light.stdout.split() == ["['runner',", "'runner.cleantext']"], light.stderr
    assert runner.StreamCleaner is importlib.import_module("runner.cleantext").StreamCleaner
    assert runner.PluginError is importlib.import_module("runner.errors").PluginError


def test_app_surface_is_the_manager() -> None:
    assert app.__all__ == ["PluginManager"]
    from app.manager import PluginManager

    assert app.PluginManager is PluginManager


def test_every_error_is_a_plugin_error_with_a_docstring() -> None:
    errors = [
        getattr(runner, n)
        for n in runner.__all__
        if n.startswith("Plugin") and n.endswith(("Error", "Crashed", "Timeout", "Raised", "Cancelled", "Unavailable"))
    ]
    for cls in errors:
        assert issubclass(cls, runner.PluginError)
        assert (cls.__doc__ or "").startswith("Raised when"), cls


def test_host_handle_is_an_llmclient() -> None:
    from llm_utils import LLMClient

    assert issubclass(runner.Plugin, LLMClient)
