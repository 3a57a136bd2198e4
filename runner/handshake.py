"""The start-up handshake: check a child's hello, or name why it never sent one.

The child's first message must be a ``hello`` notification; see docs/protocol.md.
These functions only judge; the Connection that calls them owns the process and
kills or closes it when they raise.
"""

from __future__ import annotations

from typing import Any

from runner.errors import PluginCrashed, PluginLoadError, PluginSandboxError, PluginStartError, PluginVersionError
from runner.process import describe_exit
from runner.protocol import NOTIFICATION, PROTOCOL_VERSION
from runner.stderr import last_line

__all__ = ["SANDBOX_EXIT", "check_hello", "start_failure"]

SANDBOX_EXIT = 78  # runner/child.py: the sandbox could not be applied


def start_failure(name: str, crash: PluginCrashed) -> PluginStartError:
    """The error for a child that exited before its hello."""
    tail = crash.stderr_tail
    if crash.exit_code == SANDBOX_EXIT:
        marker = "sandchat-sandbox-error:"
        reason = next((line.split(":", 1)[1].strip() for line in reversed(tail) if line.startswith(marker)), "unknown reason")
        return PluginSandboxError(name, f"refused to start: sandbox could not be applied: {reason}", exit_code=SANDBOX_EXIT, stderr_tail=tail)
    how = describe_exit(crash.exit_code, crash.signal)
    return PluginStartError(name, f"{how} before its hello{last_line(tail)}", exit_code=crash.exit_code, stderr_tail=tail)


def check_hello(name: str, message: list[Any], stderr_tail: tuple[str, ...]) -> dict[str, Any]:
    """Return the hello in ``message``, or raise the PluginStartError that says what is wrong.

    A PluginLoadError means the child reported its own failure and exits by itself;
    any other error means the child cannot be trusted to.
    """
    hello = message[2] if message[0] == NOTIFICATION and message[1] == "hello" else None
    if not isinstance(hello, dict):
        raise PluginStartError(name, "did not start with a hello message")
    version = hello.get("protocol")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise PluginVersionError(name, f"speaks protocol {version!r}, expected {PROTOCOL_VERSION}", version=version)
    error = hello.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise PluginLoadError(name, "failed to load (no details)")
        text = f"{error.get('type', 'Error')}: {error.get('message', '')}"
        raise PluginLoadError(
            name, f"failed to load: {text}", remote_type=str(error.get("type", "")),
            remote_traceback=str(error.get("traceback", "")), stderr_tail=stderr_tail,
        )  # fmt: skip
    if type(hello.get("pid")) is not int or not isinstance(hello.get("sandbox"), dict):
        raise PluginStartError(name, "sent a hello without pid or sandbox report")
    return hello
