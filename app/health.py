"""Health probes: start a plugin if needed, ping it, count tokens, ask if it is ready; one dict.

Liveness (the process starts and answers: ``healthy``) and readiness (the plugin can
answer a prompt now, by its own ``check()``: ``ready``, ``not_ready``) are separate:
a live plugin without its API key is healthy and not ready.

The dict's keys are stable: ``plugins health --json`` prints these objects and the
README documents them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import runner

if TYPE_CHECKING:
    from app.manager import PluginManager

__all__ = ["HEALTH_KEYS", "probe"]

HEALTH_KEYS = (
    "name", "state", "healthy", "ready", "not_ready", "counting", "pid", "profile", "layers", "missing_layers", "network", "env",
    "uptime_s", "startup_ms", "ping_ms", "probe_tokens", "calls", "errors", "timeouts", "restarts",
    "rss_bytes", "memory_bytes", "cgroup", "last_error", "stderr_tail", "path", "description", "class", "doc",
    "crashes_24h", "restarts_24h", "deadlines_24h", "quarantines_24h",
    "connections_24h", "refused_24h", "recent_connections", "recent_refused",
)  # fmt: skip
_RECENT = 3  # endpoints named per kind: the newest, each once
_PROBE_TEXT = "sandchat health probe: héllo wörld ✓"


def _blank(name: str) -> dict[str, Any]:
    report: dict[str, Any] = dict.fromkeys(HEALTH_KEYS)
    report.update(name=name, healthy=False, not_ready="", counting="", layers=[], missing_layers=[], network=[], env=[], stderr_tail=[])
    report.update(calls=0, errors=0, timeouts=0, restarts=0, last_error="", recent_connections=[], recent_refused=[])
    return report


def probe(manager: PluginManager, name: str) -> dict[str, Any]:
    """Probe plugin ``name`` and describe it; never raises for a plugin's failure."""
    report = _blank(name)
    try:
        _probe(manager, name, report)
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


def _recent_endpoints(manager: PluginManager, name: str) -> dict[str, list[str]]:
    """The newest endpoints the host connected the plugin to, and refused it, from the health log."""
    recent: dict[str, list[str]] = {"recent_connections": [], "recent_refused": []}
    for event in reversed(manager.events.events(name, limit=500)):
        key = {"network_connected": "recent_connections", "network_refused": "recent_refused"}.get(event["event"])
        endpoint = str(event.get("endpoint", ""))
        if key and endpoint and endpoint not in recent[key] and len(recent[key]) < _RECENT:
            recent[key].append(endpoint)
    return recent


def _probe(manager: PluginManager, name: str, report: dict[str, Any]) -> None:
    try:
        plugin_file = manager.plugin_file(name)
        report.update(path=str(plugin_file.path), description=plugin_file.metadata.description)
        access = manager.access(plugin_file)
        report.update(profile=access.profile, network=list(access.network), env=list(access.env))
        client = manager.client(name)
    except runner.PluginUnavailable as exc:
        report.update(state="disabled" if exc.reason == "disabled" else "failed", last_error=str(exc))
        return
    except runner.PluginError as exc:
        report.update(state="failed", last_error=str(exc))
        return
    try:
        client.start()  # start-up is reported on its own; the ping measures a warm round trip
        report["ping_ms"] = round(client.ping() * 1000, 3)
        report["probe_tokens"] = client.count_tokens(_PROBE_TEXT)
        report["healthy"] = True
        readiness = client.readiness()
        report.update(ready=readiness.ready, not_ready=readiness.reason, counting=readiness.counting)
    except runner.PluginError as exc:
        report["last_error"] = str(exc)
        if report["healthy"]:  # alive, but its check() failed: that is a reason too
            report.update(ready=False, not_ready=str(exc))
    report["state"] = client.state
    _fill_runtime(report, client)


def _optional_layers() -> list[str]:
    """Optional layers sandchat does not apply, said plainly rather than assumed."""
    import shutil

    if shutil.which("bwrap"):
        return ["bubblewrap (installed, but sandchat does not use it yet)"]
    return ["bubblewrap (optional; not installed)"]


def _strings(value: object) -> list[str]:
    """A list of strings from what the child claimed: its hello is plugin-controlled (any type)."""
    return [str(item) for item in value] if isinstance(value, (list, tuple)) else []


def _fill_runtime(report: dict[str, Any], client: runner.Plugin) -> None:
    client.network_use()  # its connections and refusals are in the health log before it is read
    stats = client.stats
    hello = client.hello
    sandbox = hello.get("sandbox") or {}
    uptime = client.uptime()
    contained = client.containment()  # the host's facts, beside what the child reported
    cage = [f"cgroup ({contained['cgroup']})"] if contained.get("cgroup") else []
    if client.config.sandbox.brokered:
        cage.append("egress-broker")  # the host makes its connections, for granted names only
    uncaged = [f"cgroup: {contained['cgroup_missing']}"] if contained.get("cgroup_missing") else []
    report.update(
        pid=client.pid,
        layers=_strings(sandbox.get("layers")) + cage,
        missing_layers=_strings(sandbox.get("missing")) + uncaged + _optional_layers(),
        uptime_s=round(uptime, 3) if uptime is not None else None,
        startup_ms=round(stats.startup_seconds * 1000, 1) if stats.startup_seconds is not None else None,
        calls=stats.calls,
        errors=stats.errors,
        timeouts=stats.timeouts,
        restarts=max(0, stats.starts - 1),
        rss_bytes=runner.resident_bytes(client.pid) if client.pid else None,
        memory_bytes=contained.get("memory_bytes"),
        cgroup=contained.get("cgroup"),
        last_error=report["last_error"] or stats.last_error,
        stderr_tail=list(client.stderr_tail(5)),
    )
    report["class"] = str(hello["class"]) if hello.get("class") else None
    report["doc"] = str(hello.get("doc") or "")
    if sandbox.get("profile"):
        report["profile"] = str(sandbox["profile"])
