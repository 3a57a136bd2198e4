"""One-shot commands: ``sandchat prompt`` streams one answer, ``sandchat tokens`` counts.

Only the answer goes to stdout, so these compose with pipes; every diagnostic is one
line on stderr. The prompt is standard input (when it is not a terminal) followed by
TEXT, a blank line between them, as ``llm`` does: ``cat notes | sandchat prompt
"Summarise"`` sends the notes, then the instruction. An empty prompt is a usage error.

``prompt -c`` (or ``--cid ID``) continues a logged conversation as ``llm -c`` does: its
history goes with the prompt (trimmed to the plugin's window as the chat trims it), the
plugin is the conversation's unless ``-p`` says otherwise, and the exchange is logged
into that conversation.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import runner
from app.commands import warm
from app.commands.warm import Handle
from app.context import Context
from app.exits import EXIT_OK, EXIT_PLUGIN, EXIT_USAGE
from app.refusals import Ambiguous, NotInstalled
from app.render import Output

if TYPE_CHECKING:  # the rest is imported where it is used: a warm command's first byte pays for every import before it
    from app.chatlog import Exchange
    from app.history import Conversation

__all__ = ["prompt", "tokens"]


def _read_text(args: argparse.Namespace, context: Context, *, allow_empty: bool = False) -> str | None:
    """Standard input (unless it is a terminal), then TEXT; None (after one line) when there is neither."""
    words = " ".join(args.text)
    piped = sys.stdin.read() if sys.stdin is not None and not sys.stdin.isatty() else None
    if piped is None and not args.text:
        context.output.error("no TEXT given and nothing on standard input")
        return None
    text = "\n\n".join(part for part in (piped.rstrip("\n") if piped else "", words) if part)
    if not text.strip() and not allow_empty:
        context.output.error("the prompt is empty: give TEXT or pipe something in")
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # undecodable bytes arrive as lone surrogates: no plugin, frame or log takes them
        where = "standard input" if piped and exc.start < len(piped) else "TEXT"
        byte = text[exc.start].encode("utf-8", "surrogateescape")[:1].hex()
        context.output.error(f"{where} is not UTF-8 text (byte 0x{byte} at character {exc.start}); "
                             "convert it first, e.g. iconv -f LATIN1 -t UTF-8 FILE | sandchat prompt ...")  # fmt: skip
        return None
    return text


def _too_big(text: str, handle: Handle, context: Context) -> bool:
    """A prompt that cannot fit one message to the plugin: said before anything is sent."""
    size, limit = len(text.encode("utf-8", "surrogatepass")), handle.config.max_message - 64 * 1024  # room for the rest of the request
    if size <= limit:
        return False
    context.output.error(f"the prompt is {size / 2**20:.1f} MiB; the most a plugin accepts is {limit / 2**20:.1f} MiB")
    return True


def _failure(exc: runner.PluginError, context: Context) -> int:
    context.output.error(str(exc))
    from app.hints import hint_for
    from app.pluginlog import log_traceback

    log_traceback(context.settings.paths.plugin_logs, exc)  # file and line for the author: `sandchat plugins logs NAME`
    if isinstance(exc, (runner.PluginRaised, runner.PluginStartError)):
        hint = hint_for(context.manager, exc.plugin, exc)
        if hint is not None and (hint.command or hint.text) not in str(exc):  # said once: the error may propose it already
            context.output.notice(hint.text)
    if isinstance(exc, (NotInstalled, Ambiguous)):  # a misspelt or ambiguous -p NAME: the user's to fix
        return EXIT_USAGE
    return EXIT_PLUGIN


def prompt(args: argparse.Namespace, context: Context) -> int:
    text = _read_text(args, context)
    if text is None:
        return EXIT_USAGE
    earlier = _earlier(args, context)
    if earlier is False:
        return EXIT_USAGE
    name = context.plugin_name(args.plugin or (earlier.plugin if earlier else None))  # llm's rule: -c keeps the model
    system = args.system or (earlier.system if earlier else "")
    conversation = earlier.conversation(system, text) if earlier else None
    shown: list[str] = []  # the cleaned answer, as printed: what the log keeps
    began, error, cancelled, handle = time.monotonic(), None, False, None
    try:
        handle = warm.handle(context, name)
        if conversation is not None:
            chunks = _chunks(handle, conversation, args, context)
        elif not _too_big(system + text, handle, context):
            chunks = handle.stream_response(system, text, args.max_tokens, args.temperature)
        else:
            chunks = None
        if chunks is None:
            return EXIT_USAGE
        _stream(chunks, context.output, shown)
        if not "".join(shown).strip():  # an empty answer is a failure, never a silent success
            raise runner.PluginResultError(name, "returned an empty answer")
        _say_if_cut_at_the_limit(handle, "".join(shown), args.max_tokens, context)
        return EXIT_OK
    except runner.PluginError as exc:
        error = exc
        status = _failure(exc, context)
        if "".join(shown).strip():
            context.output.notice("the answer above is incomplete")
        return status
    except KeyboardInterrupt:
        cancelled = True
        raise
    finally:
        if handle is not None:  # a prompt that reached a plugin (not a misspelt name)
            cid = conversation.id if conversation else None
            _log(context, cid, name, system, text, "".join(shown), time.monotonic() - began, error, cancelled)
            if not cancelled:
                warm.finish(context, handle)


class _Earlier:
    """A logged conversation to continue: its id, plugin, system prompt and messages."""

    def __init__(self, exchanges: list[Exchange]) -> None:
        last = exchanges[-1]
        self.id, self.plugin, self.system = last.conversation, last.plugin, last.system
        self.messages: list[dict[str, str]] = []
        for e in exchanges:  # as the chat's --continue reads it: an exchange that failed with no answer is left out
            if e.error is None or e.response:
                self.messages += [{"role": "user", "content": e.prompt}, {"role": "assistant", "content": e.response}]

    def conversation(self, system: str, text: str) -> Conversation:
        """This conversation with the new prompt ``text`` added, under ``system``."""
        from app.history import Conversation

        conversation = Conversation(system, list(self.messages), self.id)
        conversation.add("user", text)
        return conversation


def _earlier(args: argparse.Namespace, context: Context) -> _Earlier | None | Literal[False]:
    """The conversation -c or --cid continues; None for a new one; False (after one line) for a bad --cid."""
    if not args.resume and not args.cid:
        return None
    from app.chatlog import ChatLog
    from app.commands.chat import conversation_of

    log = ChatLog(context.settings.paths.logs_db)
    found = conversation_of(args, log, context, latest=args.resume)
    if found is False:
        return False
    if found is None:
        context.output.notice("no earlier conversation: starting a new one")
        return None
    return _Earlier(log.conversation(found))


def _chunks(handle: Handle, conversation: Conversation, args: argparse.Namespace, context: Context) -> Iterator[str] | None:
    """The reply to a continued conversation: its history, trimmed to the plugin's window as the chat trims it."""
    from app.history import TooLong
    from app.tokencache import TokenCounter

    handle.start()  # its hello says its window
    try:
        messages, budget = conversation.fit(TokenCounter(handle), handle.context_window, args.max_tokens)
    except TooLong as exc:
        context.output.error(f"plugin {handle.name!r}: {exc}; shorten it, lower --max-tokens, or drop -c")
        return None
    if _too_big(conversation.system + "".join(m["content"] for m in messages), handle, context):  # what is sent, once trimmed
        return None
    if budget.dropped:
        context.output.notice(
            f"sent the newest {budget.kept} of {budget.kept + budget.dropped} messages: "
            f"the rest do not fit the context window of {handle.name!r}"
        )
    return handle.stream_chat(conversation.system, messages, args.max_tokens, args.temperature)


def _say_if_cut_at_the_limit(handle: Handle, answer: str, max_tokens: int, context: Context) -> None:
    """A notice when the answer used all of --max-tokens: it most likely stopped there, unfinished."""
    if len(answer.encode("utf-8", "surrogatepass")) < max_tokens:
        return  # every token is at least a byte: this answer cannot have reached the limit
    try:
        if handle.count_tokens(answer) >= max_tokens:
            context.output.notice(
                f"the answer stopped at the --max-tokens limit ({max_tokens} tokens); give a larger --max-tokens for more"
            )
    except runner.PluginError:
        pass  # the answer stands; only the notice is lost


def _stream(chunks: Iterator[str], out: Output, shown: list[str]) -> None:
    """Print a streamed answer, cleaned across chunk boundaries, ending with one newline."""
    cleaner = runner.StreamCleaner()  # across chunks: an escape sequence split in two goes whole
    try:
        for chunk in chunks:
            _show(out, cleaner.feed(chunk), shown)
    finally:
        _show(out, cleaner.flush(), shown)
        if shown and not shown[-1].endswith("\n"):
            out.write("\n")


def _log(context: Context, conversation: str | None, name: str, system: str, prompt: str, response: str,
         seconds: float, error: Exception | None, cancelled: bool) -> None:  # fmt: skip
    """Every prompt reaches logs.db like a chat exchange (a new conversation, or the one continued), failures included."""
    import sqlite3
    import uuid

    from app.chatlog import ChatLog, Exchange

    try:
        ChatLog(context.settings.paths.logs_db).add(Exchange(
            conversation=conversation or uuid.uuid4().hex, plugin=name, system=system, prompt=prompt, response=response,
            duration_s=round(seconds, 4), error=str(error) if error else None, cancelled=cancelled,
        ))  # fmt: skip
    except (OSError, sqlite3.Error) as exc:
        context.output.notice(f"the answer was not logged: {exc}")


def _show(out: Output, piece: str, shown: list[str]) -> None:
    if piece:
        out.write(piece)
        shown.append(piece)


def tokens(args: argparse.Namespace, context: Context) -> int:
    text = _read_text(args, context, allow_empty=True)
    if text is None:
        return EXIT_USAGE
    name = context.plugin_name(args.plugin)
    handle: Handle | None = None
    try:
        handle = warm.handle(context, name)
        if _too_big(text, handle, context):
            return EXIT_USAGE
        count = handle.count_tokens(text)
    except runner.PluginError as exc:
        warm.finish(context, handle)
        return _failure(exc, context)
    context.output.write(f"{count}\n")
    try:
        counting = handle.token_counting()
    except runner.PluginError as exc:
        counting = f"estimate? the plugin could not say how it counts ({exc})"
    warm.finish(context, handle)
    if counting.lower().startswith("estimate"):  # said where a person reads it; stdout stays the number
        context.output.notice(f"plugin {name!r}: the count is an {counting}")
    return EXIT_OK
