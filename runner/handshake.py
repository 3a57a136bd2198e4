"""The start-up handshake: check a child's hello, or name why it never sent one.

The child's first frame is its sandbox report (sent by trusted code before any plugin
code runs); its first message must then be a ``hello`` notification; see
docs/protocol.md.
These functions only judge; the Connection that calls them owns the process and
kills or closes it when they raise.
"""

from __future__ import annotations

from typing import Any

from runner.constants import OPTIONAL_METHODS, PROTOCOL_VERSION, REPORT_MAGIC, SANDBOX_ERROR_MARKER, SANDBOX_EXIT
from runner.errors import PluginLoadError, PluginSandboxError, PluginStartError, PluginVersionError, stderr_suffix
from runner.process import describe_exit
from runner.protocol import Message, notification_params

__all__ = ["MAX_REPORT", "check_hello", "parse_report", "start_failure"]


#: The sandbox report frame is a few hundred bytes; anything near this is not one.
MAX_REPORT = 64 * 1024
_LAYERS = frozenset({
    "rlimits", "pdeathsig", "no-capabilities", "no_new_privs", "landlock-fs", "landlock-net", "landlock-scope", "seccomp",
})  # fmt: skip


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 20  # "²".isdigit() is True; int("²") is not


def parse_report(name: str, body: bytes, profile: str) -> dict[str, Any]:
    """The sandbox report the child's trusted code sent before any plugin code ran.

    It must be well formed and name the profile the host asked for; raises
    PluginStartError otherwise.
    """
    lines = body.decode("utf-8", "replace").split("\n")
    if lines[0] != REPORT_MAGIC:
        raise PluginStartError(name, "did not start with a sandbox report")
    report: dict[str, Any] = {"profile": "", "layers": [], "landlock_abi": 0, "limits": {}, "missing": []}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        if key == "profile":
            report["profile"] = value
        elif key == "layer" and value in _LAYERS:
            report["layers"].append(value)
        elif key == "landlock_abi" and _is_number(value) and int(value) < 1000:
            report["landlock_abi"] = int(value)
        elif key == "limit" and len(value.split()) == 2 and _is_number(value.split()[1]):
            report["limits"][value.split()[0]] = int(value.split()[1])
        elif key == "missing":
            report["missing"].append(value[:300])
        else:
            raise PluginStartError(name, f"sent a malformed sandbox report line {line[:60]!r}")
    if report["profile"] != profile:
        raise PluginStartError(name, f"reported sandbox profile {report['profile'][:40]!r}, expected {profile!r}")
    return report


def start_failure(name: str, exit_code: int | None, sig: int | None, tail: tuple[str, ...], reported: bool = False) -> PluginStartError:
    """The error for a child that exited (with ``exit_code``, or killed by ``sig``) before its hello.

    Status 78 means "the sandbox could not be applied" only when no sandbox report came
    first: after the report, plugin code may have run, and it may exit with any status.
    """
    if exit_code == SANDBOX_EXIT and not reported:
        reason = next((line.split(":", 1)[1].strip() for line in reversed(tail) if line.startswith(SANDBOX_ERROR_MARKER)), "unknown reason")
        return PluginSandboxError(
            name, f"refused to start: sandbox could not be applied: {reason}", exit_code=SANDBOX_EXIT, stderr_tail=tail
        )
    how = describe_exit(exit_code, sig)
    return PluginStartError(name, f"{how} before its hello{stderr_suffix(tail)}", exit_code=exit_code, stderr_tail=tail)


def check_hello(name: str, message: Message, stderr_tail: tuple[str, ...]) -> dict[str, Any]:
    """Return the hello in ``message``, or raise the PluginStartError that says what is wrong.

    A PluginLoadError means the child reported its own failure and exits by itself;
    any other error means the child cannot be trusted to.
    """
    hello = notification_params(message, "hello")
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
    problem = _hello_problem(hello)
    if problem:
        raise PluginStartError(name, f"sent a bad hello: {problem}")
    return hello


_MAX_WINDOW = 100_000_000  # tokens; no model has a context window near this


def _hello_problem(hello: dict[str, Any]) -> str:
    """What is wrong with a hello's fields (plugin code may have written it), or ''."""
    checks = (
        ("pid", lambda v: type(v) is int),
        ("plugin", lambda v: isinstance(v, str) and len(v) <= 200),
        ("class", lambda v: v is None or (isinstance(v, str) and len(v) <= 200)),
        ("doc", lambda v: isinstance(v, str) and len(v) <= 2000),
        ("context_window", lambda v: type(v) is int and 0 <= v <= _MAX_WINDOW),
        ("methods", lambda v: isinstance(v, list) and len(v) <= len(OPTIONAL_METHODS) and all(m in OPTIONAL_METHODS for m in v)),
        ("python", lambda v: isinstance(v, str) and len(v) <= 40),
    )
    for key, valid in checks:
        if not valid(hello.get(key)):
            return f"field {key!r} is missing or invalid"
    return ""
