"""``sandchat plugins``: list, health, grant and revoke."""

from __future__ import annotations

import argparse
import json
import re
import textwrap
import time
from typing import Any

from app.access import access_of, grant_more, granted
from app.context import Context
from app.discovery import Metadata, MetadataError, PluginFile
from app.exits import EXIT_OK, EXIT_PLUGIN, EXIT_USAGE
from app.hints import for_lapsed
from app.render import fit, table, terminal_width
from runner import clean_text

__all__ = ["last_24h", "run"]

_PLUGIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")  # as discovery names plugins


def run(args: argparse.Namespace, context: Context) -> int:
    actions = {
        "list": list_plugins, "health": health, "grant": grant, "revoke": revoke,
        "logs": logs, "enable": toggle, "disable": toggle,
    }  # fmt: skip
    if args.plugins_command in actions:
        return actions[args.plugins_command](args, context)
    if args.plugins_command == "deps":
        from app.commands.deps import deps  # packaging and pip: only for this action

        return deps(args, context)
    from app.commands import authoring  # imports the runner: only for the authoring actions

    authoring_actions = {"new": authoring.new, "check": authoring.check, "install": authoring.install, "remove": authoring.remove}
    return authoring_actions[args.plugins_command](args, context)


def _not_installed(context: Context, name: str) -> int:
    """Say that no plugin is called ``name``, and which are; the usage error's exit status."""
    from app.refusals import NotInstalled  # the runner's errors: not imported by `plugins list`

    context.output.error(str(NotInstalled(name, context.manager.names())))
    return EXIT_USAGE


def _listing(context: Context, plugin_file: PluginFile) -> dict[str, Any]:
    manager = context.manager
    access = access_of(plugin_file, manager.grants)
    state = manager.state(plugin_file.name)
    dependencies, problem = _dependencies(context, plugin_file)
    if problem and state in ("stopped", "failed"):
        state = "needs deps"
    return {
        "name": plugin_file.name,
        "state": state,
        "profile": access.profile,
        "network": list(access.network),
        "env": list(access.env),
        "requested_network": list(plugin_file.metadata.network),
        "requested_env": list(plugin_file.metadata.env),
        "source": plugin_file.source,
        "path": str(plugin_file.path),
        "description": plugin_file.metadata.description,
        "problem": plugin_file.metadata_error or problem or (for_lapsed(access.lapsed).text if access.lapsed else None),
        "dependencies": dependencies,
    }


def _dependencies(context: Context, plugin_file: PluginFile) -> tuple[dict[str, Any] | None, str | None]:
    """What the plugin declares and whether it is installed (one manifest read; pip never runs), and why it cannot load."""
    meta = plugin_file.metadata
    if not (meta.dependencies or meta.requires_python):
        return None, None
    status = context.manager.envs.status(meta.declared)
    listing = {
        "declared": list(meta.dependencies), "requires_python": meta.requires_python or None,
        "env": status.key if meta.dependencies else None, "installed": status.env is not None or not meta.dependencies,
        "missing": list(status.missing),
    }  # fmt: skip
    return listing, status.message(plugin_file.name)


def list_plugins(args: argparse.Namespace, context: Context) -> int:
    manager = context.manager
    discovery = manager.discovery
    rows = [_listing(context, discovery.plugins[n]) for n in discovery.names()]  # never starts a plugin
    recent = last_24h(context, [r["name"] for r in rows])
    for row in rows:
        row["last_24h"] = recent[row["name"]]
        if context.settings.no_plugins:
            row["state"] = "disabled"
    skipped = [{"path": str(s.path), "reason": s.reason, "candidate": s.candidate} for s in discovery.skipped]
    if args.json:
        body: dict[str, Any] = {"plugins": rows}
        if args.all:
            body["skipped"] = skipped
        context.output.write(json.dumps(body, indent=2) + "\n")
        return EXIT_OK
    if context.settings.no_plugins:
        context.output.notice(
            "safe mode (--no-plugins): every plugin is off and none was started; remove a broken one with: sandchat plugins remove NAME"
        )
    width = terminal_width()
    recorded = any(r["last_24h"] != "-" for r in rows)  # a column of nothing but '-' (a fresh install) is left out
    lines = [
        [r["name"], r["state"], r["profile"], _grants(r), *([r["last_24h"]] if recorded else []), r["description"] or r["path"]]
        for r in rows
    ]
    headers = ["NAME", "STATE", "PROFILE", "GRANTS", *(["LAST 24H"] if recorded else []), "DESCRIPTION"]
    context.output.write(table(lines, headers, width=width) + "\n")
    for row in rows:
        if row["problem"]:
            context.output.write(_problem_line(f"  ! {row['name']}: {row['problem']}", width if context.output.interactive else None))
    context.output.write(_footer(discovery, args.all, width))
    return EXIT_OK


def _problem_line(text: str, width: int | None) -> str:
    """A plugin's problem, whole: it ends in the command that fixes it. Wrapped on a terminal; one line into a pipe, for grep."""
    text = clean_text(text, keep_newlines=False)
    if width is None:
        return text + "\n"
    return "\n".join(textwrap.wrap(text, width, subsequent_indent="      ", break_on_hyphens=False, break_long_words=False)) + "\n"


def _footer(discovery: Any, show_all: bool, width: int) -> str:
    """Conflicts (always: they hide a plugin), then the skipped files, or how many and where to see them."""
    lines = []
    for name, files in sorted(discovery.conflicts.items()):
        lines.append(fit(f"  ! name {name!r} is used by {len(files)} files, so neither is used until one is renamed:", width))
        lines.extend(f"      {f.path}" for f in files)  # whole: a path cut short cannot be copied
    candidates = [
        s for s in discovery.skipped if s.candidate and not any(s.path == f.path for fs in discovery.conflicts.values() for f in fs)
    ]
    if show_all:
        if candidates:
            lines.append("\nskipped files:\n" + table([[s.path, s.reason] for s in candidates], ["FILE", "REASON"], width=width))
        others = [s for s in discovery.skipped if not s.candidate]
        if others:
            lines.append(fit("not plugins: " + ", ".join(f"{s.path.name} ({s.reason})" for s in others), width))
    elif candidates:
        lines.append(f"{len(candidates)} file{'s' if len(candidates) != 1 else ''} skipped, see --all")
    return "".join(line + "\n" for line in lines)


def last_24h(context: Context, names: list[str]) -> dict[str, str]:
    """Each plugin's recorded outcome over the last 24 hours, read from health.db and logs.db; starts nothing.

    "ok" means it ran (started, or answered a logged prompt) with nothing failing; "-" that
    nothing is recorded. An error a plugin raised is in logs.db only when a prompt or the
    chat hit it; ``plugins health`` is what asks a plugin now.
    """
    paths = context.settings.paths
    if not paths.health_db.exists() and not paths.logs_db.exists():
        return dict.fromkeys(names, "-")  # nothing ever ran: not even sqlite3 is imported (plugins list stays quick)
    from app.chatlog import ChatLog
    from app.healthlog import HealthLog

    events = HealthLog(paths.health_db) if paths.health_db.exists() else None  # reading must not create it
    since = time.time() - 24 * 3600
    exchanges = ChatLog(paths.logs_db).per_plugin(since)
    out = {}
    for name in names:
        counts = events.counts(name, since) if events is not None else {}
        tried, errors = exchanges.get(name, (0, 0))
        failures = [(counts.get("crashed", 0) + counts.get("start_failed", 0), "crashed {}×"), (counts.get("deadline", 0), "timed out {}×"),
                    (counts.get("quarantined", 0), "quarantined {}×"), (errors, "{} failed replies")]  # fmt: skip
        said = [text.format(n) if n != 1 or "×" in text else "1 failed reply" for n, text in failures if n]
        ran = tried or counts.get("started", 0)
        out[name] = ", ".join(said) if said else ("ok" if ran else "-")
    return out


def health(args: argparse.Namespace, context: Context) -> int:
    manager = context.manager
    unknown = [n for n in args.names if n not in manager.discovery.plugins]
    if unknown:
        from app.refusals import available

        context.output.error(f"unknown plugin(s): {', '.join(unknown)} {available(manager.names())}")
        return EXIT_USAGE
    if args.watch:
        return _watch(args, context)
    from app.commands.warm import prober
    from app.health import health_text, probe_all  # imports the runner: only when plugins are probed

    reports = probe_all(manager, args.names or None, prober(context))
    context.output.write(health_text(reports, args.json) + "\n")
    return EXIT_OK if all(r["healthy"] and r["ready"] for r in reports) else EXIT_PLUGIN


def _grants(report: dict[str, Any]) -> str:
    """Granted permissions in a few characters: 'net 1, env 3' or '-'."""
    parts = [f"{kind} {len(report[key])}" for kind, key in (("net", "network"), ("env", "env")) if report[key]]
    return ", ".join(parts) or "-"


def _watch(args: argparse.Namespace, context: Context) -> int:
    """Redraw the health table in place every few seconds until Ctrl-C."""
    from app.commands.warm import prober
    from app.health import health_text, probe_all

    out, remote = context.output, prober(context)
    while True:
        reports = probe_all(context.manager, args.names or None, remote)
        out.raw("\x1b[H\x1b[2J")  # our own: home, clear screen
        out.write(time.strftime("%H:%M:%S ") + f"(every {args.watch:g}s, Ctrl-C to stop)\n")
        out.write(health_text(reports, args.json) + "\n")
        time.sleep(args.watch)


def logs(args: argparse.Namespace, context: Context) -> int:
    discovery = context.manager.discovery
    known = args.name in discovery.plugins or args.name in discovery.conflicts
    path = context.settings.paths.plugin_logs / f"{args.name}.log"
    # A name that is no plugin's never becomes a path ('../x' would read outside the logs folder);
    # a removed plugin's log is still shown.
    if not known and (not _PLUGIN_NAME.match(args.name) or not path.is_file()):
        return _not_installed(context, args.name)
    if not path.exists():
        context.output.error(f"plugin {args.name!r} has no log yet ({path})")
        return EXIT_PLUGIN
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f.readlines()[-args.lines :]:
            context.output.write(line)  # cleaned there, like everything written
        while args.follow:
            line = f.readline()
            if line:
                context.output.write(line)
            else:
                time.sleep(0.25)  # like tail -f: poll the file for growth
    return EXIT_OK


def toggle(args: argparse.Namespace, context: Context) -> int:
    enable = args.plugins_command == "enable"
    if args.name not in context.manager.discovery.plugins:
        return _not_installed(context, args.name)
    changed = context.manager.switches.set_enabled(args.name, enable)
    word = "enabled" if enable else "disabled"
    context.output.write(f"plugin {args.name!r} {word}\n" if changed else f"plugin {args.name!r} was already {word}\n")
    if enable and args.name in context.settings.disabled:
        context.output.notice(f"{args.name!r} is still off: it is listed in SANDCHAT_DISABLE_PLUGINS or the settings file")
    return EXIT_OK


def grant(args: argparse.Namespace, context: Context) -> int:
    """Add permissions: what the file requests, or exactly the --network/--env given; never removes any."""
    manager = context.manager
    plugin_file = manager.discovery.plugins.get(args.name)
    if plugin_file is None:
        return _not_installed(context, args.name)
    named = args.network is not None or args.env is not None  # then exactly what is named, nothing more
    network = args.network or () if named else plugin_file.metadata.network
    env = args.env or () if named else plugin_file.metadata.env
    try:
        wanted = Metadata(network=tuple(network), env=tuple(env))
    except MetadataError as exc:
        context.output.error(f"plugin {args.name!r}: {exc}")
        return EXIT_USAGE
    before_net, before_env = granted(plugin_file, manager.grants)
    out = context.output
    out.write(f"plugin {plugin_file.name!r} ({plugin_file.path})\n")
    for label, before, added in (("network", before_net, wanted.network), ("env", before_env, wanted.env)):
        new = [item for item in added if item not in before]
        shown = ", ".join([*before, *new]) or "none"
        out.write(f"  {label.strip() + ':':<8} {shown}" + (f"  (adds {', '.join(new)})" if new and before else "") + "\n")
    if not args.yes and not context.confirm(f"grant these to {plugin_file.name!r}?"):
        context.output.error(f"plugin {plugin_file.name!r}: nothing granted{context.unasked()}")
        return EXIT_PLUGIN
    grant_more(plugin_file, manager.grants, wanted.network, wanted.env)
    out.write(f"granted; bound to this version of {plugin_file.path.name}: any change to the file revokes it\n")
    return EXIT_OK


def revoke(args: argparse.Namespace, context: Context) -> int:
    """Take back named permissions (--network/--env), or everything when none is named."""
    manager = context.manager
    grants = manager.grants
    plugin_file = manager.discovery.plugins.get(args.name)
    if plugin_file is None and args.name not in grants.load():
        return _not_installed(context, args.name)
    if plugin_file is not None and args.name not in grants.load():
        shipped = access_of(plugin_file, manager.grants).grant
        if shipped is not None and shipped.source == "shipped":
            what = ", ".join(shipped.network + shipped.env) or "nothing"
            context.output.write(f"plugin {args.name!r} has no grant of yours; it keeps what it ships with ({what}); "
                                 f"to stop it, turn it off: sandchat plugins disable {args.name}\n")  # fmt: skip
            return EXIT_OK
    if args.network or args.env:
        try:  # spelled as grants are stored: *.EXAMPLE.com.:443 is *.example.com:443
            network = Metadata(network=tuple(args.network or ())).network
        except MetadataError as exc:
            context.output.error(f"plugin {args.name!r}: {exc}")
            return EXIT_USAGE
        held = grants.load().get(args.name)
        absent = [e for e in (*network, *(args.env or ())) if held is None or e not in (*held.network, *held.env)]
        if held is not None and absent:
            context.output.write(f"plugin {args.name!r} was not granted {', '.join(absent)}\n")
        left = grants.remove(args.name, network, tuple(args.env or ()))
        if left is None:
            context.output.write(f"plugin {args.name!r} had no grant\n")
        else:
            context.output.write(
                f"plugin {args.name!r} keeps network: {', '.join(left.network) or 'none'}; env: {', '.join(left.env) or 'none'}\n"
            )
        return EXIT_OK
    if grants.revoke(args.name):
        context.output.write(f"revoked everything granted to {args.name!r}\n")
    else:
        context.output.write(f"plugin {args.name!r} had no grant\n")
    return EXIT_OK
