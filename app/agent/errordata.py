"""Agent error data: a runner exception as it crosses the agent's wire, and rebuilt as the same class.

The agent never pickles: an error travels as its class name, plugin, message and the
plain attributes the runner's classes keep (``reason``, ``phase``, ``seconds``,
``exit_code``, ``signal``, ``remote_type``, ``remote_traceback``, ``refused``, ``chars``,
``stderr_tail``). The client rebuilds an instance of the runner class of that name (only
``PluginError`` subclasses the runner exports; anything else is a ``PluginError``), so
``except`` clauses, exit statuses, hints and error lines are what the direct call gives.
"""

from __future__ import annotations

from typing import Any

import runner

#: The attributes of runner errors worth carrying, each a JSON scalar (or, for the tail, a list of str).
_CARRIED = ("reason", "phase", "seconds", "exit_code", "signal", "remote_type", "remote_traceback", "refused", "chars", "version")


def error_data(exc: runner.PluginError) -> dict[str, Any]:
    """``exc`` as JSON data."""
    attrs = {key: getattr(exc, key) for key in _CARRIED if hasattr(exc, key) and _scalar(getattr(exc, key))}
    return {
        "type": type(exc).__name__,
        "plugin": exc.plugin,
        "message": exc.message,
        "attrs": attrs,
        "stderr_tail": [line for line in exc.stderr_tail if isinstance(line, str)],
    }


def error_from(data: Any, plugin: str) -> runner.PluginError:
    """The exception ``error_data`` described, of the same runner class; ``plugin`` names it if the data does not."""
    if not isinstance(data, dict):
        return runner.PluginProtocolError(plugin, "the sandchat agent sent an error that is not one")
    cls = _runner_class(data.get("type"))
    exc = cls.__new__(cls)
    name, message = data.get("plugin"), data.get("message")
    name = name if isinstance(name, str) else plugin
    message = message if isinstance(message, str) else "failed in the sandchat agent"
    tail = tuple(line for line in data.get("stderr_tail") or () if isinstance(line, str))
    # The root's __init__ alone: the subclasses' signatures differ, their extra fields are set below.
    runner.PluginError.__init__(exc, name, message, stderr_tail=tail)
    attrs = data.get("attrs")
    for key, value in attrs.items() if isinstance(attrs, dict) else ():
        if key in _CARRIED and _scalar(value):
            setattr(exc, key, value)
    return exc


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _runner_class(name: Any) -> type[runner.PluginError]:
    if isinstance(name, str) and name in runner.__all__:
        found = getattr(runner, name)
        if isinstance(found, type) and issubclass(found, runner.PluginError):
            return found
    return runner.PluginError
