"""The interactive chat: read a line, stream the reply, keep the history, survive the plugin.

The selected plugin starts in the background as the chat opens. Ctrl-C during a reply
cancels it and keeps the partial answer (marked); Ctrl-D or ``/exit`` leaves. A
plugin failure costs one line and never the conversation.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import runner
from app.chatlog import ChatLog, Exchange
from app.history import Conversation, TooLong
from app.tokencache import TokenCounter

if TYPE_CHECKING:
    from app.manager import PluginManager
    from app.render import Output

__all__ = ["ChatSession"]

CANCELLED_MARK = " ⏹ [cancelled]"
INCOMPLETE_MARK = " ⚠ [incomplete]"
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class _Spinner:
    """A spinner on its own thread until the first chunk (or an error) arrives."""

    def __init__(self, output: Output, label: str) -> None:
        self._output, self._label = output, label
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._output.interactive:
            self._thread = threading.Thread(target=self._spin, name="spinner", daemon=True)
            self._thread.start()

    def _spin(self) -> None:
        frame = 0
        while not self._done.wait(0.1 if frame else 0.15):
            self._output.raw(f"\r{_SPINNER[frame % len(_SPINNER)]} {self._label}")
            frame += 1
        if frame:
            self._output.raw("\r\x1b[K")

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _show(output: Output, piece: str, parts: list[str]) -> None:
    """Write a cleaned piece of the reply and keep it."""
    if piece:
        output.write(piece)
        parts.append(piece)


class ChatSession:
    """One chat in the terminal: the conversation, the current plugin, the log."""

    def __init__(self, manager: PluginManager, output: Output, plugin: str, *, max_tokens: int, temperature: float) -> None:
        self.manager = manager
        self.output = output
        self.plugin = plugin
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.conversation = Conversation()
        self.log = ChatLog(manager.paths.logs_db)
        self.last_budget: Any = None
        self._counters: dict[str, TokenCounter] = {}
        self._stop = threading.Event()
        self.notices: list[str] = []  # from background threads, printed before the next prompt
        self.readiness: dict[str, runner.Readiness] = {}  # each plugin's last check(), from warm()
        self.confirm: Callable[[str], bool] = lambda question: False

    # -- plugins -------------------------------------------------------------------------

    def warm(self, name: str) -> None:
        """Start ``name`` in the background so the first answer does not pay for it."""

        def start() -> None:
            try:
                client = self.manager.client(name)
                client.start()
                self.readiness[name] = client.readiness()  # for the menu and /tokens; spends no tokens
            except runner.PluginError:
                pass  # reported when the user actually asks this plugin something

        threading.Thread(target=start, name=f"warm-{name}", daemon=True).start()

    def switch(self, name: str) -> bool:
        if name not in self.manager.names():
            self.output.error(f"plugin {name!r} is not installed (available: {', '.join(self.manager.names())})")
            return False
        self.plugin = name
        self.warm(name)
        self.output.notice(f"now chatting with {name!r}; the conversation is kept")
        return True

    def counter(self, client: runner.Plugin) -> TokenCounter:
        counter = self._counters.get(self.plugin)
        if counter is None or counter.client is not client:
            counter = self._counters[self.plugin] = TokenCounter(client)
        return counter

    def watch_liveness(self, every: float = 30.0) -> None:
        """Ping idle plugins now and then; a wedged one is restarted before the user waits on it."""

        def loop() -> None:
            while not self._stop.wait(every):
                self.manager.check_idle()

        threading.Thread(target=loop, name="liveness", daemon=True).start()

    def watch_plugins(self) -> None:
        """Notice added, changed and removed plugin files while the chat runs."""
        self.manager.watch(lambda changes: self.notices.append(changes.describe()))

    def reload(self) -> None:
        changes = self.manager.refresh()
        self.output.notice(changes.describe() if changes else "no plugin changes")

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
        return len(exchanges)

    def ask(self, text: str) -> None:
        """Send ``text`` with the history to the current plugin and stream the reply."""
        try:
            client = self.manager.client(self.plugin)
        except runner.PluginError as exc:
            self._failed(exc, text)
            return
        self.conversation.add("user", text)
        began = time.monotonic()
        try:
            client.start()  # its hello says its window: read before the process exists, it would be the default
            messages, self.last_budget = self.conversation.fit(self.counter(client), client.context_window, self.max_tokens)
        except TooLong as exc:
            self.conversation.pop_unanswered()
            self.output.error(f"plugin {self.plugin!r}: {exc}; shorten it or /plugin to a larger model")
            return
        except runner.PluginError as exc:
            self.conversation.pop_unanswered()
            self._failed(exc, text)
            return
        parts, error, cancelled = self._stream(client, messages)
        response = "".join(parts)
        if error is None and not cancelled and not response.strip():
            error = runner.PluginResultError(self.plugin, "returned an empty answer")  # never a silent success
        if response.strip():
            self.conversation.add("assistant", response)
        else:
            self.conversation.pop_unanswered()  # nothing came (cancelled first, failed, empty): ↑ resends it
        self._log(text, response, messages, began, error, cancelled)
        if error is not None:
            self._failed(error, text)

    def _stream(self, client: runner.Plugin, messages: list[dict[str, str]]) -> tuple[list[str], runner.PluginError | None, bool]:
        out = self.output
        parts: list[str] = []  # the cleaned reply: what was shown is what the history keeps
        cleaner = runner.StreamCleaner()  # one per reply: an escape split across chunks goes whole
        spinner = _Spinner(out, f"{self.plugin} is thinking…")
        spinner.start()
        chunks = client.stream_chat(self.conversation.system, messages, self.max_tokens, self.temperature)
        try:
            for chunk in chunks:
                spinner.stop()
                _show(out, cleaner.feed(chunk), parts)
        except KeyboardInterrupt:
            spinner.stop()
            chunks.close()  # tells the plugin to stop; it is killed if it does not
            _show(out, cleaner.flush(), parts)
            out.raw(out.dim(CANCELLED_MARK) + "\n")
            return parts, None, True
        except runner.PluginError as exc:
            spinner.stop()
            _show(out, cleaner.flush(), parts)
            if parts:
                out.raw(out.dim(INCOMPLETE_MARK) + "\n")  # what came is kept; the error line follows
            return parts, exc, isinstance(exc, runner.PluginCancelled)
        spinner.stop()
        _show(out, cleaner.flush(), parts)
        out.write("\n" if parts and not parts[-1].endswith("\n") else "")
        return parts, None, False

    def _log(self, prompt: str, response: str, messages: list[dict[str, str]], began: float, error: Exception | None, cancelled: bool) -> None:
        counter = self._counters.get(self.plugin)
        prompt_tokens = response_tokens = None
        if counter is not None and error is None:
            try:
                prompt_tokens = sum(counter.count_many([m["content"] for m in messages]))
                response_tokens = counter.count(response) if response else 0
            except runner.PluginError:
                pass
        self.log.add(Exchange(
            conversation=self.conversation.id, plugin=self.plugin, system=self.conversation.system,
            prompt=prompt, response=response, prompt_tokens=prompt_tokens, response_tokens=response_tokens,
            duration_s=round(time.monotonic() - began, 4), error=str(error) if error else None, cancelled=cancelled,
        ))  # fmt: skip

    def _failed(self, exc: runner.PluginError, text: str) -> None:
        """One line on what happened and what to do; offer a grant when one is missing."""
        self.output.error(f"{exc} — your conversation is kept; press ↑ to resend, or /plugin to switch")
        fix = self.manager.fix_for(exc.plugin, exc)
        if fix is None or not isinstance(exc, (runner.PluginRaised, runner.PluginStartError)):
            return
        if fix.grants and self.confirm(f"{fix.text}\ngrant it now? [y/N] "):
            plugin = self.manager.plugin_file(exc.plugin)
            from app.grants import file_sha256

            self.manager.grants.add(plugin.name, file_sha256(plugin.path), fix.network, fix.env)  # adds: what works stays
            self.manager.forget(plugin.name)
            self.output.notice(f"granted {plugin.name!r} {', '.join(fix.network + fix.env)}; press ↑ and Enter to resend")
        elif not fix.grants:
            self.output.notice(fix.text)

    def save(self, path: Path) -> None:
        """Write the conversation as a Markdown transcript."""
        lines = ["# sandchat transcript", ""]
        if self.conversation.system:
            lines += [f"*System:* {self.conversation.system}", ""]
        for message in self.conversation.messages:
            who = "You" if message["role"] == "user" else "Assistant"
            lines += [f"**{who}:**", "", message["content"], ""]
        path.write_text("\n".join(lines), encoding="utf-8")
