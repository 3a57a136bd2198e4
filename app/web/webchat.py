"""The browser's chat: the chat core driven from HTTP requests, its events turned into NDJSON lines.

One chat per server run (the page is the user's own; a second tab shares it). A reply
runs :meth:`ChatCore.ask` on a worker thread of its own, so a slow, hanging or crashing
plugin holds up nothing but its own reply; what the core tells (chunks, notices,
failure lines, a grant offer) becomes one JSON object per line on the reply's response:

* ``{"type": "waiting", "label"}``, ``{"type": "chunk", "text"}`` (cleaned plain text),
* ``{"type": "ended", "cancelled", "incomplete", "html"}`` (the whole reply, sanitised HTML),
* ``{"type": "notice"|"failure"|"aside", "line"}``,
* ``{"type": "grant", "id", "plugin", "file", "network", "env", "text"}``: answered once
  with that id (``answer_grant``); no answer, a Stop or a new reply mean no,
* ``{"type": "done"}`` last.

Stop cancels the reply's :class:`runner.CancelToken`: the partial text is kept and
logged as cancelled, as Ctrl-C does in the terminal. One operation at a time (a reply, a
switch): another meanwhile is refused with a line, never queued behind a hung plugin.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import runner
from app.chatcore import ChatCore, GrantOffer, Outcome, Wording
from app.web.markup import to_html

if TYPE_CHECKING:
    from app.manager import PluginManager

__all__ = ["Busy", "WebChat", "WebChatError", "WebConfig"]

Event = dict[str, Any]
#: The page's words for the core's advice: there is no ↑ key or /plugin command in it.
PAGE_WORDS = Wording(
    resend="send it again",
    switch="choose another LLM Plugin",
    larger="choose an LLM Plugin with a larger window",
    resend_after_grant="send your message again",
)
GRANT_WAIT = 300.0  # seconds a grant offer waits for the page's answer; then it is a no


class WebChatError(Exception):
    """The root of the browser chat's refusals: each is one line for the page."""


class Busy(WebChatError):
    """Another reply or switch is under way."""


@dataclass(frozen=True)
class WebConfig:
    """How the browser chat answers: the plugin it starts with, the reply budget, the temperature."""

    plugin: str
    max_tokens: int = 1024
    temperature: float | None = None


@dataclass
class _Pending:
    offer: GrantOffer
    answered: threading.Event
    yes: bool = False


class _Page:
    """The core's front end for the page: each event goes to the sink of the operation running now."""

    def __init__(self, chat: WebChat) -> None:
        self.chat = chat
        self.sink: Callable[[Event], None] = lambda event: None

    def waiting(self, label: str) -> None:
        self.sink({"type": "waiting", "label": label})

    def chunk(self, text: str) -> None:
        self.sink({"type": "chunk", "text": text})

    def ended(self, outcome: Outcome) -> None:
        self.sink({"type": "ended", "cancelled": outcome.cancelled, "incomplete": outcome.incomplete, "html": to_html(outcome.text)})

    def aside(self, line: str) -> None:
        self.sink({"type": "aside", "line": line})

    def notice(self, line: str) -> None:
        self.sink({"type": "notice", "line": runner.clean_text(line, keep_newlines=False)})

    def failure(self, line: str) -> None:
        self.sink({"type": "failure", "line": runner.clean_text(line, keep_newlines=False)})

    def offer_grant(self, offer: GrantOffer) -> bool:
        return self.chat.offer(offer, self.sink)


class WebChat:
    """The browser chat: the core, one operation at a time, replies as event streams, Stop, grant answers."""

    def __init__(self, manager: PluginManager, config: WebConfig) -> None:
        self.page = _Page(self)
        self.core = ChatCore(
            manager, self.page, config.plugin, max_tokens=config.max_tokens, temperature=config.temperature, wording=PAGE_WORDS
        )
        self._busy = threading.Lock()
        self._cancel: runner.CancelToken | None = None
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    # -- replies -----------------------------------------------------------------------

    async def reply(self, text: str) -> AsyncIterator[Event]:
        """Ask the current plugin; yields the turn's events as they happen, ``done`` last. Raises :class:`Busy`."""
        if not self._busy.acquire(blocking=False):
            raise Busy("a reply or a switch is under way; Stop it or wait")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()
        token = self._cancel = runner.CancelToken()

        def emit(event: Event) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        def turn() -> None:
            try:
                self.page.sink = emit
                self.core.ask(text, token)
            except Exception as exc:  # a bug of ours a plugin's bytes reached: one line, the chat goes on
                self.core.conversation.pop_unanswered()
                emit({"type": "failure", "line": f"sandchat: unexpected {type(exc).__name__} ({exc}); the chat goes on"})
            finally:
                self.page.sink = lambda event: None
                self._cancel = None
                self._busy.release()
                emit({"type": "done"})

        threading.Thread(target=turn, name="web-turn", daemon=True).start()
        finished = False
        try:
            while not finished:
                event = await events.get()
                finished = event["type"] == "done"
                yield event
        finally:
            if not finished:
                token.cancel()  # the page went away mid-reply: end it, keep what came

    def stop(self) -> bool:
        """Cancel the reply under way (its partial text is kept); refuse its grant offer. False when none runs."""
        token = self._cancel
        with self._lock:
            for pending in self._pending.values():
                pending.answered.set()
        if token is None:
            return False
        token.cancel()
        return True

    def offer(self, offer: GrantOffer, sink: Callable[[Event], None]) -> bool:
        """Show ``offer`` on the page and wait for its one answer (on the turn's thread)."""
        key = secrets.token_urlsafe(16)
        pending = _Pending(offer, threading.Event())
        with self._lock:
            self._pending[key] = pending
        sink({"type": "grant", "id": key, "plugin": offer.plugin, "file": offer.file, "network": list(offer.network),
              "env": list(offer.env), "text": offer.text})  # fmt: skip
        try:
            pending.answered.wait(GRANT_WAIT)
            return pending.yes
        finally:
            with self._lock:
                self._pending.pop(key, None)

    def answer_grant(self, key: str, yes: bool) -> bool:
        """The page's answer to offer ``key``; False when there is no such offer (answered, expired, never made)."""
        with self._lock:
            pending = self._pending.pop(key, None)
        if pending is None:
            return False
        pending.yes = yes is True
        pending.answered.set()
        return True

    # -- the rest of the chat ----------------------------------------------------------

    def _exclusive(self, work: Callable[[], Any]) -> tuple[Any, list[Event]]:
        """Run ``work`` (on the caller's thread) as the one operation now; what the core told, as events."""
        if not self._busy.acquire(blocking=False):
            raise Busy("a reply or a switch is under way; Stop it or wait")
        told: list[Event] = []
        try:
            self.page.sink = told.append
            return work(), told
        finally:
            self.page.sink = lambda event: None
            self._busy.release()

    def switch(self, name: str) -> tuple[bool, list[Event]]:
        """Make ``name`` the current plugin, the conversation kept (blocking: run it off the event loop)."""
        return self._exclusive(lambda: self.core.switch(name))

    def set_system(self, text: str) -> list[Event]:
        def change() -> None:
            self.core.conversation.system = text
            self.core.notice("System prompt set; it applies from your next message." if text else "System prompt removed.")

        return self._exclusive(change)[1]

    def new(self) -> list[Event]:
        def reset() -> None:
            self.core.conversation.reset()
            self.core.notice("New conversation; the system prompt is kept.")

        return self._exclusive(reset)[1]

    def open(self, conversation: str) -> list[Event] | None:
        """Reopen a logged conversation to go on with; None when logs.db has no such conversation."""
        exchanges = self.core.log.conversation(conversation)
        if not exchanges:
            return None

        def reopen() -> None:
            self.core.open_logged(exchanges)
            self.core.notice(f"Reopened a conversation of {len(exchanges)} exchange{'s' if len(exchanges) != 1 else ''}.")

        return self._exclusive(reopen)[1]

    def messages(self) -> list[dict[str, str]]:
        """The conversation for the page: each message's role, plugin, text, and (replies) sanitised HTML."""
        replies = self.core.sources.of(self.core.conversation)
        shown = []
        for index, message in enumerate(self.core.conversation.messages):
            entry = {"role": message["role"], "text": runner.clean_text(message["content"])}
            if message["role"] == "assistant":
                source = replies.get(index)
                entry.update(html=to_html(message["content"]), plugin=source.plugin if source else "")
            shown.append(entry)
        return shown

    def survey(self, done: Callable[[int], None] = lambda checked: None) -> None:
        """Start the chat's plugin, then each other plugin once, one at a time, on a background thread.

        The list can then say which are ready and why not: what a start finds (ready, not
        ready and why, a load error, a quarantine) is kept as the terminal menu keeps it. The
        chat's own plugin stays up, so the first answer does not pay for its start; the others
        are stopped again at once. ``done`` is told how many were checked, when all were.
        """

        def each() -> None:
            manager = self.core.manager
            current = self.core.plugin_name
            names = [current, *(name for name in manager.names() if name != current and not manager.is_disabled(name))]
            checked = 0
            for name in names:
                try:
                    handle = manager.handle(name)
                except runner.PluginError:
                    continue
                checked += 1
                try:
                    handle.start()
                    self.core.readiness[name] = handle.readiness()
                except runner.PluginError:
                    pass  # its state and last error say why; the chat reports it when asked
                finally:
                    if name != self.core.plugin_name and handle.state in ("ready", "starting"):
                        handle.stop()
            done(checked)

        threading.Thread(target=each, name="web-survey", daemon=True).start()

    def plugins(self) -> list[dict[str, str]]:
        """Each plugin as the page lists it: ``state`` and ``why`` read "ready", "not ready: why", "failed: why"..."""
        listed = []
        for row in self.core.rows():
            state, why = row.state, row.why
            known = self.core.readiness.get(row.name)
            if why.startswith(", not ready: "):
                state, why = "not ready", ": " + why.removeprefix(", not ready: ")
            elif state == "stopped" and known is not None and known.ready:
                state = "ready"  # checked when the page opened, then stopped until it is chosen
            listed.append({"name": row.name, "state": state, "why": why, "description": row.description})
        return listed

    def close(self) -> None:
        self.stop()
        self.core.close()
