"""``sandchat keys``: store, print (``get``, for scripts), remove and list API keys; show the file's path.

Only ``keys get`` ever prints a value, and only the one asked for, to stdout.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from app.context import Context
from app.exits import EXIT_OK, EXIT_USAGE
from app.keys import KeyStore

__all__ = ["run"]


def run(args: argparse.Namespace, context: Context) -> int:
    store = KeyStore(context.settings.paths.keys_file)
    if args.keys_command == "path":
        context.output.write(f"{store.path}\n")
        return EXIT_OK
    if args.keys_command == "list":
        names = sorted(store.load())
        if not names:
            context.output.notice(f"no keys stored ({store.path})")
        for name in names:
            overridden = " (overridden by the environment)" if name in context.settings.environ else ""
            context.output.write(f"{name}{overridden}\n")
        return EXIT_OK
    if args.keys_command in ("get", "remove"):
        return _get(args, context, store) if args.keys_command == "get" else _remove(args, context, store)
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


def _get(args: argparse.Namespace, context: Context, store: KeyStore) -> int:
    """The stored value, as stored (raw: a script captures it exactly); the environment's is not consulted."""
    value = store.load().get(args.name)
    if value is None:
        context.output.error(f"no key {args.name!r} stored (see: sandchat keys list)")
        return EXIT_USAGE
    context.output.raw(value + "\n")
    return EXIT_OK


def _remove(args: argparse.Namespace, context: Context, store: KeyStore) -> int:
    if not store.delete(args.name):
        context.output.error(f"no key {args.name!r} stored (see: sandchat keys list)")
        return EXIT_USAGE
    still = " (it is still set in the environment, which wins)" if args.name in context.settings.environ else ""
    context.output.write(f"removed {args.name} from {store.path}{still}\n")
    return EXIT_OK
