"""One-shot commands: ``sandchat prompt`` streams one answer, ``sandchat tokens`` counts.

Only the answer goes to stdout, so these compose with pipes; every diagnostic is one
line on stderr.
"""

from __future__ import annotations

import argparse
import sys

import runner
from app.choice import choose_default, explain_once
from app.cli import EXIT_OK, EXIT_PLUGIN, EXIT_USAGE
from app.context import Context

__all__ = ["prompt", "tokens"]


def _read_text(args: argparse.Namespace, context: Context) -> str | None:
    if args.text is not None:
        return args.text
    if sys.stdin is None or sys.stdin.isatty():
        context.output.error("no TEXT given and nothing on standard input")
        return None
    return sys.stdin.read()


def _plugin_name(args: argparse.Namespace, context: Context) -> str:
    if args.plugin:
        return args.plugin
    name, why = choose_default(context.manager)
    if context.settings.no_plugins:
        return name  # it will not start (safe mode): nothing to explain, nothing to remember
    notice = explain_once(context.manager, name, why)
    if notice:
        context.output.notice(notice)
    return name


def _failure(exc: runner.PluginError, context: Context) -> int:
    context.output.error(str(exc))
    if isinstance(exc, (runner.PluginRaised, runner.PluginStartError)):
        hint = context.manager.permission_hint(exc.plugin, exc)
        if hint and hint.rsplit("run: ", 1)[-1] not in str(exc):
            context.output.notice(hint)
    if isinstance(exc, runner.PluginUnavailable) and exc.reason in ("unknown", "conflict"):
        return EXIT_USAGE
    return EXIT_PLUGIN


def prompt(args: argparse.Namespace, context: Context) -> int:
    text = _read_text(args, context)
    if text is None:
        return EXIT_USAGE
    context.manager.timeout = args.timeout
    name = _plugin_name(args, context)
    out = context.output
    last = ""
    try:
        client = context.manager.client(name)
        for chunk in client.stream_response(args.system, text, args.max_tokens, args.temperature):
            chunk = runner.clean_text(chunk)
            if chunk:
                out.write(chunk)
                last = chunk
    except runner.PluginError as exc:
        if last:
            out.write("\n")
        return _failure(exc, context)
    if not last.endswith("\n"):
        out.write("\n")
    return EXIT_OK


def tokens(args: argparse.Namespace, context: Context) -> int:
    text = _read_text(args, context)
    if text is None:
        return EXIT_USAGE
    name = _plugin_name(args, context)
    try:
        count = context.manager.client(name).count_tokens(text)
    except runner.PluginError as exc:
        return _failure(exc, context)
    context.output.write(f"{count}\n")
    return EXIT_OK
