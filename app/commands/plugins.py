"""``sandchat plugins``: list, health, grant and revoke."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.cli import EXIT_OK, EXIT_PLUGIN, EXIT_USAGE
from app.context import Context
from app.discovery import PluginFile
from app.render import table
from runner.cleantext import clean_text

__all__ = ["run"]


def run(args: argparse.Namespace, context: Context) -> int:
    actions = {
        "list": list_plugins, "health": health, "grant": grant, "revoke": revoke,
        "logs": logs, "enable": toggle, "disable": toggle,
    }  # fmt: skip
    if args.plugins_command in actions:
        return actions[args.plugins_command](args, context)
    from app.commands import authoring  # imports the runner: only for the authoring actions

    authoring_actions = {"new": authoring.new, "check": authoring.check, "install": authoring.install, "remove": authoring.remove}
    return authoring_actions[args.plugins_command](args, context)


def _listing(context: Context, plugin: PluginFile) -> dict[str, Any]:
    manager = context.manager
    access = manager.access(plugin)
    state = manager.state(plugin.name)
    return {
        "name": plugin.name,
        "state": state,
        "profile": access.profile,
        "network": list(access.network),
        "env": list(access.env),
        "requested_network": list(plugin.metadata.network),
        "requested_env": list(plugin.metadata.env),
        "source": plugin.source,
        "path": str(plugin.path),
        "description": plugin.metadata.description,
        "problem": plugin.metadata_error or (access.lapsed.explain() if access.lapsed else None),
    }


def list_plugins(args: argparse.Namespace, context: Context) -> int:
    manager = context.manager
    discovery = manager.discovery
    rows = [_listing(context, discovery.plugins[n]) for n in discovery.names()]  # never starts a plugin
    if context.settings.no_plugins:
        for row in rows:
            row["state"] = "disabled"
    skipped = [{"path": str(s.path), "reason": s.reason} for s in discovery.skipped]
    if args.json:
        body: dict[str, Any] = {"plugins": rows}
        if args.all:
            body["skipped"] = skipped
        context.output.write(json.dumps(body, indent=2) + "\n")
        return EXIT_OK
    if context.settings.no_plugins:
        context.output.notice("safe mode (--no-plugins): every plugin is off and none was started; remove a broken one with: sandchat plugins remove NAME")
    lines = [[r["name"], r["state"], r["profile"], _grants(r), r["description"] or r["path"]] for r in rows]
    context.output.write(table(lines, ["NAME", "STATE", "PROFILE", "GRANTS", "DESCRIPTION"]) + "\n")
    for row in rows:
        if row["problem"]:
            context.output.write(f"  ! {row['name']}: {row['problem']}\n")
    if args.all and skipped:
        context.output.write("\nskipped files:\n" + table([[s["path"], s["reason"]] for s in skipped], ["FILE", "REASON"], width=120) + "\n")
    return EXIT_OK


def health(args: argparse.Namespace, context: Context) -> int:
    manager = context.manager
    unknown = [n for n in args.names if n not in manager.discovery.plugins]
    if unknown:
        context.output.error(f"unknown plugin(s): {', '.join(unknown)} (available: {', '.join(manager.names()) or 'none'})")
        return EXIT_USAGE
    if args.watch:
        return _watch(args, context)
    reports = manager.health(args.names or None)
    context.output.write(health_text(reports, args.json) + "\n")
    return EXIT_OK if all(r["healthy"] and r["ready"] for r in reports) else EXIT_PLUGIN


def health_text(reports: list[dict[str, Any]], as_json: bool) -> str:
    if as_json:
        return json.dumps(reports, indent=2)
    rows = [
        [r["name"], r["state"], _ready(r), r["pid"] or "-", _ms(r["ping_ms"]), _mib(r["memory_bytes"] if r["memory_bytes"] is not None else r["rss_bytes"]),
         f"{r['crashes_24h'] + r['deadlines_24h']}/{r['restarts_24h']}", r["profile"] or "-"]
        for r in reports
    ]  # fmt: skip
    lines = [table(rows, ["NAME", "STATE", "READY", "PID", "PING", "MEMORY", "F/R 24H", "PROFILE"])]
    for r in reports:
        prefix = f"plugin {r['name']!r} "
        if r["not_ready"] and r["not_ready"] != r["last_error"]:
            lines.append(_cut(f"  {r['name']}: not ready: {_unprefixed(r['not_ready'], prefix)}", 79))
        if r["last_error"]:
            error = r["last_error"][len(prefix) :] if r["last_error"].startswith(prefix) else r["last_error"]
            lines.append(_cut(f"  {r['name']}: {error}", 79))
        missing = [m for m in r["missing_layers"] if not m.startswith("bubblewrap")]  # optional: JSON only
        if r["class"]:
            doc = clean_text(r["doc"] or "").strip().split("\n", 1)[0]  # cleaned first: U+2028 ends a line too
            lines.append(_cut(f"  {r['name']}: class {r['class']}" + (f": {doc}" if doc else ""), 79))
        if r["layers"]:
            lines.append(_cut(f"  {r['name']}: {' '.join(_short_layers(r['layers']))}", 79))
        if r["counting"]:
            lines.append(_cut(f"  {r['name']}: counts tokens: {r['counting']}", 79))
        if r["network"] or r["env"]:
            lines.append(_cut(f"  {r['name']}: granted {', '.join(r['network'] + r['env'])}", 79))
        if r["layers"] and missing:
            lines.append(_cut(f"  {r['name']}: sandbox missing {', '.join(missing)}", 79))
        lines.extend(_cut(f"  {r['name']} stderr| {line}", 79) for line in r["stderr_tail"][-3:] if not r["healthy"])
    return "\n".join(lines)


def _ready(report: dict[str, Any]) -> str:
    return {True: "yes", False: "no"}.get(report["ready"], "-")  # the reason follows, on its own line


def _unprefixed(text: str, prefix: str) -> str:
    return text[len(prefix) :] if text.startswith(prefix) else text


def _grants(report: dict[str, Any]) -> str:
    """Granted permissions in a few characters: 'net 1, env 3' or '-'."""
    parts = [f"{kind} {len(report[key])}" for kind, key in (("net", "network"), ("env", "env")) if report[key]]
    return ", ".join(parts) or "-"


_SHORT = {"no-capabilities": "no-caps", "no_new_privs": "nnp", "cgroup (cgroup1)": "cgroup-v1",
          "cgroup (cgroup2)": "cgroup-v2", "cgroup (systemd-scope)": "cgroup-scope"}
_FIRST = ("landlock", "seccomp", "cgroup")  # the layers a reader looks for, before the rest


def _short_layers(layers: list[str]) -> list[str]:
    """Applied sandbox layers, short: 'landlock(fs,net,scope) seccomp cgroup-v1 rlimits ... no-caps nnp'."""
    landlock = [layer.split("-", 1)[1] for layer in layers if layer.startswith("landlock-")]
    rest = [_SHORT.get(layer, layer) for layer in layers if not layer.startswith("landlock-")]
    folded = ([f"landlock({','.join(landlock)})"] if landlock else []) + rest
    return sorted(folded, key=lambda layer: next((i for i, p in enumerate(_FIRST) if layer.startswith(p)), len(_FIRST)))


def _cut(text: str, width: int) -> str:
    """One clean line of at most ``width`` characters (cleaned first, so the width is what shows)."""
    text = clean_text(text, keep_newlines=False).rstrip()
    return text if len(text) <= width else text[: width - 1] + "…"


def _watch(args: argparse.Namespace, context: Context) -> int:
    """Redraw the health table in place every few seconds until Ctrl-C."""
    import time

    out = context.output
    while True:
        reports = context.manager.health(args.names or None)
        out.raw("\x1b[H\x1b[2J")  # our own: home, clear screen
        out.write(time.strftime("%H:%M:%S ") + f"(every {args.watch:g}s, Ctrl-C to stop)\n")
        out.write(health_text(reports, args.json) + "\n")
        time.sleep(args.watch)


def logs(args: argparse.Namespace, context: Context) -> int:
    path = context.settings.paths.plugin_logs / f"{args.name}.log"
    if not path.exists():
        context.output.error(f"plugin {args.name!r} has no log yet ({path})")
        return EXIT_PLUGIN if args.name in context.manager.discovery.plugins else EXIT_USAGE
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f.readlines()[-args.lines :]:
            context.output.write(line)  # cleaned there, like everything written
        while args.follow:
            line = f.readline()
            if line:
                context.output.write(line)
            else:
                import time

                time.sleep(0.25)  # like tail -f: poll the file for growth
    return EXIT_OK


def toggle(args: argparse.Namespace, context: Context) -> int:
    enable = args.plugins_command == "enable"
    if args.name not in context.manager.discovery.plugins:
        context.output.error(f"plugin {args.name!r} is not installed (available: {', '.join(context.manager.names()) or 'none'})")
        return EXIT_USAGE
    changed = context.manager.switches.set_enabled(args.name, enable)
    word = "enabled" if enable else "disabled"
    context.output.write(f"plugin {args.name!r} {word}\n" if changed else f"plugin {args.name!r} was already {word}\n")
    if enable and args.name in context.settings.disabled:
        context.output.notice(f"{args.name!r} is still off: it is listed in SANDCHAT_DISABLE_PLUGINS or the settings file")
    return EXIT_OK


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}MiB"


def grant(args: argparse.Namespace, context: Context) -> int:
    """Add permissions: what the file requests, or exactly the --network/--env given; never removes any."""
    from app.discovery import Metadata, MetadataError
    from app.grants import file_sha256

    manager = context.manager
    plugin = manager.discovery.plugins.get(args.name)
    if plugin is None:
        context.output.error(f"plugin {args.name!r} is not installed (available: {', '.join(manager.names()) or 'none'})")
        return EXIT_USAGE
    old = manager.grants.load().get(plugin.name)
    named = args.network is not None or args.env is not None  # then exactly what is named, nothing more
    network = args.network or () if named else plugin.metadata.network
    env = args.env or () if named else plugin.metadata.env
    try:
        wanted = Metadata(network=tuple(network), env=tuple(env))
    except MetadataError as exc:
        context.output.error(f"plugin {args.name!r}: {exc}")
        return EXIT_USAGE
    before_net, before_env = (old.network, old.env) if old else ((), ())
    out = context.output
    out.write(f"plugin {plugin.name!r} ({plugin.path})\n")
    for label, before, added in (("network", before_net, wanted.network), ("env", before_env, wanted.env)):
        new = [item for item in added if item not in before]
        shown = ", ".join([*before, *new]) or "none"
        out.write(f"  {label.strip() + ':':<8} {shown}" + (f"  (adds {', '.join(new)})" if new and before else "") + "\n")
    if not args.yes and not _confirm(f"grant these to {plugin.name!r}?"):
        context.output.error(f"plugin {plugin.name!r}: nothing granted")
        return EXIT_PLUGIN
    manager.grants.add(plugin.name, file_sha256(plugin.path), wanted.network, wanted.env)
    out.write(f"granted; bound to this version of {plugin.path.name}: any change to the file revokes it\n")
    return EXIT_OK


def _confirm(question: str) -> bool:
    if sys.stdin is None or not sys.stdin.isatty():
        return False  # never grant silently: scripts must say --yes
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except EOFError:
        return False


def revoke(args: argparse.Namespace, context: Context) -> int:
    """Take back named permissions (--network/--env), or everything when none is named."""
    manager = context.manager
    grants = manager.grants
    plugin = manager.discovery.plugins.get(args.name)
    if plugin is None and args.name not in grants.load():
        context.output.error(f"plugin {args.name!r} is not installed (available: {', '.join(manager.names()) or 'none'})")
        return EXIT_USAGE
    if plugin is not None and args.name not in grants.load():
        shipped = manager.access(plugin).grant
        if shipped is not None and shipped.source == "shipped":
            what = ", ".join(shipped.network + shipped.env) or "nothing"
            context.output.write(f"plugin {args.name!r} has no grant of yours; it keeps what it ships with ({what}); "
                                 f"to stop it, turn it off: sandchat plugins disable {args.name}\n")  # fmt: skip
            return EXIT_OK
    if args.network or args.env:
        left = grants.remove(args.name, tuple(args.network or ()), tuple(args.env or ()))
        if left is None:
            context.output.write(f"plugin {args.name!r} had no grant\n")
        else:
            context.output.write(f"plugin {args.name!r} keeps network: {', '.join(left.network) or 'none'}; env: {', '.join(left.env) or 'none'}\n")
        return EXIT_OK
    if grants.revoke(args.name):
        context.output.write(f"revoked everything granted to {args.name!r}\n")
    else:
        context.output.write(f"plugin {args.name!r} had no grant\n")
    return EXIT_OK
