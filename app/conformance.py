"""Plugin conformance checks: is one plugin file a well-behaved sandchat plugin?

``sandchat plugins check FILE`` and ``sandchat plugins install FILE`` run these. Two stages:

1. **Static**, in the host, never running the file: its name follows the discovery
   rules, its ``# /// plugin`` block parses, its permissions are listed, and it
   compiles (``compile()`` parses; it does not execute anything).
2. **In the sandbox**: a copy of the file is put alone in a temporary plugin folder
   and run by a :class:`~app.manager.PluginManager` over a temporary home (so: the
   file's own plugin name, the ``untrusted`` profile, no grants, no keys, no network)
   with short deadlines (:data:`DEADLINES`). Then:

   * it loads (imports, one ``LLMClient`` subclass, instantiates);
   * ``count_tokens`` returns a non-negative ``int`` for empty, ASCII, Unicode and
     ~100 KB text;
   * ``generate_response`` returns a non-empty ``str``;
   * ``stream_response`` yields ``str`` chunks whose joined text is *sensible*:
     non-empty, and equal to ``generate_response``'s reply (ignoring surrounding
     whitespace) unless the plugin is not deterministic, i.e. two
     ``generate_response`` calls with the same arguments answered differently;
   * ``generate_chat`` returns and ``stream_chat`` yields non-empty text for a
     three-message history;
   * every call answers within its deadline;
   * it prints nothing to stdout. The sandboxed child writes what Python code sends
     through ``sys.stdout`` to the log tagged ``[stdout]`` (``runner/child/entry.py``):
     such lines fail the check. Other output (stderr, or bytes written straight to
     fd 1, which cannot be told apart) is only a warning.

A generation or count that *raises* fails the check, except for a plugin that
requests network or environment permissions: the check grants neither, so a raise
is what a correct plugin does there, and it is a warning instead.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import runner
from app.discovery import Metadata, discover
from app.render import table
from app.settings import HOST_ENV_PASSTHROUGH, Paths, Settings

if TYPE_CHECKING:
    from app.manager import PluginManager

__all__ = ["DEADLINES", "FAIL", "PASS", "SKIP", "WARN", "Report", "Result", "check_file"]

PASS, FAIL, WARN, SKIP, INFO = "pass", "FAIL", "warn", "skip", "info"

#: Modest deadlines: a conforming plugin answers the check's tiny prompts well within them.
DEADLINES = runner.Deadlines(start=20, first_chunk=15, idle=15, total=20, count_tokens=10, ping=5, cancel_grace=2, stop_grace=2)

_STDOUT_TAG = runner.STDOUT_TAG
_SYSTEM = "You are being checked by sandchat. Answer briefly."
_PROMPT = "Hello from sandchat plugins check: please answer."
_HISTORY = (
    {"role": "user", "content": "Hello, this is a conformance check."},
    {"role": "assistant", "content": "Hello. I am listening."},
    {"role": "user", "content": "Please answer this last message."},
)
_TEXTS = (
    ("empty", ""),
    ("ASCII", "The quick brown fox jumps over the lazy dog."),
    ("Unicode", "héllo wörld ✓ 日本語のテキスト 🙂 Ελληνικά"),
    ("100 KB", ("All work and no play makes a long prompt. " * 2500)[:100_000]),
)


@dataclass(frozen=True)
class Result:
    """One line of the report: what was checked, ``pass``/``FAIL``/``warn``/``skip``/``info``, and why."""

    check: str
    status: str
    detail: str = ""


@dataclass
class Report:
    """Everything ``check_file`` found about one plugin file."""

    path: Path
    name: str = ""
    metadata: Metadata | None = None
    results: list[Result] = field(default_factory=list)
    static_ok: bool = True  # the file itself is sound (name, metadata, syntax): safe to install
    on_result: Callable[[Result], None] | None = field(default=None, repr=False, compare=False)  # each row as it is known

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status == FAIL]

    def add(self, check: str, status: str, detail: str = "") -> Result:
        result = Result(check, status, " ".join(detail.split()))
        self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)
        return result

    def render(self) -> str:
        """The pass/fail table, with every reason in full, and a summary line."""
        title = f"plugin {self.name!r} ({self.path})" if self.name else str(self.path)
        body = table([[r.check, r.status, r.detail] for r in self.results], ["CHECK", "RESULT", "DETAIL"], width=100_000)
        return f"{title}\n{body}\n{self.summary()}"

    def summary(self) -> str:
        """One line: how many checks failed, or that all passed, and the warnings."""
        warnings = sum(r.status == WARN for r in self.results)
        if self.failures:
            return f"{len(self.failures)} check(s) failed" + (f", {warnings} warning(s)" if warnings else "")
        return "all checks passed" + (f" ({warnings} warning(s))" if warnings else "")


def check_file(
    path: Path,
    *,
    source: bytes | None = None,
    allow_unsandboxed: bool = False,
    environ: Mapping[str, str] | None = None,
    deadlines: runner.Deadlines = DEADLINES,
    on_result: Callable[[Result], None] | None = None,
    envs_dir: Path | None = None,
) -> Report:
    """Check the plugin file at ``path`` (or ``source``, its bytes, if given: what is
    checked is then exactly what an installer copies). ``on_result`` is called with each
    row as soon as it is known (``plugins check`` prints them as they come).

    ``envs_dir``: the user's dependency environments (``Paths.envs``), which a plugin that
    declares dependencies needs to load; without it, such a plugin's are reported missing.
    """
    path = Path(path)
    report = Report(path, on_result=on_result)
    if source is None:
        try:
            source = path.read_bytes()
        except OSError as exc:
            report.add("file", FAIL, f"cannot read it: {exc.strerror or exc}")
            report.static_ok = False
            return report
    with tempfile.TemporaryDirectory(prefix="sandchat-check-") as tmp:
        folder = Path(tmp) / "plugins"
        folder.mkdir()
        (folder / path.name).write_bytes(source)
        if _static(report, folder, source):
            settings = Settings(
                paths=Paths.from_home(Path(tmp) / "home"),
                allow_unsandboxed=allow_unsandboxed,
                environ={k: v for k, v in (environ or {}).items() if k in HOST_ENV_PASSTHROUGH},
            )
            envs = Path(envs_dir) if envs_dir is not None else settings.paths.envs
            if _dependencies(report, envs):
                _dynamic(report, folder, settings, deadlines, envs)
            else:
                report.add("runs in the sandbox", SKIP, "it cannot load until its dependencies are installed")
        else:
            report.add("runs in the sandbox", SKIP, "fix the problems above first")
    return report


# -- static ----------------------------------------------------------------------------------


def _static(report: Report, folder: Path, source: bytes) -> bool:
    found = discover([(folder, "dir")])
    if found.skipped:
        report.add("file name", FAIL, f"{found.skipped[0].reason}: sandchat would skip this file")
        report.static_ok = False
        return False
    plugin_file = next(iter(found.plugins.values()))
    report.name = plugin_file.name
    report.add("file name", PASS, f"plugin name {plugin_file.name!r}")
    if plugin_file.metadata_error:
        report.add("metadata block", FAIL, plugin_file.metadata_error)
        report.static_ok = False
    else:
        meta = report.metadata = plugin_file.metadata
        described = f"description: {meta.description}" if meta.description else "no description (add one in a '# /// plugin' block)"
        report.add("metadata block", PASS, described)
        wants = f"network: {', '.join(meta.network) or 'none'}; env: {', '.join(meta.env) or 'none'}"
        granted = f" (requests are not grants: sandchat plugins grant {plugin_file.name})" if meta.network or meta.env else ""
        report.add("requested permissions", INFO, wants + granted)
    try:
        compile(source, str(report.path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        report.add("syntax", FAIL, f"{exc.msg} (line {exc.lineno})")
        report.static_ok = False
    except (ValueError, RecursionError, MemoryError) as exc:
        report.add("syntax", FAIL, f"cannot be compiled: {exc or type(exc).__name__}")
        report.static_ok = False
    else:
        report.add("syntax", PASS, "compiles")
    return report.static_ok


def _dependencies(report: Report, envs: Path) -> bool:
    """The ``dependencies`` row, for a plugin that declares any: installed (checked file by file) or not."""
    meta = report.metadata
    if meta is None or not (meta.dependencies or meta.requires_python):
        return True
    from app.envs import EnvStore

    status = EnvStore(envs).status(meta.declared, verify=True)
    if not status.ok:
        report.add("dependencies", FAIL, status.message(report.name) or "")
        return False
    where = f"installed in {status.env.path}" if status.env is not None else "none to install"
    report.add("dependencies", PASS, f"{', '.join(meta.dependencies) or 'requires-python ' + meta.requires_python}: {where}")
    return True


# -- in the sandbox --------------------------------------------------------------------------


class _Run:
    """The calls of one sandboxed check, with the bookkeeping shared between them."""

    def __init__(self, report: Report, handle: runner.Plugin, deadlines: runner.Deadlines) -> None:
        self.report = report
        self.handle = handle
        self.deadlines = deadlines
        self.timeouts: list[str] = []
        meta = report.metadata or Metadata()
        self.needs = bool(meta.network or meta.env)

    def call(self, check: str, function: Callable[[], object]) -> object | None:
        """Run one call; on failure, record why and return None."""
        try:
            return function()
        except runner.PluginRaised as exc:
            if self.needs:  # the check granted nothing it asked for: raising is fair
                self.report.add(check, WARN, f"{exc} (expected here: the check grants none of the permissions it requests)")
            else:
                self.report.add(check, FAIL, str(exc))
        except runner.PluginTimeout as exc:
            self.timeouts.append(check)
            self.report.add(check, FAIL, str(exc))
        except runner.PluginError as exc:
            self.report.add(check, FAIL, str(exc))
        return None


def _dynamic(report: Report, folder: Path, settings: Settings, deadlines: runner.Deadlines, envs: Path) -> None:
    from app.manager import PluginManager

    policy = runner.RestartPolicy(backoff_initial=0.05, backoff_max=0.5, max_failures=1000)
    with PluginManager([folder], settings=settings, shipped_dir=None, deadlines=deadlines, restart_policy=policy, envs_dir=envs) as manager:
        _calls(report, manager, deadlines)
    _output(report, settings)  # after close: the log is complete once the process is gone


def _calls(report: Report, manager: PluginManager, deadlines: runner.Deadlines) -> None:
    try:
        handle = manager.handle(report.name)
        hello = handle.start()
    except runner.PluginError as exc:
        detail = str(exc)
        if isinstance(exc, runner.PluginLoadError) and exc.remote_type == "ModuleNotFoundError":
            detail += _not_found_advice(report)
        report.add("loads in the sandbox", FAIL, detail)
        report.add("calls", SKIP, "the plugin did not load")
        return
    sandbox = hello.get("sandbox") or {}
    claimed = sandbox.get("layers")  # the child's claim (the plugin ran first): any type
    layers = ", ".join(map(str, claimed)) if isinstance(claimed, (list, tuple)) else ""
    report.add(
        "loads in the sandbox", PASS, f"class {hello.get('class')}; profile {sandbox.get('profile', '?')}; layers: {layers or 'none'}"
    )
    methods = hello.get("methods") or []
    own = f"also implements {', '.join(methods)}" if methods else "streaming and chat use the LLMClient defaults"
    report.add("context window and methods", INFO, f"context_window {handle.context_window}; {own}")
    run = _Run(report, handle, deadlines)
    _count_tokens(run)
    _generation(run)
    if run.timeouts:
        report.add("answers within deadlines", FAIL, f"timed out: {', '.join(run.timeouts)}")
    else:
        d = deadlines
        report.add("answers within deadlines", PASS, f"start {d.start:g}s, count_tokens {d.count_tokens:g}s, generation {d.total:g}s")


def _not_found_advice(report: Report) -> str:
    """What to do about an import the child could not satisfy: declare the library, or fix the declaration."""
    meta = report.metadata or Metadata()
    if meta.dependencies:
        return f" (its declared dependencies, {', '.join(meta.dependencies)}, do not provide that module: fix the dependencies list)"
    return (
        ' (declare the library it comes from in the metadata block, e.g. dependencies = ["some-library>=1.0"], '
        f"then install it: sandchat plugins deps {report.name})"
    )


def _count_tokens(run: _Run) -> None:
    for label, text in _TEXTS:
        check = f"count_tokens ({label})"
        count = run.call(check, lambda text=text: run.handle.count_tokens(text))  # type: ignore[misc]
        if count is None:
            continue
        if label == "100 KB" and count == 0:
            run.report.add(check, WARN, "0 tokens for 100 KB of text: the chat could not trim history to fit")
        else:
            run.report.add(check, PASS, f"{count}")


def _generation(run: _Run) -> None:
    report, handle = run.report, run.handle
    before = len(run.timeouts)  # a slow count_tokens does not excuse the generation checks

    def skipped(check: str) -> bool:
        late = run.timeouts[before:]
        if late:  # another reply would most likely hang as long: do not wait for it again
            report.add(check, SKIP, f"an earlier call timed out ({late[0]})")
        return bool(late)

    reply = run.call("generate_response", lambda: handle.generate_response(_SYSTEM, _PROMPT, 256, 0.0))
    if isinstance(reply, str):
        report.add("generate_response", *_text_verdict(reply, "returned"))
    if not skipped("stream_response"):
        chunks = run.call("stream_response", lambda: list(handle.stream_response(_SYSTEM, _PROMPT, 256, 0.0)))
        if isinstance(chunks, list):
            report.add("stream_response", *_stream_verdict(run, chunks, reply))
    if not skipped("generate_chat"):
        chat = run.call("generate_chat", lambda: handle.generate_chat(_SYSTEM, list(_HISTORY), 256, 0.0))
        if isinstance(chat, str):
            report.add("generate_chat", *_text_verdict(chat, "returned"))
    if not skipped("stream_chat"):
        pieces = run.call("stream_chat", lambda: list(handle.stream_chat(_SYSTEM, list(_HISTORY), 256, 0.0)))
        if isinstance(pieces, list):
            status, detail = _text_verdict("".join(pieces), f"{len(pieces)} chunk(s) joined to")
            report.add("stream_chat", status, detail)


def _text_verdict(text: str, verb: str) -> tuple[str, str]:
    if not text.strip():
        return FAIL, f"{verb} {'an empty string' if not text else 'only whitespace'}"
    return PASS, f"{verb} {_quote(text)}"


def _stream_verdict(run: _Run, chunks: list[str], reply: object) -> tuple[str, str]:
    streamed = "".join(chunks)
    head = f"{len(chunks)} chunk(s)"
    if not streamed.strip():
        return FAIL, f"{head} joined to {'an empty string' if not streamed else 'only whitespace'}"
    if not isinstance(reply, str):
        return PASS, f"{head} joined to {_quote(streamed)} (not compared: generate_response failed)"
    if streamed.strip() == reply.strip():
        return PASS, f"{head}; same text as generate_response"
    again = run.call("generate_response (again)", lambda: run.handle.generate_response(_SYSTEM, _PROMPT, 256, 0.0))
    if again is None:
        return WARN, f"{head} joined to {_quote(streamed)}, unlike generate_response; its second call failed"
    if again == reply:
        return FAIL, (f"streamed {_quote(streamed)} but generate_response returned {_quote(reply)}, twice: "
                      "a deterministic plugin must stream the same text it returns")  # fmt: skip
    return PASS, f"{head} joined to {_quote(streamed)} (differs from generate_response, which is not deterministic either)"


def _quote(text: str, limit: int = 60) -> str:
    text = runner.clean_text(text, keep_newlines=False)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _output(report: Report, settings: Settings) -> None:
    """The ``stdout`` check, from the plugin's log of this check (see the module docstring)."""
    name = report.name
    log = settings.paths.plugin_logs / f"{name}.log"
    lines: list[str] = []
    for part in (log.with_name(log.name + ".1"), log):
        try:
            lines += part.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            pass
    prefix = f"[{name}] "
    text = [line.split(prefix, 1)[1] if prefix in line else line for line in lines]
    printed = [line for line in text if _STDOUT_TAG in line]
    other = [line for line in text if _STDOUT_TAG not in line and line.strip()]
    if printed:
        example = printed[0].split(_STDOUT_TAG, 1)[1]
        report.add("no print() to stdout", FAIL, f"printed {len(printed)} line(s) to stdout, e.g. {_quote(example)}: "
                   "log to stderr instead (logging, or print(..., file=sys.stderr))")  # fmt: skip
    else:
        report.add("no print() to stdout", PASS, "nothing printed through sys.stdout")
    if other:
        report.add("other output", WARN, f"{len(other)} line(s) on stderr (or written straight to fd 1), e.g. {_quote(other[0])}: "
                   f"fine for logging; `sandchat plugins logs {name}` shows them")  # fmt: skip
