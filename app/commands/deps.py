"""``sandchat plugins deps``: install a plugin's declared dependencies into its own environment, and prune unused ones.

The flow ``plugins install`` shares (:func:`ensure`): check what is installed (file by
file), plan with pip (wheels only unless ``--allow-build``), show names, versions and
sizes, ask as ``plugins grant`` does (``--yes`` for scripts), install atomically, record
which plugin file uses the environment. Nothing here runs package code, nor the plugin.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from app.context import Context
from app.discovery import Metadata
from app.exits import EXIT_OK, EXIT_PLUGIN, EXIT_USAGE

if TYPE_CHECKING:
    from app.manager import PluginManager

__all__ = ["deps", "ensure", "in_use", "prune"]


def deps(args: argparse.Namespace, context: Context) -> int:
    """``plugins deps NAME [--allow-build] [--yes]``, ``plugins deps --prune``, or both."""
    out = context.output
    if args.name is None and not args.prune:
        out.error("name a plugin (sandchat plugins deps NAME), or remove unused environments with --prune")
        return EXIT_USAGE
    status = EXIT_OK
    if args.name is not None:
        discovery = context.manager.discovery
        plugin_file = discovery.plugins.get(args.name)
        if plugin_file is None:
            from app.refusals import Ambiguous, NotInstalled

            conflict = discovery.conflicts.get(args.name)
            refusal = Ambiguous(args.name, [f.path for f in conflict]) if conflict else NotInstalled(args.name, context.manager.names())
            out.error(str(refusal))
            return EXIT_USAGE
        if plugin_file.metadata_error:
            out.error(f"plugin {args.name!r} has a bad metadata block: {plugin_file.metadata_error}")
            return EXIT_PLUGIN
        status = ensure(context, args.name, plugin_file.path, plugin_file.metadata, allow_build=args.allow_build, yes=args.yes)
        if status == EXIT_OK:
            context.manager.forget(args.name)  # a process of this manager started before the install: none in a CLI run
    if args.prune:
        removed = prune(context.manager)
        root = context.manager.envs.root
        out.write("".join(f"removed unused environment {root / key}\n" for key in removed) or "no unused environment\n")
        left = context.manager.envs.foreign()
        if left:
            folders = f"{len(left)} folder{'s' if len(left) != 1 else ''}"
            out.write(f"left {folders} in {root} that sandchat did not make (no manifest): {', '.join(left)}\n")
    return status


def ensure(context: Context, name: str, path: Path, meta: Metadata, *, allow_build: bool, yes: bool, user_path: Path | None = None) -> int:
    """Make plugin ``name``'s declared dependencies installed, asking first; an exit status.

    ``user_path`` is the file recorded as the environment's user (``plugins install``
    records where the file will be, not where it is copied from).
    """
    from app.depinstall import BUILD_WARNING, install, plan
    from app.deps import DependencyError

    out = context.output
    declared = meta.declared
    store = context.manager.envs
    status = store.status(declared, verify=True)
    if status.python is not None:
        out.error(status.message(name) or status.python)  # nothing to install would help
        return EXIT_PLUGIN
    if not declared:
        out.write(f"plugin {name!r} declares no dependencies: nothing to install\n")
        return EXIT_OK
    user = (name, user_path or path)
    if status.ok and status.env is not None:
        store.record_use(status.key, *user)
        out.write(f"plugin {name!r}: {', '.join(declared.requirements)} installed in {status.env.path}\n")
        return EXIT_OK
    if allow_build:
        out.error(BUILD_WARNING)  # before planning: pip runs an sdist's build backend to learn its metadata
    repair = " (repairing its environment)" if status.env is not None else ""
    out.write(f"plugin {name!r} needs {', '.join(declared.requirements)}{repair}; asking pip what that takes...\n")
    try:
        with plan(declared, store, allow_build=allow_build, environ=context.settings.environ) as planned:
            out.write(f"to install into {store.path(planned.key)} (readable only by {name!r} and plugins declaring the same):\n")
            out.write("".join(f"  {line}\n" for line in planned.lines()))
            if not yes and not context.confirm(f"install these for {name!r}?"):
                out.error(f"plugin {name!r}: nothing installed{context.unasked()}")
                return EXIT_PLUGIN
            env = install(planned, store, environ=context.settings.environ, replace=status.env is not None, plugin=user)
    except DependencyError as exc:  # InstallError too: one line, what failed and what to do
        out.error(f"plugin {name!r}: {exc}")
        return EXIT_PLUGIN
    out.write(f"installed the dependencies of {name!r} into {env.path}\n")
    return EXIT_OK


def in_use(manager: PluginManager) -> set[str]:
    """The environment keys of every plugin file discovered now (conflicting files included)."""
    return {f.metadata.declared.key for f in manager.discovery.files().values() if f.metadata.dependencies}


def prune(manager: PluginManager) -> list[str]:
    """Remove the environments no plugin uses (see ``EnvStore.prune``); return their keys."""
    return manager.envs.prune(in_use(manager))
