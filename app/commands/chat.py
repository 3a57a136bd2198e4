"""``sandchat chat`` (and bare ``sandchat``): the interactive chat, and ``sandchat logs``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Literal

from app.context import Context
from app.exits import EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from app.chatlog import ChatLog

__all__ = ["chat", "conversation_of", "logs"]


def chat(args: argparse.Namespace, context: Context) -> int:
    if not sys.stdin.isatty():
        context.output.error("the chat needs a terminal; for pipes use: sandchat prompt")
        return EXIT_USAGE
    from app.chat import ChatSession
    from app.repl import Repl, YesNo

    manager = context.manager
    name = context.plugin_name(getattr(args, "plugin", None))
    if name not in manager.names():
        from app.refusals import NotInstalled

        context.output.error(str(NotInstalled(name, manager.names())))
        return EXIT_USAGE
    session = ChatSession(
        manager,
        context.output,
        name,
        max_tokens=getattr(args, "max_tokens", 1024),
        temperature=getattr(args, "temperature", None),
        confirm=YesNo(),
    )
    session.conversation.system = getattr(args, "system", "") or ""
    session.warm(name)
    session.watch_liveness()
    session.watch_plugins()
    if getattr(args, "resume", False):
        count = session.resume()
        context.output.notice(
            f"Continuing the last conversation ({count} exchange{'s' if count != 1 else ''})."
            if count
            else "No earlier conversation: starting a new one."
        )
        if getattr(args, "system", ""):
            session.conversation.system = args.system  # -s given now wins over the resumed one
    context.output.write(f"sandchat — chatting with {name!r}. /help for commands, Ctrl-D to leave.\n")
    try:
        Repl(session).run()
    finally:
        session.close()
    return EXIT_OK


def logs(args: argparse.Namespace, context: Context) -> int:
    from app.chatlog import ChatLog

    path = context.settings.paths.logs_db
    if args.action == "path":
        context.output.write(f"{path}\n")
        return EXIT_OK
    log = ChatLog(path)
    conversation = conversation_of(args, log, context, latest=args.current)
    if conversation is False:
        return EXIT_USAGE
    exchanges = log.find(args.count, plugin=args.plugin, text=args.query, conversation=conversation or None)
    if not exchanges:
        context.output.notice(_nothing(args, path))
    if args.json:
        context.output.write(json.dumps([asdict(e) for e in exchanges], indent=2) + "\n")
        return EXIT_OK
    import time

    for e in exchanges:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts))
        status = "cancelled" if e.cancelled else ("error" if e.error else "ok")
        tokens = f" {'~' if e.estimated else ''}{e.prompt_tokens}+{e.response_tokens} tokens" if e.prompt_tokens is not None else ""
        tokens += " (estimated)" if tokens and e.estimated else ""
        context.output.write(f"── {when}  {e.plugin}  {status}{tokens}  {e.duration_s or 0:.2f}s  conversation {e.conversation[:8]}\n")
        context.output.write(f"> {e.prompt}\n{e.response if not e.error else e.error}\n\n")
    return EXIT_OK


def _nothing(args: argparse.Namespace, path: object) -> str:
    """What an empty listing means: nothing logged at all, or nothing matching the filters."""
    filters = [f"{flag} {value!r}" for flag, value in (("-q", args.query), ("-p", args.plugin), ("--cid", args.cid)) if value]
    filters += ["-c"] if args.current else []
    if not filters:
        return f"no exchanges logged yet ({path})"
    return f"no logged exchange matches {' '.join(filters)}"


def conversation_of(args: argparse.Namespace, log: ChatLog, context: Context, *, latest: bool) -> str | None | Literal[False]:
    """The conversation ``--cid`` names (a unique prefix) or, with ``latest``, the most recent one.

    None when neither is asked for (or nothing is logged yet); False, after one line, for an
    unknown or ambiguous ``--cid``: a usage error.
    """
    from app.chatlog import AmbiguousConversation

    if latest:
        return log.latest_conversation_id()
    if not args.cid:
        return None
    try:
        found = log.conversation_id(args.cid)
    except AmbiguousConversation as exc:
        context.output.error(str(exc))
        return False
    if found is None:
        context.output.error(f"no logged conversation has an id starting {args.cid!r} (see: sandchat logs)")
        return False
    return found
