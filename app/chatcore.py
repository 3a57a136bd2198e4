"""The chat core: one conversation with the current plugin, whatever front end shows it.

The terminal chat (``app.chat``) and the browser chat (``app.web``) share this: the
conversation and which plugin answers it, switching plugin with the history kept,
fitting the history to the plugin's window, logging each exchange to ``logs.db``,
cancelling a reply (Ctrl-C, or a :class:`runner.CancelToken` from another thread) with
the partial answer kept, the one line a failure costs, and the grant a failure offers.
What it has to show goes to a :class:`FrontEnd`; spinners, wrapping, pages are theirs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import runner
from app.access import grant_more
from app.chatlog import ChatLog, Exchange
from app.hints import hint_for
from app.history import Conversation, TooLong
from app.refusals import NotInstalled
from app.tokencache import TokenCounter
from app.transcript import Reply, Sources, markdown

if TYPE_CHECKING:
    from app.manager import Changes, PluginManager

__all__ = ["ChatCore", "FrontEnd", "GrantOffer", "Outcome", "PluginRow", "Wording", "describe"]


@dataclass(frozen=True)
class Outcome:
    """How a streamed reply ended: completely, cancelled (the partial text is kept), or cut by an error."""

    cancelled: bool = False
    incomplete: bool = False  # an error ended it after some text came; the failure line follows
    text: str = ""  # the whole cleaned reply, as the history keeps it


@dataclass(frozen=True)
class GrantOffer:
    """A grant a failure calls for, exactly what a yes would add, and the line that explains it."""

    plugin: str
    file: str  # the plugin file's name the grant is bound to
    network: tuple[str, ...]
    env: tuple[str, ...]
    text: str  # cleaned, one line

    @property
    def what(self) -> str:
        return ", ".join(self.network + self.env)


@dataclass(frozen=True)
class Wording:
    """How a front end says "send it again" and "choose another plugin", in the lines the core writes."""

    resend: str = "press ↑ to resend"
    switch: str = "/plugin to switch"
    larger: str = "/plugin to a larger model"
    resend_after_grant: str = "press ↑ and Enter to resend"


@dataclass(frozen=True)
class PluginRow:
    """One plugin as a chooser lists it: name, state, why it cannot answer (or ""), description (cleaned)."""

    name: str
    state: str
    why: str
    description: str


class FrontEnd(Protocol):
    """What the core tells the user through; every method is called on the thread running the turn."""

    def waiting(self, label: str) -> None:
        """The reply is awaited (the label says on what: starting the plugin, thinking)."""

    def chunk(self, text: str) -> None:
        """A cleaned piece of the reply, as it arrives."""

    def ended(self, outcome: Outcome) -> None:
        """The reply stream ended (after its last chunk, before any failure line)."""

    def aside(self, line: str) -> None:
        """A remark on the reply just shown (it stopped at the token limit)."""

    def notice(self, line: str) -> None:
        """Something that happened, in one line."""

    def failure(self, line: str) -> None:
        """What went wrong, in one line; the chat goes on."""

    def offer_grant(self, offer: GrantOffer) -> bool:
        """Ask whether to grant exactly ``offer``; True only for an explicit yes."""


def describe(changes: Changes) -> str:
    """A rescan's findings as one sentence."""
    parts = [
        f"{word} {', '.join(names)}"
        for word, names in (("added", changes.added), ("changed", changes.changed), ("removed", changes.removed))
        if names
    ]
    return f"Plugins changed: {'; '.join(parts)}." if parts else "No plugin changes."


class ChatCore:
    """One chat: the conversation, the current plugin, the log; what it shows goes to ``front``."""

    def __init__(
        self,
        manager: PluginManager,
        front: FrontEnd,
        plugin_name: str,
        *,
        max_tokens: int,
        temperature: float | None,
        wording: Wording = Wording(),
    ) -> None:
        self.manager = manager
        self.front = front
        self.wording = wording
        self.plugin_name = plugin_name  # the current plugin: the one that answers the next message
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.conversation = Conversation()
        self.log = ChatLog(manager.paths.logs_db)
        self.last_budget: Any = None
        self._counters: dict[str, TokenCounter] = {}
        self._stop = threading.Event()
        self.notices: list[str] = []  # from background threads, told before the next thing the chat says
        self.sources = Sources()  # which plugin gave each reply: kept beside the messages, never sent
        self.readiness: dict[str, runner.Readiness] = {}  # each plugin's last check(), from warm() or a switch

    # -- plugins -------------------------------------------------------------------------

    def warm(self, name: str) -> None:
        """Start ``name`` in the background so the first answer does not pay for it."""

        def start() -> None:
            try:
                handle = self.manager.handle(name)
                handle.start()
                self.readiness[name] = handle.readiness()  # for the menu and /tokens; spends no tokens
            except runner.PluginError:
                pass  # reported when the user actually asks this plugin something

        threading.Thread(target=start, name=f"warm-{name}", daemon=True).start()

    def notice(self, message: str) -> None:
        """Tell a notice after those the background threads queued, so they read in the order they happened."""
        self.flush_notices()
        self.front.notice(message)

    def failure(self, line: str) -> None:
        self.flush_notices()
        self.front.failure(line)

    def flush_notices(self) -> None:
        while self.notices:
            self.front.notice(self.notices.pop(0))

    def switch(self, name: str) -> bool:
        """Make ``name`` the current plugin if it can be used: it is started now (:meth:`start_for_switch`).

        A plugin that cannot start (disabled, quarantined, a syntax or load error) is
        reported and the current plugin stays: a failed plugin never becomes current
        silently. A plugin that starts but says it is not ready is switched to, with
        its reason (the user may be about to set its key). The conversation is kept.
        """
        if name not in self.manager.names():
            self.failure(str(NotInstalled(name, self.manager.names())))
            return False
        try:
            readiness = self.readiness[name] = self.start_for_switch(name)
        except runner.PluginError as exc:
            self.failure(f"{exc}; still chatting with {self.plugin_name!r}")
            return False
        self.plugin_name = name
        why = "" if readiness.ready else f", but it is not ready: {readiness.reason}"
        self.notice(f"Now chatting with {name!r}{why}; the conversation is kept.")
        return True

    def start_for_switch(self, name: str) -> runner.Readiness:
        """Start ``name`` and ask if it is ready (a front end may wrap this in a spinner or make it interruptible)."""
        handle = self.manager.handle(name)
        handle.start()
        return handle.readiness()

    def stop_started(self, before: set[str]) -> None:
        """Stop the plugins running now but not in ``before`` (say, started by /health) that the chat is not using."""
        for name, handle in self.manager.handles().items():
            if name not in before and name != self.plugin_name and handle.state in ("ready", "starting"):
                handle.stop()  # the handle stays: the next use starts it again

    def counter(self, handle: runner.Plugin) -> TokenCounter:
        counter = self._counters.get(self.plugin_name)
        if counter is None or counter.client is not handle:
            counter = self._counters[self.plugin_name] = TokenCounter(handle)
        return counter

    def rows(self) -> list[PluginRow]:
        """Every plugin with its state and why it cannot answer, for a chooser (the terminal menu, the page's)."""
        manager = self.manager
        return [
            PluginRow(name, manager.state(name), self._why(name, manager.state(name)),
                      runner.clean_text(manager.discovery.plugins[name].metadata.description, keep_newlines=False))
            for name in manager.names()
        ]  # fmt: skip

    def _why(self, name: str, state: str) -> str:
        """Why a plugin cannot answer, in words: its last error without the "plugin 'x'" prefix; "" when it can."""
        plugin_file = self.manager.discovery.plugins[name]
        handle = self.manager.handles().get(name)
        if state == "disabled":
            return ""
        if plugin_file.metadata_error:
            return ": " + runner.clean_text(plugin_file.metadata_error, keep_newlines=False)
        if state in ("failed", "quarantined", "restarting") and handle is not None and handle.stats.last_error:
            return ": " + runner.clean_text(handle.stats.last_error.removeprefix(f"plugin {name!r} "), keep_newlines=False)
        known = self.readiness.get(name)
        if known is not None and not known.ready:
            return ", not ready: " + runner.clean_text(known.reason, keep_newlines=False)
        return ""

    def watch_liveness(self, every: float = 30.0) -> None:
        """Ping idle plugins now and then; a wedged one is restarted before the user waits on it."""

        def loop() -> None:
            while not self._stop.wait(every):
                self.manager.check_idle()

        threading.Thread(target=loop, name="liveness", daemon=True).start()

    def watch_plugins(self) -> None:
        """Notice added, changed and removed plugin files while the chat runs."""
        self.manager.watch(lambda changes: self.notices.append(describe(changes)))

    def close(self) -> None:
        self._stop.set()

    # -- conversations -------------------------------------------------------------------

    def open_logged(self, exchanges: list[Exchange]) -> None:
        """Make the logged ``exchanges`` (one conversation's) the conversation, to go on with."""
        self.conversation = Conversation(system=exchanges[-1].system, id=exchanges[-1].conversation)
        for exchange in exchanges:
            if exchange.error is None or exchange.response:
                self.conversation.add("user", exchange.prompt)
                self.conversation.add("assistant", exchange.response)
                self.sources.of(self.conversation)[len(self.conversation.messages) - 1] = Reply(exchange.plugin, exchange.system)

    def token_report(self) -> tuple[str, bool]:
        """What /tokens says, and whether it is an error; it tells the front end nothing (see app.interrupt)."""
        try:
            handle = self.manager.handle(self.plugin_name)
            handle.start()  # the window is the running plugin's word, not the default
            _, budget = self.conversation.fit(self.counter(handle), handle.context_window, self.max_tokens)
        except TooLong as exc:  # the newest message is a long reply: the next send keeps the new message, not it
            return (
                f"context window {handle.context_window} tokens ({self.plugin_name}): the newest message alone needs "
                f"{exc.needed} of the {exc.available} left after the reply budget, so your next message goes without "
                f"the earlier history (it is trimmed, not lost: /save keeps it)"
            ), False
        except (runner.PluginError, ValueError) as exc:
            return str(exc), True
        try:
            counting = handle.token_counting()
        except runner.PluginError:
            counting = "estimate? the plugin could not say how it counts"
        label = f"; counts are an {counting}" if counting.lower().startswith("estimate") else ""
        return (
            f"context window {budget.window} tokens ({self.plugin_name}): system {budget.system}, "
            f"history {budget.history} ({budget.kept} messages kept, {budget.dropped} trimmed), "
            f"reply budget {budget.reply}, free {budget.free}{label}"
        ), False

    def save(self, path: Path) -> None:
        """Write the conversation as a Markdown transcript: each reply's plugin, each system prompt change."""
        path.write_text(markdown(self.conversation, self.sources.of(self.conversation)), encoding="utf-8")

    # -- replies -------------------------------------------------------------------------

    def ask(self, text: str, cancel: runner.CancelToken | None = None) -> None:
        """Send ``text`` with the history to the current plugin and stream the reply to the front end.

        ``cancel`` ends the reply from another thread, as Ctrl-C does on this one: the partial
        answer is kept and logged as cancelled.
        """
        began = time.monotonic()
        name = self.plugin_name
        self.front.waiting(f"{name} is thinking…")  # at once: starting the plugin and counting tokens can take seconds
        try:
            handle = self.manager.handle(name)
            self.conversation.add("user", text)
            if not handle.running:
                self.front.waiting(f"starting {name}…")
            handle.start()  # its hello says its window: read before the process exists, it would be the default
            self.front.waiting(f"{name} is thinking…")
            messages, self.last_budget = self.conversation.fit(self.counter(handle), handle.context_window, self.max_tokens)
        except TooLong as exc:
            self.conversation.pop_unanswered()
            self.failure(f"plugin {name!r}: {exc}; shorten it or {self.wording.larger}")
            return
        except runner.PluginError as exc:
            self.conversation.pop_unanswered()
            self._failed(exc)
            return
        response, error, cancelled = self._stream(handle, messages, cancel)
        if error is None and not cancelled and not response.strip():
            error = runner.PluginResultError(name, "returned an empty answer")  # never a silent success
        if response.strip():
            self.conversation.add("assistant", response)
            self.sources.note(self.conversation, name)
        else:
            self.conversation.pop_unanswered()  # nothing came (cancelled first, failed, empty): ↑ resends it
        reply_tokens = self._log(text, response, messages, began, error, cancelled)
        if error is None and not cancelled and reply_tokens is not None and reply_tokens >= self.max_tokens:
            self.front.aside(f" ⚠ [stopped at the {self.max_tokens}-token limit; chat --max-tokens N allows more]")
        if error is not None:
            self._failed(error)

    def _stream(
        self, handle: runner.Plugin, messages: list[dict[str, str]], cancel: runner.CancelToken | None
    ) -> tuple[str, runner.PluginError | None, bool]:
        """Stream the reply to the front end: the cleaned text, the error that ended it, whether it was cancelled."""
        parts: list[str] = []  # the cleaned reply: what was shown is what the history keeps
        cleaner = runner.StreamCleaner()  # one per reply: an escape split across chunks goes whole
        chunks = handle.stream_chat(self.conversation.system, messages, self.max_tokens, self.temperature, cancel=cancel)

        def show(piece: str) -> None:
            if piece:
                parts.append(piece)
                self.front.chunk(piece)

        try:
            for chunk in chunks:
                show(cleaner.feed(chunk))
        except KeyboardInterrupt:
            chunks.close()  # tells the plugin to stop; it is killed if it does not
            show(cleaner.flush())
            self.front.ended(Outcome(cancelled=True, text="".join(parts)))
            return "".join(parts), None, True
        except runner.PluginError as exc:
            show(cleaner.flush())
            if cancel is not None and cancel.cancelled and isinstance(exc, runner.PluginCancelled):
                self.front.ended(Outcome(cancelled=True, text="".join(parts)))  # the user's Stop: no failure line
                return "".join(parts), None, True
            self.front.ended(Outcome(incomplete=bool(parts), text="".join(parts)))  # what came is kept; the error line follows
            return "".join(parts), exc, isinstance(exc, runner.PluginCancelled)
        show(cleaner.flush())
        self.front.ended(Outcome(text="".join(parts)))
        return "".join(parts), None, False

    def _log(
        self, prompt: str, response: str, messages: list[dict[str, str]], began: float, error: Exception | None, cancelled: bool
    ) -> int | None:
        """Append the exchange to logs.db; the reply's token count, when it was counted."""
        counter = self._counters.get(self.plugin_name)
        prompt_tokens = response_tokens = None
        counting = ""
        if counter is not None and error is None:
            try:
                prompt_tokens = sum(counter.count_many([m["content"] for m in messages]))
                response_tokens = counter.count(response) if response else 0
                counting = counter.client.token_counting()  # so `sandchat logs` can label an estimate
            except runner.PluginError:
                pass
        self.log.add(Exchange(
            conversation=self.conversation.id, plugin=self.plugin_name, system=self.conversation.system,
            prompt=prompt, response=response, prompt_tokens=prompt_tokens, response_tokens=response_tokens,
            duration_s=round(time.monotonic() - began, 4), error=str(error) if error else None, cancelled=cancelled,
            counting=counting,
        ))  # fmt: skip
        return response_tokens

    def _failed(self, exc: runner.PluginError) -> None:
        """One line on what happened and what to do; offer a grant when one is missing."""
        from app.pluginlog import log_traceback

        log_traceback(self.manager.paths.plugin_logs, exc)  # file and line for `plugins logs NAME`; here, one line
        self.failure(f"{exc} — your conversation is kept; {self.wording.resend}, or {self.wording.switch}")
        fix = hint_for(self.manager, exc.plugin, exc)
        if fix is None or not isinstance(exc, (runner.PluginRaised, runner.PluginStartError)):
            return
        if not fix.grants:
            self.front.notice(fix.text)
            return
        plugin_file = self.manager.plugin_file(exc.plugin)
        offer = GrantOffer(exc.plugin, plugin_file.name, fix.network, fix.env, runner.clean_text(fix.text, keep_newlines=False))
        if self.front.offer_grant(offer):
            grant_more(plugin_file, self.manager.grants, fix.network, fix.env)  # adds: what works (its own or shipped) stays
            self.manager.forget(plugin_file.name)
            self.front.notice(f"Granted {plugin_file.name!r} {offer.what}; {self.wording.resend_after_grant}.")
