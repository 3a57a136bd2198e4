"""``sandchat keys``: store API keys (never printed), list their names, show the file's path."""

from __future__ import annotations

import argparse
import getpass
import sys

from app.cli import EXIT_OK, EXIT_USAGE
from app.context import Context
from app.keys import KeyStore

__all__ = ["run"]


def run(args: argparse.Namespace, context: Context) -> int:
    store = KeyStore(context.settings.paths.keys_file)
    if args.keys_command == "path":
        context.output.write(f"{store.path}\n")
        return EXIT_OK
    if args.keys_command == "list":
        for name in sorted(store.load()):
            overridden = " (overridden by the environment)" if name in context.settings.environ else ""
            context.output.write(f"{name}{overridden}\n")
        return EXIT_OK
    if sys.stdin is not None and sys.stdin.isatty():
        value = getpass.getpass(f"{args.name}: ")
    else:
        value = sys.stdin.readline().strip() if sys.stdin is not None else ""
    try:
        store.set(args.name, value.strip())
    except ValueError as exc:
        context.output.error(str(exc))
        return EXIT_USAGE
    context.output.write(f"stored {args.name} in {store.path}\n")
    return EXIT_OK
