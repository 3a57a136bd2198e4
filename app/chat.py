"""The interactive chat: read a line, stream the reply, keep the history, survive the plugin.

The selected plugin starts in the background as the chat opens. Ctrl-C during a reply
cancels it and keeps the partial answer (marked); Ctrl-D or ``/exit`` leaves. A
plugin failure costs one line and never the conversation.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import runner
from app.access import grant_more
from app.chatlog import ChatLog, Exchange
from app.hints import hint_for
from app.history import Conversation, TooLong
from app.interrupt import interruptible
from app.refusals import NotInstalled
from app.stream import Spinner, WordWrap
from app.tokencache import TokenCounter
from app.transcript import Reply, Sources, markdown, recap

if TYPE_CHECKING:
    from app.manager import Changes, PluginManager
    from app.render import Output

__all__ = ["ChatSession"]

CANCELLED_MARK = " ⏹ [cancelled]"
INCOMPLETE_MARK = " ⚠ [incomplete]"


def _show(wrap: WordWrap, piece: str, parts: list[str]) -> None:
    """Write a cleaned piece of the reply and keep it (unwrapped: the breaks are the terminal's business)."""
    if piece:
        wrap.feed(piece)
        parts.append(piece)


def describe(changes: Changes) -> str:
    """A rescan's findings as one sentence."""
    parts = [
        f"{word} {', '.join(names)}"
        for word, names in (("added", changes.added), ("changed", changes.changed), ("removed", changes.removed))
        if names
    ]
    return f"Plugins changed: {'; '.join(parts)}." if parts else "No plugin changes."


class ChatSession:
    """One chat in the terminal: the conversation, the current plugin, the log."""

    def __init__(
        self,
        manager: PluginManager,
        output: Output,
        plugin_name: str,
        *,
        max_tokens: int,
        temperature: float | None,
        confirm: Callable[[str], bool] = lambda question: False,
    ) -> None:
        """``confirm`` asks the user a yes/no question (the terminal's ``YesNo``); without one, every answer is no."""
        self.manager = manager
        self.output = output
        self.plugin_name = plugin_name  # the current plugin: the one that answers the next message
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.conversation = Conversation()
        self.log = ChatLog(manager.paths.logs_db)
        self.last_budget: Any = None
        self._counters: dict[str, TokenCounter] = {}
        self._stop = threading.Event()
        self.notices: list[str] = []  # from background threads, printed before the next prompt
        self.sources = Sources()  # which plugin gave each reply: kept beside the messages, never sent
        self._recap: list[Exchange] = []  # the resumed conversation's exchanges, until shown
        self.readiness: dict[str, runner.Readiness] = {}  # each plugin's last check(), from warm()
        self.confirm = confirm

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
        """Print a notice after those the background threads queued, so they read in the order they happened."""
        self.flush_notices()
        self.output.notice(message)

    def flush_notices(self) -> None:
        while self.notices:
            self.output.notice(self.notices.pop(0))

    def switch(self, name: str) -> bool:
        """Make ``name`` the current plugin if it can be used: it is started now, with a spinner.

        A plugin that cannot start (disabled, quarantined, a syntax or load error) is
        reported and the current plugin stays: a failed plugin never becomes current
        silently. A plugin that starts but says it is not ready is switched to, with
        its reason (the user may be about to set its key).
        """
        if name not in self.manager.names():
            self.flush_notices()
            self.output.error(str(NotInstalled(name, self.manager.names())))
            return False
        spinner = Spinner(self.output, f"starting {name}…")
        running = {started for started, handle in self.manager.handles().items() if handle.running}
        try:
            readiness = self.readiness[name] = interruptible(
                lambda: self._start(name, spinner), lambda: self.stop_started(running), name="switch"
            )
        except runner.PluginError as exc:
            spinner.stop()
            self.flush_notices()
            self.output.error(f"{exc}; still chatting with {self.plugin_name!r}")
            return False
        finally:
            spinner.stop()  # Ctrl-C too: the line is clean for "cancelled", and the current plugin stays
        self.plugin_name = name
        why = "" if readiness.ready else f", but it is not ready: {readiness.reason}"
        self.notice(f"Now chatting with {name!r}{why}; the conversation is kept.")
        return True

    def _start(self, name: str, spinner: Spinner) -> runner.Readiness:
        """Start ``name`` and ask if it is ready, on the switch's own thread: it writes nothing but the spinner."""
        spinner.start()  # here, not in the main thread: a Ctrl-C must not land in Thread.start
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

    def watch_liveness(self, every: float = 30.0) -> None:
        """Ping idle plugins now and then; a wedged one is restarted before the user waits on it."""

        def loop() -> None:
            while not self._stop.wait(every):
                self.manager.check_idle()

        threading.Thread(target=loop, name="liveness", daemon=True).start()

    def watch_plugins(self) -> None:
        """Notice added, changed and removed plugin files while the chat runs."""
        self.manager.watch(lambda changes: self.notices.append(describe(changes)))

    def reload(self) -> None:
        """Rescan the plugin folders now and say what changed.

        Ctrl-C ends the wait, not the rescan (the stops it makes cannot be half undone): its
        findings are then queued like the watcher's and told before a later prompt.
        """
        interruptible(lambda: self.notices.append(describe(self.manager.refresh())), name="reload")
        self.flush_notices()

    def close(self) -> None:
        self._stop.set()

    # -- replies -------------------------------------------------------------------------

    def resume(self) -> int:
        """Load the last logged conversation (``chat --continue``); return its exchange count."""
        exchanges = self.log.last_conversation()
        if not exchanges:
            return 0
        self.conversation = Conversation(system=exchanges[-1].system, id=exchanges[-1].conversation)
        for exchange in exchanges:
            if exchange.error is None or exchange.response:
                self.conversation.add("user", exchange.prompt)
                self.conversation.add("assistant", exchange.response)
                self.sources.of(self.conversation)[len(self.conversation.messages) - 1] = Reply(exchange.plugin, exchange.system)
        self._recap = exchanges
        return len(exchanges)

    def show_recap(self) -> None:
        """The last few exchanges of a resumed conversation, dimmed and shortened; once."""
        width = min(shutil.get_terminal_size().columns, 100) - 2
        for line in recap(self._recap, width):
            self.output.raw(self.output.dim("  " + line) + "\n")  # recap() cleaned the logged text
        self._recap = []

    def ask(self, text: str) -> None:
        """Send ``text`` with the history to the current plugin and stream the reply.

        The spinner starts at once: starting the plugin and counting tokens can take seconds.
        """
        spinner = Spinner(self.output, f"{self.plugin_name} is thinking…")
        spinner.start()
        try:
            self._ask(text, spinner)
        finally:
            spinner.stop()  # Ctrl-C before the reply began: the line is clean for "cancelled"

    def _ask(self, text: str, spinner: Spinner) -> None:
        began = time.monotonic()
        try:
            handle = self.manager.handle(self.plugin_name)
            self.conversation.add("user", text)
            if not handle.running:
                spinner.label = f"starting {self.plugin_name}…"
            handle.start()  # its hello says its window: read before the process exists, it would be the default
            spinner.label = f"{self.plugin_name} is thinking…"
            messages, self.last_budget = self.conversation.fit(self.counter(handle), handle.context_window, self.max_tokens)
        except TooLong as exc:
            spinner.stop()
            self.conversation.pop_unanswered()
            self.output.error(f"plugin {self.plugin_name!r}: {exc}; shorten it or /plugin to a larger model")
            return
        except runner.PluginError as exc:
            spinner.stop()
            self.conversation.pop_unanswered()
            self._failed(exc, text)
            return
        parts, error, cancelled = self._stream(handle, messages, spinner)
        response = "".join(parts)
        if error is None and not cancelled and not response.strip():
            error = runner.PluginResultError(self.plugin_name, "returned an empty answer")  # never a silent success
        if response.strip():
            self.conversation.add("assistant", response)
            self.sources.note(self.conversation, self.plugin_name)
        else:
            self.conversation.pop_unanswered()  # nothing came (cancelled first, failed, empty): ↑ resends it
        reply_tokens = self._log(text, response, messages, began, error, cancelled)
        if error is None and not cancelled and reply_tokens is not None and reply_tokens >= self.max_tokens:
            self.output.raw(self.output.dim(f" ⚠ [stopped at the {self.max_tokens}-token limit; chat --max-tokens N allows more]") + "\n")
        if error is not None:
            self._failed(error, text)

    def _stream(
        self, handle: runner.Plugin, messages: list[dict[str, str]], spinner: Spinner
    ) -> tuple[list[str], runner.PluginError | None, bool]:
        out = self.output
        parts: list[str] = []  # the cleaned reply: what was shown is what the history keeps
        cleaner = runner.StreamCleaner()  # one per reply: an escape split across chunks goes whole
        wrap = WordWrap(out, shutil.get_terminal_size().columns if out.interactive else None)  # read per reply: a resize counts
        chunks = handle.stream_chat(self.conversation.system, messages, self.max_tokens, self.temperature)
        try:
            for chunk in chunks:
                spinner.stop()
                _show(wrap, cleaner.feed(chunk), parts)
        except KeyboardInterrupt:
            spinner.stop()
            chunks.close()  # tells the plugin to stop; it is killed if it does not
            _show(wrap, cleaner.flush(), parts)
            wrap.flush()
            out.raw(out.dim(CANCELLED_MARK) + "\n")
            return parts, None, True
        except runner.PluginError as exc:
            spinner.stop()
            _show(wrap, cleaner.flush(), parts)
            wrap.flush()
            if parts:
                out.raw(out.dim(INCOMPLETE_MARK) + "\n")  # what came is kept; the error line follows
            return parts, exc, isinstance(exc, runner.PluginCancelled)
        spinner.stop()
        _show(wrap, cleaner.flush(), parts)
        wrap.flush()
        out.write("\n" if parts and not parts[-1].endswith("\n") else "")
        return parts, None, False

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

    def _failed(self, exc: runner.PluginError, text: str) -> None:
        """One line on what happened and what to do; offer a grant when one is missing."""
        self.flush_notices()
        from app.pluginlog import log_traceback

        log_traceback(self.manager.paths.plugin_logs, exc)  # file and line for `plugins logs NAME`; here, one line
        self.output.error(f"{exc} — your conversation is kept; press ↑ to resend, or /plugin to switch")
        fix = hint_for(self.manager, exc.plugin, exc)
        if fix is None or not isinstance(exc, (runner.PluginRaised, runner.PluginStartError)):
            return
        if fix.grants and self.confirm(f"{runner.clean_text(fix.text, keep_newlines=False)}\ngrant it now? [y/N] "):
            plugin_file = self.manager.plugin_file(exc.plugin)
            grant_more(plugin_file, self.manager.grants, fix.network, fix.env)  # adds: what works (its own or shipped) stays
            self.manager.forget(plugin_file.name)
            self.output.notice(f"Granted {plugin_file.name!r} {', '.join(fix.network + fix.env)}; press ↑ and Enter to resend.")
        elif not fix.grants:
            self.output.notice(fix.text)

    def save(self, path: Path) -> None:
        """Write the conversation as a Markdown transcript: each reply's plugin, each system prompt change."""
        path.write_text(markdown(self.conversation, self.sources.of(self.conversation)), encoding="utf-8")
