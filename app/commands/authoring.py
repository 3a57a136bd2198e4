"""``sandchat plugins new|check|install|remove``: write, check, install and remove plugin files.

None of these grants anything: a plugin installed here runs in the ``untrusted``
profile until the user runs ``sandchat plugins grant NAME``. ``remove`` works on the
files alone, so a broken plugin can be removed in safe mode (``--no-plugins``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import textwrap
import time
from pathlib import Path

import runner
from app.conformance import DEADLINES, Report, Result, check_file
from app.context import Context
from app.discovery import Metadata, MetadataError, file_problem, metadata_of, plugin_name
from app.exits import EXIT_OK, EXIT_PLUGIN, EXIT_USAGE
from app.hints import requests
from app.render import Output, terminal_width
from runner import clean_text

__all__ = ["check", "install", "new", "remove", "template"]


# -- new -------------------------------------------------------------------------------------


_SIGNATURE = "def generate_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> str:"


def new(args: argparse.Namespace, context: Context) -> int:
    out = context.output
    name = args.name
    if name.endswith("_plugin"):
        out.error(f"give the plugin name without '_plugin': the file will be {name}.py, plugin name {name[: -len('_plugin')]!r}")
        return EXIT_USAGE
    folder = Path(args.dir).expanduser() if args.dir else context.settings.paths.user_plugins
    path = folder / f"{name}_plugin.py"
    problem = file_problem(path) if plugin_name(path) == name else "name must be letters, digits, '_' or '-'"
    if problem:
        out.error(f"invalid plugin name {name!r}: {problem}")
        return EXIT_USAGE
    try:
        meta = Metadata(description=f"{name}: a deterministic stub that replies with your message reversed (edit me).",
                        network=tuple(args.network or ()), env=tuple(args.env or ()),
                        dependencies=tuple(args.dependency or ()))  # fmt: skip
    except MetadataError as exc:
        out.error(str(exc))
        return EXIT_USAGE
    taken = _taken(context, name)
    if taken:
        out.error(f"a plugin named {name!r} already exists ({taken}); choose another name")
        return EXIT_USAGE
    if path.exists():
        out.error(f"{path} already exists; not overwriting it")
        return EXIT_USAGE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(path, "x", encoding="utf-8") as f:  # "x": never overwrite, even in a race
            f.write(template(name, meta))
    except OSError as exc:
        out.error(f"cannot write {path}: {exc.strerror or exc}")
        return EXIT_USAGE
    out.write(f"created {path}\n")
    if meta.dependencies:  # first: neither the check nor a prompt can load it before
        out.write(f"  install what it declares ({', '.join(meta.dependencies)}):  sandchat plugins deps {name}\n")
    out.write(f"  check it:  sandchat plugins check {path}\n")
    if folder.resolve() == context.settings.paths.user_plugins.resolve():
        out.write(f"  try it:    sandchat prompt -p {name} hello\n")
    else:
        out.write(f"  install:   sandchat plugins install {path}   (or use --plugins-dir {folder})\n")
    if meta.network or meta.env:
        out.write(f"  it requests {requests(meta)}: nothing is granted until you run: sandchat plugins grant {name}\n")
    return EXIT_OK


def _taken(context: Context, name: str) -> str | None:
    """Where a plugin called ``name`` already lives (any folder, conflicts included), or None."""
    discovery = context.manager.discovery
    files = [discovery.plugins[name]] if name in discovery.plugins else list(discovery.conflicts.get(name, ()))
    return ", ".join(f"{f.source}: {f.path}" for f in files) or None


def _class_name(name: str) -> str:
    words = [w for w in re.split(r"[-_]+", name) if w]
    base = "".join(w[:1].upper() + w[1:] for w in words) + "Client"
    return base if base[0].isalpha() else "Plugin" + base


def _toml_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"  # a JSON string is a TOML basic string (markers carry quotes)


def template(name: str, meta: Metadata) -> str:
    """The source of a new plugin: metadata block, docstring and a working deterministic stub."""
    block = ["# /// plugin", f'# description = "{meta.description}"']
    block += [f"# network = {_toml_list(meta.network)}"] if meta.network else []
    block += [f"# env = {_toml_list(meta.env)}"] if meta.env else []
    block += [f"# dependencies = {_toml_list(meta.dependencies)}"] if meta.dependencies else []
    block += ["# ///"]
    if meta.env:
        settings = "Settings (environment variables; the plugin sees them only once granted):\n\n" + "\n".join(
            f"* ``{var}``: TODO say what it is."
            + (f" Store it with ``sandchat keys set {var}``." if var.endswith(("_KEY", "_TOKEN")) else "")
            for var in meta.env
        )
    else:
        settings = "Settings: none."
    permissions = (
        f"Permissions: requests {requests(meta)}; grant with ``sandchat plugins grant {name}``."
        if meta.network or meta.env
        else "Permissions: none (runs in the untrusted profile)."
    )
    reads = "".join(f'        self.{var.lower()} = os.environ.get("{var}", "")\n' for var in meta.env)
    init = (
        "    def __init__(self) -> None:\n"
        f"        # Read settings here, once. Do not print: log to stderr (`sandchat plugins logs {name}`).\n{reads}"
        if meta.env
        else ""
    )
    imports = "import logging\nimport os\n" if meta.env else "import logging\n"
    cls = _class_name(name)
    return f'''{chr(10).join(block)}
"""{name}: a sandchat plugin, generated by ``sandchat plugins new``.

The stub is deterministic and offline: it replies with the user's message reversed
and counts tokens as whitespace-separated words. Replace both methods with calls to
your model; streaming (``stream_response``), multi-turn chat (``generate_chat``,
``stream_chat``) and ``context_window`` are optional (see docs/plugin-guide.md).

{settings}

{permissions}

Check it with ``sandchat plugins check FILE``; its stderr is in ``sandchat plugins logs {name}``.
"""

from __future__ import annotations

{imports}
from llm_utils import LLMClient

log = logging.getLogger("{name}")  # stderr, never stdout: stdout output fails `plugins check`


class {cls}(LLMClient):
    """{name}: replies with your message reversed (a stub to replace)."""

    context_window = 8192  # tokens the model accepts, prompt and reply together

{init}{chr(10) if init else ""}    {_SIGNATURE}
        log.debug("answering %d characters", len(user_message))
        return user_message[::-1]

    def count_tokens(self, text: str) -> int:
        return len(text.split())
'''


# -- check -----------------------------------------------------------------------------------


def _deadlines(args: argparse.Namespace) -> runner.Deadlines:
    if not args.timeout:
        return DEADLINES
    t = args.timeout
    return runner.Deadlines(start=max(t, DEADLINES.start), first_chunk=t, idle=t, total=t,
                            count_tokens=t, ping=DEADLINES.ping, cancel_grace=1, stop_grace=1)  # fmt: skip


class _Rows:
    """Prints the conformance table a row at a time, as each check finishes, fitted to the terminal.

    The columns cannot be sized from rows not yet known, so CHECK and RESULT get fixed
    widths (the checks' names are sandchat's own). On a terminal a long DETAIL wraps under
    its column: every reason is shown whole, and no line is wider than the terminal. Into
    a pipe or a file each row stays one line, whole, for grep.
    """

    _CHECK, _RESULT = 27, 6

    def __init__(self, output: Output, width: int | None) -> None:
        self.output = output
        self.detail = max(20, width - self._CHECK - self._RESULT - 4) if width else 1 << 30

    def start(self, path: Path) -> None:
        self.output.write(f"checking {path}\n")
        self.output.write(f"{'CHECK':<{self._CHECK}}  {'RESULT':<{self._RESULT}}  DETAIL\n")

    def __call__(self, result: Result) -> None:
        check, status = clean_text(result.check, keep_newlines=False), clean_text(result.status, keep_newlines=False)
        wrapped = textwrap.wrap(clean_text(result.detail, keep_newlines=False), self.detail, break_on_hyphens=False) or [""]
        indent = " " * (self._CHECK + self._RESULT + 4)
        if len(check) > self._CHECK:  # a longer name than any known: on its own line, the rest below
            self.output.write(check + "\n")
            check = ""
        lines = [f"{check:<{self._CHECK}}  {status:<{self._RESULT}}  {wrapped[0]}".rstrip()] + [indent + more for more in wrapped[1:]]
        self.output.write("\n".join(lines) + "\n")


def _run_checks(args: argparse.Namespace, context: Context, path: Path, source: bytes | None = None) -> Report:
    """Run the checks, printing each row as it finishes, then the summary line."""
    settings = context.settings
    rows = _Rows(context.output, terminal_width() if context.output.interactive else None)
    rows.start(path)
    report = check_file(path, source=source, allow_unsandboxed=settings.allow_unsandboxed, environ=settings.environ,
                        deadlines=_deadlines(args), on_result=rows, envs_dir=settings.paths.envs)  # fmt: skip
    context.output.write(report.summary() + "\n")
    return report


def check(args: argparse.Namespace, context: Context) -> int:
    path = Path(args.file).expanduser()
    if not path.is_file():
        known = context.manager.discovery.plugins.get(args.file)
        if known is None:
            context.output.error(f"{args.file}: no such file")
            return EXIT_USAGE
        path = known.path  # an installed plugin's name works too
    report = _run_checks(args, context, path)
    return EXIT_OK if report.ok else EXIT_PLUGIN


# -- install ---------------------------------------------------------------------------------


def install(args: argparse.Namespace, context: Context) -> int:
    out = context.output
    path = Path(args.file).expanduser()
    try:
        source = path.read_bytes()  # checked and copied: the same bytes
    except OSError as exc:
        out.error(f"{args.file}: {exc.strerror or exc}")
        return EXIT_USAGE
    folder = context.settings.paths.user_plugins
    target = folder / path.name
    name = plugin_name(path)
    if path.resolve() == target.resolve():
        out.error(f"{path} is already in the user plugin folder")
        return EXIT_USAGE
    taken = _taken(context, name)
    if taken:
        out.error(f"not installed: a plugin named {name!r} already exists ({taken}); remove it first, or rename your file")
        return EXIT_USAGE
    if target.exists():
        out.error(f"not installed: {target} already exists; remove it first: sandchat plugins remove {name}")
        return EXIT_USAGE
    status = _install_dependencies(args, context, name, path, source, target)
    if status != EXIT_OK:
        return status
    report = _run_checks(args, context, path, source)
    if not report.ok and (not report.static_ok or not args.force):
        _prune(context)  # the environment installed for it, unless another plugin uses it: a "not installed" leaves nothing
    if not report.static_ok:
        out.error(f"not installed: {path.name} has problems that stop it from loading (see above); nothing was granted")
        return EXIT_PLUGIN
    if not report.ok and not args.force:
        out.error(f"not installed: {len(report.failures)} check(s) failed (see above); fix them, or install anyway with --force")
        return EXIT_PLUGIN
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{target.name}.tmp"  # hidden: discovery skips it while it is written
        tmp.write_bytes(source)
        os.replace(tmp, target)
    except OSError as exc:
        out.error(f"cannot install into {folder}: {exc.strerror or exc}")
        return EXIT_USAGE
    if context.manager.grants.revoke(name):  # a grant for an earlier file of that name must not carry over
        out.notice(f"revoked the grant an earlier {name!r} had")
    meta = report.metadata or Metadata()
    out.write(f"installed {name!r} as {target}\n")
    if meta.network or meta.env:
        out.write(f"it requests {requests(meta)}; nothing is granted: it runs untrusted (no network, no env) until you run:\n")
        out.write(f"  sandchat plugins grant {name}\n")
    else:
        out.write("it requests no permissions and runs in the untrusted profile\n")
    return EXIT_OK


def _install_dependencies(args: argparse.Namespace, context: Context, name: str, path: Path, source: bytes, target: Path) -> int:
    """Before the checks (which load the plugin): its declared dependencies, installed with the user's yes."""
    try:
        meta = metadata_of(source)
    except MetadataError:
        return EXIT_OK  # the checks report it, and nothing is installed
    if not (meta.dependencies or meta.requires_python):
        return EXIT_OK
    from app.commands.deps import ensure

    status = ensure(context, name, path, meta, allow_build=args.allow_build, yes=args.yes, user_path=target)
    if status != EXIT_OK:
        context.output.error(f"not installed: {path.name} cannot load without its dependencies; nothing was copied or granted")
    return status


def _prune(context: Context) -> list[str]:
    """Remove the dependency environments no plugin uses now, saying which; never fails the command."""
    from app.commands.deps import prune

    if not context.settings.paths.envs.is_dir():
        return []  # no plugin ever had dependencies installed
    try:
        context.manager.refresh()
        removed = prune(context.manager)
    except OSError as exc:
        context.output.notice(f"could not remove unused dependency environments: {exc.strerror or exc}")
        return []
    for key in removed:
        context.output.write(f"removed the dependency environment no plugin uses any more: {context.manager.envs.path(key)}\n")
    return removed


# -- remove ----------------------------------------------------------------------------------


def remove(args: argparse.Namespace, context: Context) -> int:
    """Delete a user-folder plugin file and revoke its grant; never starts any plugin."""
    out = context.output
    folder = context.settings.paths.user_plugins
    wanted = args.name
    try:
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError as exc:
        out.error(f"cannot read {folder}: {exc.strerror or exc}")
        return EXIT_USAGE
    files = [p for p in entries if p.is_file() and p.suffix == ".py" and wanted in (plugin_name(p), p.name)]
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        out.error(f"{len(files)} files in {folder} are plugin {wanted!r} ({names}); name the file: sandchat plugins remove FILE_NAME")
        return EXIT_USAGE
    if not files:
        return _not_removable(context, wanted)
    path = files[0]
    name = plugin_name(path)
    # Moved aside, not deleted: the file may hold the user's own edits, and nothing asks first.
    kept = context.settings.paths.data_dir / "removed" / f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, kept)
    except OSError as exc:
        out.error(f"cannot remove {path}: {exc.strerror or exc}")
        return EXIT_PLUGIN
    revoked = context.manager.grants.revoke(name)
    out.write(f"removed plugin {name!r} from {folder}" + ("; revoked its grant" if revoked else "") + f"; the file is kept at {kept}\n")
    _prune(context)
    return EXIT_OK


def _not_removable(context: Context, name: str) -> int:
    discovery = context.manager.discovery
    files = [discovery.plugins[name]] if name in discovery.plugins else list(discovery.conflicts.get(name, ()))
    shipped = next((f for f in files if f.source == "shipped"), None)
    elsewhere = next((f for f in files if f.source == "dir"), None)
    if shipped is not None:
        context.output.error(
            f"plugin {name!r} ships with sandchat ({shipped.path}) and cannot be removed; turn it off with: sandchat plugins disable {name}"
        )
    elif elsewhere is not None:
        context.output.error(
            f"plugin {name!r} is in {elsewhere.path.parent}, a folder given with --plugins-dir, not in the user plugin folder; "
            "sandchat only removes what it installed"
        )
    else:
        context.output.error(f"no plugin {name!r} in the user plugin folder ({context.settings.paths.user_plugins})")
    return EXIT_USAGE
