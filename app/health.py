"""Health probes: start a plugin if needed, ping it, count tokens, ask if it is ready; one dict.

:func:`probe` describes one plugin, :func:`probe_all` several (``plugins health`` and
the chat's ``/health``), and :func:`health_text` turns the dicts into the table and
detail lines both print.

Liveness (the process starts and answers: ``healthy``) and readiness (the plugin can
answer a prompt now, by its own ``check()``: ``ready``, ``not_ready``) are separate:
a live plugin without its API key is healthy and not ready.

The dict's keys are stable: ``plugins health --json`` prints these objects and the
README documents them.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import runner
from app.access import access_of
from app.policy import MissingDependencies
from app.refusals import Disabled
from app.render import fit, table, terminal_width
from runner import clean_text

if TYPE_CHECKING:
    from app.manager import PluginManager

__all__ = ["HEALTH_KEYS", "RUNTIME_KEYS", "Remote", "blank", "health_text", "probe", "probe_all", "probe_handle"]

HEALTH_KEYS = (
    "name", "state", "healthy", "ready", "not_ready", "counting", "pid", "profile", "layers", "missing_layers", "network", "env",
    "uptime_s", "startup_ms", "ping_ms", "probe_tokens", "calls", "errors", "timeouts", "restarts",
    "rss_bytes", "memory_bytes", "cgroup", "last_error", "stderr_tail", "path", "description", "class", "doc",
    "crashes_24h", "restarts_24h", "deadlines_24h", "quarantines_24h",
    "connections_24h", "refused_24h", "recent_connections", "recent_refused",
)  # fmt: skip
_RECENT = 3  # endpoints named per kind: the newest, each once
_PROBE_TEXT = "sandchat health probe: héllo wörld ✓"


def blank(name: str) -> dict[str, Any]:
    report: dict[str, Any] = dict.fromkeys(HEALTH_KEYS)
    report.update(name=name, healthy=False, not_ready="", counting="", layers=[], missing_layers=[], network=[], env=[], stderr_tail=[])
    report.update(calls=0, errors=0, timeouts=0, restarts=0, last_error="", recent_connections=[], recent_refused=[])
    return report


#: Probes plugin ``name``'s handle somewhere else (the sandchat agent, where it is warm) and returns
#: the report's runtime part; None when it could not be handed over (then the probe runs here).
Remote = Callable[[runner.Plugin], "dict[str, Any] | None"]


def probe(manager: PluginManager, name: str, remote: Remote | None = None) -> dict[str, Any]:
    """Probe plugin ``name`` and describe it; never raises for a plugin's failure."""
    report = blank(name)
    try:
        _probe(manager, name, report, remote)
    finally:  # read after the probe, so a crash the probe itself caused is counted
        counts = manager.events.counts(name)
        report.update(
            crashes_24h=counts.get("crashed", 0) + counts.get("start_failed", 0),
            restarts_24h=counts.get("restarting", 0),
            deadlines_24h=counts.get("deadline", 0),
            quarantines_24h=counts.get("quarantined", 0),
            connections_24h=counts.get("network_connected", 0),
            refused_24h=counts.get("network_refused", 0),
        )
        if counts.get("network_connected") or counts.get("network_refused"):
            report.update(_recent_endpoints(manager, name))
    return report


def probe_all(manager: PluginManager, names: Iterable[str] | None = None, remote: Remote | None = None) -> list[dict[str, Any]]:
    """Start, ping and probe each plugin (every discovered one by default); one dict each (``plugins health --json``)."""
    return [probe(manager, name, remote) for name in (list(names) if names is not None else manager.names())]


def _recent_endpoints(manager: PluginManager, name: str) -> dict[str, list[str]]:
    """The newest endpoints the host connected the plugin to, and refused it, from the health log."""
    recent: dict[str, list[str]] = {"recent_connections": [], "recent_refused": []}
    for event in reversed(manager.events.events(name, limit=500)):
        key = {"network_connected": "recent_connections", "network_refused": "recent_refused"}.get(event["event"])
        endpoint = str(event.get("endpoint", ""))
        if key and endpoint and endpoint not in recent[key] and len(recent[key]) < _RECENT:
            recent[key].append(endpoint)
    return recent


def _probe(manager: PluginManager, name: str, report: dict[str, Any], remote: Remote | None) -> None:
    try:
        plugin_file = manager.plugin_file(name)
        report.update(path=str(plugin_file.path), description=plugin_file.metadata.description)
        access = access_of(plugin_file, manager.grants)
        report.update(profile=access.profile, network=list(access.network), env=list(access.env))
        handle = manager.handle(name)
    except runner.PluginError as exc:
        state = "disabled" if isinstance(exc, Disabled) else "needs deps" if isinstance(exc, MissingDependencies) else "failed"
        report.update(state=state, last_error=str(exc))
        return
    found = remote(handle) if remote is not None else None
    if found is None:
        probe_handle(handle, report)
    else:
        granted = report["profile"]  # the grant's, unless the child's hello says which it runs
        report.update({key: found[key] for key in RUNTIME_KEYS if key in found})
        report["profile"] = report["profile"] or granted


#: The part of a report a probe of the handle fills (the rest is the host's: files, grants, the health log).
RUNTIME_KEYS = (
    "state", "healthy", "ready", "not_ready", "counting", "pid", "profile", "layers", "missing_layers", "uptime_s", "startup_ms",
    "ping_ms", "probe_tokens", "calls", "errors", "timeouts", "restarts", "rss_bytes", "memory_bytes", "cgroup", "last_error",
    "stderr_tail", "class", "doc",
)  # fmt: skip


def probe_handle(handle: runner.Plugin, report: dict[str, Any]) -> None:
    """Start (if needed), ping, count and ask ``handle`` if it is ready, and fill ``report``'s runtime part."""
    failure: runner.PluginError | None = None
    try:
        handle.start()  # start-up is reported on its own; the ping measures a warm round trip
        report["ping_ms"] = round(handle.ping() * 1000, 3)
        report["probe_tokens"] = handle.count_tokens(_PROBE_TEXT)
        report["healthy"] = True
        readiness = handle.readiness()
        report.update(ready=readiness.ready, not_ready=readiness.reason, counting=readiness.counting)
    except runner.PluginError as exc:
        report["last_error"] = str(exc)
        if report["healthy"]:  # alive, but its check() failed: that is a reason too
            report.update(ready=False, not_ready=str(exc))
        failure = exc
    report["state"] = "needs deps" if isinstance(failure, MissingDependencies) else handle.state  # as plugins list says it
    _fill_runtime(report, handle)


def _optional_layers() -> list[str]:
    """Optional layers sandchat does not apply, said plainly rather than assumed."""
    import shutil

    if shutil.which("bwrap"):
        return ["bubblewrap (installed, but sandchat does not use it yet)"]
    return ["bubblewrap (optional; not installed)"]


def _strings(value: object) -> list[str]:
    """A list of strings from what the child claimed: its hello is plugin-controlled (any type)."""
    return [str(item) for item in value] if isinstance(value, (list, tuple)) else []


def _fill_runtime(report: dict[str, Any], handle: runner.Plugin) -> None:
    handle.network_use()  # its connections and refusals are in the health log before it is read
    stats = handle.stats
    hello = handle.hello
    sandbox = hello.get("sandbox") or {}
    uptime = handle.uptime()
    contained = handle.containment()  # the host's facts, beside what the child reported
    cage = [f"cgroup ({contained['cgroup']})"] if contained.get("cgroup") else []
    if handle.config.sandbox.brokered:
        cage.append("egress-broker")  # the host makes its connections, for granted names only
    uncaged = [f"cgroup: {contained['cgroup_missing']}"] if contained.get("cgroup_missing") else []
    report.update(
        pid=handle.pid,
        layers=_strings(sandbox.get("layers")) + cage,
        missing_layers=_strings(sandbox.get("missing")) + uncaged + _optional_layers(),
        uptime_s=round(uptime, 3) if uptime is not None else None,
        startup_ms=round(stats.startup_seconds * 1000, 1) if stats.startup_seconds is not None else None,
        calls=stats.calls,
        errors=stats.errors,
        timeouts=stats.timeouts,
        restarts=max(0, stats.starts - 1),
        rss_bytes=runner.resident_bytes(handle.pid) if handle.pid else None,
        memory_bytes=contained.get("memory_bytes"),
        cgroup=contained.get("cgroup"),
        last_error=report["last_error"] or stats.last_error,
        stderr_tail=list(handle.stderr_tail(5)),
    )
    report["class"] = str(hello["class"]) if hello.get("class") else None
    report["doc"] = str(hello.get("doc") or "")
    if sandbox.get("profile"):
        report["profile"] = str(sandbox["profile"])


# -- the table ------------------------------------------------------------------------------


def _whole(text: str, width: int) -> list[str]:
    """``text`` cleaned and wrapped to ``width``, continuation lines indented: nothing cut off."""
    text = clean_text(text, keep_newlines=False)
    return textwrap.wrap(text, width, subsequent_indent="      ", break_on_hyphens=False, break_long_words=False) or [""]


def health_text(reports: list[dict[str, Any]], as_json: bool, width: int | None = None) -> str:
    """The health table and each plugin's detail lines, fitted to ``width`` (default: the terminal's)."""
    if as_json:
        return json.dumps(reports, indent=2)
    width = width or terminal_width()
    cut = width - 1  # the detail lines: one column short, so a terminal never wraps them
    rows = [
        [r["name"], r["state"], _ready(r), r["pid"] or "-", _ms(r["ping_ms"]),
         _mib(r["memory_bytes"] if r["memory_bytes"] is not None else r["rss_bytes"]),
         f"{r['crashes_24h'] + r['deadlines_24h']}/{r['restarts_24h']}", r["profile"] or "-"]
        for r in reports
    ]  # fmt: skip
    lines = [table(rows, ["NAME", "STATE", "READY", "PID", "PING", "MEMORY", "F/R 24H", "PROFILE"], width=width)]
    for r in reports:
        prefix = f"plugin {r['name']!r} "
        if r["not_ready"] and r["not_ready"] != r["last_error"]:
            lines.append(fit(f"  {r['name']}: not ready: {_unprefixed(r['not_ready'], prefix)}", cut))
        if r["last_error"]:
            error = r["last_error"][len(prefix) :] if r["last_error"].startswith(prefix) else r["last_error"]
            lines.extend(_whole(f"  {r['name']}: {error}", cut))  # whole: it may end in the command that fixes it
        missing = [m for m in r["missing_layers"] if not m.startswith("bubblewrap")]  # optional: JSON only
        if r["class"]:
            doc = clean_text(r["doc"] or "").strip().split("\n", 1)[0]  # cleaned first: U+2028 ends a line too
            lines.append(fit(f"  {r['name']}: class {r['class']}" + (f": {doc}" if doc else ""), cut))
        if r["layers"]:
            lines.append(fit(f"  {r['name']}: {' '.join(_short_layers(r['layers']))}", cut))
        if r["counting"]:
            lines.append(fit(f"  {r['name']}: counts tokens: {r['counting']}", cut))
        if r["network"] or r["env"]:
            lines.append(fit(f"  {r['name']}: granted {', '.join(r['network'] + r['env'])}", cut))
        if r["connections_24h"] or r["refused_24h"]:
            lines.append(fit(f"  {r['name']}: network 24h: {_network_use(r)}", cut))
        if r["layers"] and missing:
            lines.append(fit(f"  {r['name']}: sandbox missing {', '.join(missing)}", cut))
        lines.extend(fit(f"  {r['name']} stderr| {line}", cut) for line in r["stderr_tail"][-3:] if not r["healthy"])
    return "\n".join(lines)


def _network_use(report: dict[str, Any]) -> str:
    """'12 connections (api.anthropic.com:443); 2 refused (evil.example:443, 10.0.0.1:80)'."""
    parts = []
    for count, recent, noun in ((report["connections_24h"], report["recent_connections"], "connection"),
                                (report["refused_24h"], report["recent_refused"], "refused")):  # fmt: skip
        if count:
            label = f"{count} {noun}{'s' if count != 1 and noun == 'connection' else ''}"
            parts.append(f"{label} ({', '.join(recent)})" if recent else label)
    return "; ".join(parts)


def _ready(report: dict[str, Any]) -> str:
    return {True: "yes", False: "no"}.get(report["ready"], "-")  # the reason follows, on its own line


def _unprefixed(text: str, prefix: str) -> str:
    return text[len(prefix) :] if text.startswith(prefix) else text


_SHORT = {
    "no-capabilities": "no-caps",
    "no_new_privs": "nnp",
    "cgroup (cgroup1)": "cgroup-v1",
    "cgroup (cgroup2)": "cgroup-v2",
    "cgroup (systemd-scope)": "cgroup-scope",
}
_FIRST = ("landlock", "seccomp", "cgroup")  # the layers a reader looks for, before the rest


def _short_layers(layers: list[str]) -> list[str]:
    """Applied sandbox layers, short: 'landlock(fs,net,scope) seccomp cgroup-v1 rlimits ... no-caps nnp'."""
    landlock = [layer.split("-", 1)[1] for layer in layers if layer.startswith("landlock-")]
    rest = [_SHORT.get(layer, layer) for layer in layers if not layer.startswith("landlock-")]
    folded = ([f"landlock({','.join(landlock)})"] if landlock else []) + rest
    return sorted(folded, key=lambda layer: next((i for i, p in enumerate(_FIRST) if layer.startswith(p)), len(_FIRST)))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}MiB"
