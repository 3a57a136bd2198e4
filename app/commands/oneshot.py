"""One-shot commands: ``sandchat prompt`` streams one answer, ``sandchat tokens`` counts.

Only the answer goes to stdout, so these compose with pipes; every diagnostic is one
line on stderr.
"""

from __future__ import annotations

import argparse
import sys

import runner
from app.cli import EXIT_OK, EXIT_PLUGIN, EXIT_USAGE
from app.context import Context
from app.render import Output

__all__ = ["prompt", "tokens"]


def _read_text(args: argparse.Namespace, context: Context) -> str | None:
    if args.text is not None:
        return args.text
    if sys.stdin is None or sys.stdin.isatty():
        context.output.error("no TEXT given and nothing on standard input")
        return None
    return sys.stdin.read()


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
    name = context.plugin_name(args.plugin)
    out = context.output
    cleaner = runner.StreamCleaner()  # across chunks: an escape sequence split in two goes whole
    last, said = "", False  # the last piece shown; whether any of it was more than white space
    try:
        client = context.manager.client(name)
        for chunk in client.stream_response(args.system, text, args.max_tokens, args.temperature):
            piece = _show(out, cleaner.feed(chunk))
            last, said = piece or last, said or bool(piece.strip())
    except runner.PluginError as exc:
        last = _show(out, cleaner.flush()) or last
        if last:
            out.write("\n")
        status = _failure(exc, context)
        if said:
            out.notice("the answer above is incomplete")
        return status
    piece = _show(out, cleaner.flush())
    last, said = piece or last, said or bool(piece.strip())
    if last and not last.endswith("\n"):
        out.write("\n")
    if not said:  # an empty answer is a failure, never a silent success
        return _failure(runner.PluginResultError(name, "returned an empty answer"), context)
    return EXIT_OK


def _show(out: Output, piece: str) -> str:
    if piece:
        out.write(piece)
    return piece


def tokens(args: argparse.Namespace, context: Context) -> int:
    text = _read_text(args, context)
    if text is None:
        return EXIT_USAGE
    name = context.plugin_name(args.plugin)
    try:
        client = context.manager.client(name)
        count = client.count_tokens(text)
    except runner.PluginError as exc:
        return _failure(exc, context)
    context.output.write(f"{count}\n")
    try:
        counting = client.token_counting()
    except runner.PluginError as exc:
        counting = f"estimate? the plugin could not say how it counts ({exc})"
    if counting.lower().startswith("estimate"):  # said where a person reads it; stdout stays the number
        context.output.notice(f"plugin {name!r}: the count is an {counting}")
    return EXIT_OK
