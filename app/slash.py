"""Slash commands of the chat: ``/plugin``, ``/tokens``, ``/save`` and the rest.

Each command is a function ``(session, ui, argument) -> bool`` (False means leave the
chat), registered in :data:`COMMANDS` with a one-line help text.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from app.chat import ChatSession

__all__ = ["COMMANDS", "UI", "run_command"]


class UI(Protocol):
    """What commands need from the terminal front end."""

    def choose_plugin(self, session: ChatSession) -> str | None: ...


Command = Callable[["ChatSession", UI, str], bool]
COMMANDS: dict[str, tuple[Command, str]] = {}


def _command(name: str, help_text: str) -> Callable[[Command], Command]:
    def register(func: Command) -> Command:
        COMMANDS[name] = (func, help_text)
        return func

    return register


def run_command(session: ChatSession, ui: UI, line: str) -> bool:
    """Run one ``/command argument`` line; return False when the chat should end."""
    name, _, argument = line.strip().partition(" ")
    entry = COMMANDS.get(name)
    if entry is None:
        session.output.error(f"unknown command {name}; commands are: {', '.join(sorted(COMMANDS))}")
        return True
    return entry[0](session, ui, argument.strip())


@_command("/help", "show the commands")
def _help(session: ChatSession, ui: UI, argument: str) -> bool:
    width = max(map(len, COMMANDS))
    lines = [f"  {name.ljust(width)}  {text}" for name, (_, text) in sorted(COMMANDS.items())]
    session.output.write(
        "\n".join(lines) + "\n  Enter sends; Esc then Enter (or Alt-Enter) adds a line; Ctrl-C stops a reply; Ctrl-D leaves\n"
    )
    return True


@_command("/exit", "leave the chat")
def _exit(session: ChatSession, ui: UI, argument: str) -> bool:
    return False


@_command("/plugin", "choose the plugin (menu), or /plugin NAME to switch directly")
def _plugin(session: ChatSession, ui: UI, argument: str) -> bool:
    name = argument or ui.choose_plugin(session)
    if name and name != session.plugin_name:
        session.switch(name)
    return True


@_command("/plugins", "list plugins and their states")
def _plugins(session: ChatSession, ui: UI, argument: str) -> bool:
    from app.render import table

    manager = session.manager
    rows, reasons = [], []
    for name in manager.names():
        known = session.readiness.get(name)
        ready = "-" if known is None else ("yes" if known.ready else "no")
        rows.append(
            [
                ("* " if name == session.plugin_name else "  ") + name,
                manager.state(name),
                ready,
                manager.discovery.plugins[name].metadata.description,
            ]
        )
        if known is not None and not known.ready:
            reasons.append(f"  {name}: not ready: {known.reason}")
    session.output.write(table(rows, ["  NAME", "STATE", "READY", "DESCRIPTION"]) + "\n" + "".join(r + "\n" for r in reasons))
    return True


@_command("/health", "start, ping and probe every plugin")
def _health(session: ChatSession, ui: UI, argument: str) -> bool:
    import threading

    from app.health import health_text, probe
    from app.interrupt import interruptible
    from app.stream import Spinner

    names = argument.split() or session.manager.names()
    before = {name for name, handle in session.manager.handles().items() if handle.running}
    spinner = Spinner(session.output, "checking plugins…")
    cancelled = threading.Event()

    def probe_each() -> list[dict[str, Any]]:
        spinner.start()  # here, not in the main thread: a Ctrl-C must not land in Thread.start
        reports = []
        try:
            for name in names:
                if cancelled.is_set():
                    break  # Ctrl-C: the plugins not reached yet are not started at all
                spinner.label = f"checking {name}…"
                reports.append(probe(session.manager, name))
        finally:  # cancelled too: a plugin only the probe wanted does not stay up for the rest of the chat
            session.stop_started(before)
        return reports

    def cancel() -> None:
        cancelled.set()
        session.stop_started(before)  # a start in progress ends now rather than at its deadline

    try:
        reports = interruptible(probe_each, cancel, name="health")
    finally:
        spinner.stop()
    session.output.write(health_text(reports, as_json=False) + "\n")
    return True


@_command("/system", "set the system prompt (/system alone shows it)")
def _system(session: ChatSession, ui: UI, argument: str) -> bool:
    if argument:
        session.conversation.system = argument
        session.notice("System prompt set; it applies from your next message.")
    else:
        session.output.write((session.conversation.system or "(no system prompt)") + "\n")
    return True


@_command("/tokens", "show how the context window is spent")
def _tokens(session: ChatSession, ui: UI, argument: str) -> bool:
    from app.interrupt import interruptible

    text, failed = interruptible(session.token_report, name="tokens")  # Ctrl-C: the start goes on, as a warm-up
    if failed:
        session.output.error(text)
    else:
        session.output.write(text + "\n")
    return True


@_command("/reload", "rescan the plugin folders now (they are also watched)")
def _reload(session: ChatSession, ui: UI, argument: str) -> bool:
    session.reload()
    return True


@_command("/reset", "start a new conversation (the system prompt stays)")
def _reset(session: ChatSession, ui: UI, argument: str) -> bool:
    session.conversation.reset()
    session.notice("New conversation; the system prompt is kept.")
    return True


@_command("/save", "save the conversation as Markdown: /save FILE")
def _save(session: ChatSession, ui: UI, argument: str) -> bool:
    if not argument:
        session.output.error("usage: /save FILE")
        return True
    path = Path(argument).expanduser()
    try:
        session.save(path)
    except OSError as exc:
        session.output.error(f"cannot save to {path}: {exc.strerror or exc}")
        return True
    session.notice(f"Saved {len(session.conversation.messages)} messages to {path}.")
    return True
