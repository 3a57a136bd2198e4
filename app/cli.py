"""The sandchat command line: argument parsing and wiring; the commands live in app/commands/.

``sandchat`` and ``python -m app`` are the same program. Exit status: 0 on success,
1 when a plugin failed, 2 for a usage error (bad option, unknown plugin); see ``app.exits``.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NoReturn

from app.argv import command_at
from app.exits import EXIT_INTERRUPTED, EXIT_PLUGIN, EXIT_READER_LEFT, EXIT_USAGE
from app.version import version

if TYPE_CHECKING:
    from app.context import Context
    from app.settings import Settings

__all__ = ["build_parser", "main", "parse_args", "version"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other usage error
        self.exit(EXIT_USAGE, f"sandchat: {message} (see: {self.prog} --help)\n")


def _generation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-p", "--plugin", metavar="NAME", help="plugin to use (default: see 'sandchat plugins list')")
    p.add_argument("-s", "--system", default="", metavar="SYSTEM", help="system prompt")
    p.add_argument("--max-tokens", type=_positive_int, default=1024, metavar="N", help="reply budget in tokens (default 1024)")
    p.add_argument("--temperature", type=_temperature, default=None, metavar="T", help="0 to 2 (default: the plugin's own; 0.8 for most)")
    p.add_argument("--seed", type=_seed, metavar="N", help="sampling seed, for reproducible replies (plugins that sample honour it: local)")
    p.add_argument("--timeout", type=_positive_float, metavar="S", help="give up on the reply after S seconds")


def _global_options(p: argparse.ArgumentParser, *, after: int = 0) -> None:
    """--plugins-dir and --no-plugins, before the command or after it (``after``: how deep).

    After a command they land in a ``dest`` of that depth's own, with no default, so a
    subcommand's parser cannot overwrite what was given before it (argparse copies a
    subparser's namespace over its parent's); :func:`parse_args` merges them.
    """
    suffix, default = (f"_after{after}", argparse.SUPPRESS) if after else ("", None)
    p.add_argument("--plugins-dir", dest="plugins_dir" + suffix, action="append", default=default if after else [],
                   metavar="DIR", help="also load plugins from DIR (repeatable)")  # fmt: skip
    p.add_argument("--no-plugins", dest="no_plugins" + suffix, action="store_true", default=default if after else False,
                   help="safe mode: start with every plugin off")  # fmt: skip


def _whole(text: str, least: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1, "a positive whole number")


def _count(text: str) -> int:
    """A number of entries: 0 means all of them."""
    return _whole(text, 0, "a whole number (0 for all)")


def _port(text: str) -> int:
    value = _whole(text, 0, "a port number from 0 to 65535")
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {value}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):  # float() accepts 'nan' and 'inf': neither is a setting
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"must be from 0 to {2**31 - 1}, got {value}")
    return value


def _temperature(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 2:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2, got {text}")
    return value


class _Version(argparse.Action):
    """--version, looked up only when asked: importlib.metadata costs ~45 ms at every start."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        sys.stdout.write(f"sandchat {version()}\n")  # stdout, as argparse's own version action does
        parser.exit(0)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only`` (a COMMAND), the options of that command alone.

    With ``only``, the other commands are not even added: each costs a parser of its own
    (about 1 ms with argparse's message lookups), and a warm ``prompt`` pays every one before
    its first byte. The top-level usage names ``COMMAND``, not the list, so no message changes.
    """
    parser = _Parser(prog="sandchat", description="Chat with LLM plugins, each in its own sandbox. "
                     "With no COMMAND (options such as -p NAME allowed), opens the chat.")  # fmt: skip
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    _global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (text, fill) in _COMMAND_PARSERS.items():
        if only is None or only == name:
            fill(sub.add_parser(name, help=text))
    _accept_global_options(parser)
    return parser


def _prompt_parser(prompt: argparse.ArgumentParser) -> None:
    _generation_options(prompt)
    earlier = prompt.add_mutually_exclusive_group()
    earlier.add_argument("-c", "--continue", dest="resume", action="store_true", help="continue the most recent conversation")
    earlier.add_argument("--cid", metavar="ID", help="continue conversation ID (a unique prefix will do; see: sandchat logs)")
    prompt.add_argument("text", nargs="*", metavar="TEXT", help="the prompt; several words are joined with spaces")


def _chat_parser(chat: argparse.ArgumentParser) -> None:
    _generation_options(chat)
    chat.add_argument("-c", "--continue", dest="resume", action="store_true", help="resume the last conversation")


def _web_parser(web: argparse.ArgumentParser) -> None:
    _generation_options(web)
    web.add_argument("--port", type=_port, default=0, metavar="N", help="port to serve on (default: any free one)")
    web.add_argument("--host", default="127.0.0.1", metavar="HOST", help="address to serve on (default 127.0.0.1; others are warned about)")
    web.add_argument("--no-browser", action="store_true", help="print the address only; do not open a browser")


def _logs_parser(logs: argparse.ArgumentParser) -> None:
    logs.add_argument("action", nargs="?", choices=("list", "path"), default="list", help="list (default), or path: print logs.db's path")
    logs.add_argument("-n", dest="count", type=_count, default=10, metavar="N", help="the newest N (default 10; 0 for all)")
    logs.add_argument("-q", "--query", metavar="TEXT", help="only exchanges whose prompt or response has all these words")
    logs.add_argument("-p", "--plugin", metavar="NAME", help="only exchanges with this plugin")
    which = logs.add_mutually_exclusive_group()
    which.add_argument("-c", "--current", action="store_true", help="only the most recent conversation")
    which.add_argument("--cid", metavar="ID", help="only conversation ID (a unique prefix will do)")
    logs.add_argument("--json", action="store_true")


def _tokens_parser(tokens: argparse.ArgumentParser) -> None:
    tokens.add_argument("-p", "--plugin", metavar="NAME")
    tokens.add_argument("text", nargs="*", metavar="TEXT")


def _plugins_parser(plugins: argparse.ArgumentParser) -> None:
    psub = plugins.add_subparsers(dest="plugins_command", metavar="ACTION", parser_class=_Parser, required=True)
    lst = psub.add_parser("list", help="list plugins without starting them")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--all", action="store_true", help="also show skipped files and why")
    health = psub.add_parser("health", help="start, ping and probe plugins; non-zero exit if any is unhealthy")
    health.add_argument("names", nargs="*", metavar="NAME")
    health.add_argument("--json", action="store_true")
    health.add_argument("--watch", nargs="?", const=2.0, type=_positive_float, metavar="SECONDS", help="refresh in place")
    logs = psub.add_parser("logs", help="show a plugin's captured stderr")
    logs.add_argument("name", metavar="NAME")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=_positive_int, default=50, metavar="N")
    for action in ("enable", "disable"):
        toggle = psub.add_parser(action, help=f"{action} a plugin")
        toggle.add_argument("name", metavar="NAME")
    grant = psub.add_parser("grant", help="add permissions: what the plugin requests, or the --network/--env given")
    grant.add_argument("name", metavar="NAME")
    grant.add_argument("--yes", action="store_true", help="do not ask")
    grant.add_argument("--network", action="append", default=None, metavar="HOST:PORT", help="add this endpoint (repeatable)")
    grant.add_argument("--env", action="append", default=None, metavar="VAR", help="add this variable (repeatable)")
    revoke = psub.add_parser("revoke", help="take back permissions: the --network/--env named, or everything")
    revoke.add_argument("name", metavar="NAME")
    revoke.add_argument("--network", action="append", default=None, metavar="HOST:PORT", help="remove this endpoint (repeatable)")
    revoke.add_argument("--env", action="append", default=None, metavar="VAR", help="remove this variable (repeatable)")
    new = psub.add_parser("new", help="write a ready-to-edit plugin file (user plugin folder, or --dir)")
    new.add_argument("name", metavar="NAME")
    new.add_argument("--network", action="append", metavar="HOST:PORT", help="request this endpoint (repeatable)")
    new.add_argument("--env", action="append", metavar="VAR", help="request this environment variable (repeatable)")
    new.add_argument("--dependency", action="append", metavar="REQ", help="declare this library, as pip takes it: 'name>=1.2' (repeatable)")
    new.add_argument("--dir", metavar="DIR", help="write it into DIR instead")
    for action, text in (("check", "check a plugin file: static checks, then a conformance run in its sandbox"),
                         ("install", "check a plugin file and copy it into the user plugin folder (grants nothing)")):  # fmt: skip
        checker = psub.add_parser(action, help=text)
        checker.add_argument("file", metavar="FILE")
        checker.add_argument("--timeout", type=_positive_float, metavar="S", help="deadline for each call (default 20)")
    psub.choices["install"].add_argument("--force", action="store_true", help="install even if conformance checks fail")
    deps = psub.add_parser("deps", help="install a plugin's declared dependencies into its own environment (asks first)")
    deps.add_argument("name", nargs="?", metavar="NAME")
    deps.add_argument("--prune", action="store_true", help="remove the environments no plugin uses")
    for parser_ in (deps, psub.choices["install"]):
        parser_.add_argument("--allow-build", action="store_true",
                             help="allow building from source (runs the package's code outside the sandbox)")  # fmt: skip
        parser_.add_argument("--yes", action="store_true", help="install the dependencies without asking")
    remove = psub.add_parser("remove", help="delete a plugin from the user plugin folder and revoke its grant")
    remove.add_argument("name", metavar="NAME")


def _keys_parser(keys: argparse.ArgumentParser) -> None:
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", parser_class=_Parser, required=True)
    kset = ksub.add_parser("set", help="store a key (hidden prompt, or standard input)")
    kset.add_argument("name", metavar="NAME")
    kget = ksub.add_parser("get", help="print a stored key's value, for scripts: export X=$(sandchat keys get X)")
    kget.add_argument("name", metavar="NAME")
    kremove = ksub.add_parser("remove", help="delete a stored key")
    kremove.add_argument("name", metavar="NAME")
    ksub.add_parser("list", help="list stored key names (never values)")
    ksub.add_parser("path", help="print the keys file's path")


def _agent_parser(agent: argparse.ArgumentParser) -> None:
    asub = agent.add_subparsers(dest="agent_command", metavar="ACTION", parser_class=_Parser, required=True)
    status = asub.add_parser("status", help="show the agent and its warm plugins")
    status.add_argument("--json", action="store_true")
    asub.add_parser("stop", help="stop the agent and its plugins")
    serve = asub.add_parser("serve")  # no help: started by prompt and tokens, not by people
    serve.add_argument("--dir", required=True)
    serve.add_argument("--idle", type=_positive_float, required=True)
    serve.add_argument("--warm")


#: Each COMMAND: its one-line help and what adds its options, in the order --help lists them.
_COMMAND_PARSERS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "prompt": ("answer one prompt and exit: standard input (if piped), then TEXT", _prompt_parser),
    "chat": ("chat in the terminal (the default command)", _chat_parser),
    "web": ("chat in a browser: a page on 127.0.0.1 behind a per-run token", _web_parser),
    "logs": ("show logged exchanges, oldest of the newest N first; 'logs path' prints the file", _logs_parser),
    "tokens": ("count the tokens of standard input (if piped), then TEXT", _tokens_parser),
    "plugins": ("list, inspect and manage plugins", _plugins_parser),
    "keys": ("store API keys for plugins", _keys_parser),
    "agent": ("the background agent that keeps plugins warm between commands", _agent_parser),
}


def _accept_global_options(parser: argparse.ArgumentParser, depth: int = 1) -> None:
    """Every (sub)command accepts the global options too: ``sandchat plugins list --no-plugins``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _global_options(child, after=depth)
                _accept_global_options(child, depth + 1)


AGENT_IDLE = 600.0  # seconds: how long the agent keeps plugins warm after the last command (SANDCHAT_AGENT_IDLE)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; no COMMAND means ``chat``, so ``sandchat -p echo`` opens the chat with echo."""
    words = list(sys.argv[1:] if argv is None else argv)
    at = command_at(words)
    first = words[at] if at < len(words) else None
    if first in ("-h", "--help", "--version"):
        pass  # about sandchat itself, not the chat
    elif first is None or first.startswith("-"):
        words.insert(at, "chat")
        first = "chat"
    elif first not in _COMMAND_PARSERS:  # most likely a prompt, as `llm "question"` takes it
        _Parser(prog="sandchat").error(f"unknown command {first!r}; for a one-shot answer: sandchat prompt TEXT")
    args = build_parser(only=first if first in _COMMAND_PARSERS else None).parse_args(words)
    for depth in (1, 2):  # after the command, after its action (plugins list, keys get)
        args.plugins_dir += getattr(args, f"plugins_dir_after{depth}", [])
        args.no_plugins = args.no_plugins or getattr(args, f"no_plugins_after{depth}", False)
    return args


def _install_signal_handlers() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every plugin process is stopped on the way out."""

    def _raise(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)


def main(argv: Sequence[str] | None = None) -> int:
    """``sandchat ARGV``: its exit status. Output whose reader left (``| head -1``) ends it quietly, as git does."""
    try:
        try:
            return _main(argv)
        finally:  # argparse's exits too: what is still buffered must fail here, not in the interpreter's last flush
            if sys.stdout is not None:
                sys.stdout.flush()
    except BrokenPipeError:
        return _reader_left()


def _reader_left() -> int:
    """Standard output's reader is gone: say nothing (there is no one to tell), and let the exit's flush go nowhere."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_READER_LEFT


def _main(argv: Sequence[str] | None) -> int:
    from app.context import Context
    from app.render import Output
    from app.settings import SettingsError, load

    args = parse_args(argv)
    if args.command == "agent" and args.agent_command == "serve":  # the agent itself: no settings, its requests carry them
        from app.commands.agent import serve

        return serve(args)
    output = Output.for_process(os.environ)
    agent_idle = _agent_idle(os.environ.get("SANDCHAT_AGENT_IDLE"))
    if agent_idle is None:
        output.error("SANDCHAT_AGENT_IDLE must be a number of seconds (0 turns the agent off)")
        return EXIT_USAGE
    environ: Mapping[str, str] = os.environ
    if getattr(args, "seed", None) is not None:  # plugins see it as SANDCHAT_SEED, like the variable
        environ = {**os.environ, "SANDCHAT_SEED": str(args.seed)}
    try:
        settings = load(environ, no_plugins=args.no_plugins)
    except SettingsError as exc:
        output.error(str(exc))
        return EXIT_USAGE
    _install_signal_handlers()
    context = Context(settings, output, [os.path.abspath(d) for d in args.plugins_dir], timeout=_reply_timeout(args), agent_idle=agent_idle)
    try:
        return _dispatch(args, context)
    except SettingsError as exc:
        output.error(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        output.notice("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # not the disk: the reader of our output left (main says nothing)
    except OSError as exc:  # the disk said no (read-only, missing, full): the path and what to do, in one line
        output.error(_disk_problem(exc, settings))
        return EXIT_PLUGIN
    except Exception as exc:
        if not _from_runner(exc):
            raise  # a bug of sandchat's own: its traceback is the report
        output.error(str(exc))  # whatever a plugin caused is one line, never a traceback
        return EXIT_PLUGIN
    finally:
        context.close()


def _agent_idle(text: str | None) -> float | None:
    """SANDCHAT_AGENT_IDLE in seconds (unset: the default; 0: no agent), or None when it is not a number."""
    if text is None or not text.strip():
        return AGENT_IDLE
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _reply_timeout(args: argparse.Namespace) -> float | None:
    """``--timeout`` of ``prompt`` and ``chat``, which caps each reply (``plugins check --timeout`` is the checks' own)."""
    return getattr(args, "timeout", None) if args.command in (None, "chat", "prompt", "web") else None


def _from_runner(exc: Exception) -> bool:
    """Whether ``exc`` is of the runner's error tree (``app.refusals`` extend it): what a plugin caused, not a bug."""
    return any(cls.__module__.split(".")[0] == "runner" for cls in type(exc).__mro__)


def _disk_problem(exc: OSError, settings: Settings) -> str:
    where = exc.filename if exc.filename is not None else "a file"
    paths = settings.paths
    return (f"cannot write or read {where}: {exc.strerror or exc}; make sandchat's directories "
            f"(config {paths.config_dir}, data {paths.data_dir}) writable, "
            "or choose others with SANDCHAT_HOME (or XDG_CONFIG_HOME and XDG_DATA_HOME)")  # fmt: skip


def _dispatch(args: argparse.Namespace, context: Context) -> int:
    if args.command in (None, "chat", "logs"):
        from app.commands import chat

        return chat.logs(args, context) if args.command == "logs" else chat.chat(args, context)
    if args.command in ("prompt", "tokens"):
        from app.commands import oneshot

        return oneshot.prompt(args, context) if args.command == "prompt" else oneshot.tokens(args, context)
    if args.command == "web":
        from app.commands import web

        return web.web(args, context)
    if args.command == "plugins":
        from app.commands import plugins

        return _forgetting(args, context, plugins.run(args, context))
    if args.command == "agent":
        from app.commands import agent

        return agent.run(args, context)
    from app.commands import keys

    return _forgetting(args, context, keys.run(args, context))


#: What changes a launch decision; the agent then closes the warm processes it concerns at once,
#: rather than at their next call (a revoked key must not stay in a process until then).
_CHANGES = {("plugins", "disable"), ("plugins", "revoke"), ("plugins", "grant"), ("plugins", "remove"), ("plugins", "deps"),
            ("keys", "set"), ("keys", "remove")}  # fmt: skip


def _forgetting(args: argparse.Namespace, context: Context, status: int) -> int:
    action = getattr(args, "plugins_command", None) or getattr(args, "keys_command", None)
    if (args.command, action) in _CHANGES:
        from app.commands.warm import forget

        forget(context, getattr(args, "name", None) if args.command == "plugins" else None)
    return status


if __name__ == "__main__":
    sys.exit(main())
