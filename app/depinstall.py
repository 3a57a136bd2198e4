"""Dependency installs: plan with pip (what would come, its sizes), then install atomically into an environment.

Two steps, so the CLI can ask in between, as ``plugins grant`` does:

1. :func:`plan` probes with ``pip download --no-deps`` (reading each wheel's requirements
   before asking for them, so no direct reference is followed), resolves offline among what
   came into a staging folder beside the environments, and lists it (``app/depstage.py``):
   names, versions, unpacked sizes, sha256. The user's index settings apply (pip.conf, ``PIP_*``); :class:`IndexOptions`
   adds only what the caller passes.
2. :func:`install` installs exactly those files with ``pip install --target`` from the
   staging folder with the index off (hash-checked when every file is a wheel) into
   ``envs/.tmp-KEY-*/lib``, writes the manifest, and renames the folder to ``envs/KEY``:
   a failed install leaves nothing half made.

No package code runs unless ``allow_build``: a wheel is unpacked, never executed (pip runs
no ``setup.py`` and processes no ``.pth`` file for a ``--target`` folder; the child never
does either: docs/dependencies.md), and bytecode compiling only compiles. With
``allow_build`` an sdist's build backend runs, on the host, outside the sandbox, already
during :func:`plan` (pip asks it for metadata): print :data:`BUILD_WARNING` before planning.
pip itself runs as ``python -P -m pip`` in the staging folder, so no file in the user's
current directory is importable by it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from app.deps import Declared, canonicalize_name, missing, python_tag
from app.depstage import PINS, InstallError, Planned, WheelInfo, asked_as, probed, staged
from app.envs import Env, EnvStore

__all__ = ["BUILD_WARNING", "IndexOptions", "InstallError", "Plan", "Planned", "install", "plan"]

BUILD_WARNING = (
    "warning: --allow-build lets pip build packages from source: building runs the package's own code "
    "on this machine, outside the sandbox, with your permissions"
)
DEFAULT_TIMEOUT = 900.0
MAX_ROUNDS = 32  # how deep a dependency tree the probe follows (real ones are under 10)
# Settings that would move, reshape or skip the install (sandchat decides those); index,
# proxy, certificate, cache and constraint settings stay the user's.
_PIP_ENV_DROPPED = frozenset(
    "PIP_TARGET PIP_PREFIX PIP_ROOT PIP_USER PIP_SRC PIP_EDITABLE PIP_REQUIREMENT PIP_REQUIREMENTS PIP_DEST PIP_PYTHON "
    "PIP_NO_BINARY PIP_ONLY_BINARY PIP_PREFER_BINARY PIP_NO_DEPS PIP_COMPILE PIP_NO_COMPILE PIP_DRY_RUN PIP_REPORT "
    "PIP_UPGRADE PIP_FORCE_REINSTALL PIP_IGNORE_INSTALLED PIP_REQUIRE_HASHES PIP_EXISTS_ACTION PIP_VERBOSE PIP_QUIET "
    "PIP_LOG PIP_ROOT_USER_ACTION PIP_BREAK_SYSTEM_PACKAGES".split()
)
_NO_SOURCES = re.compile(r"Skipping link: No sources permitted for ([A-Za-z0-9._-]+)")


@dataclass(frozen=True)
class IndexOptions:
    """Index settings to pass to pip on top of the user's own (pip.conf, ``PIP_*``); empty adds nothing."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def argv(self) -> list[str]:
        args = ["--index-url", self.index_url] if self.index_url else []
        args += [arg for url in self.extra_index_urls for arg in ("--extra-index-url", url)]
        args += [arg for link in self.find_links for arg in ("--find-links", link)]
        return args + (["--no-index"] if self.no_index else [])


@dataclass
class Plan:
    """What :func:`install` would install for ``declared``; holds a staging folder until installed or discarded."""

    declared: Declared
    key: str
    stage: Path
    items: tuple[Planned, ...]
    allow_build: bool = False
    seconds: float = 0.0
    python: str = field(default_factory=python_tag)

    @property
    def total_size(self) -> int:
        """What lands on disk: the wheels unpacked (a zip of zeros is small; the plan shows what it becomes)."""
        return sum(item.unpacked for item in self.items)

    @property
    def download_size(self) -> int:
        return sum(item.size for item in self.items)

    @property
    def builds(self) -> tuple[Planned, ...]:
        """The sdists in the plan: installing them runs their build backend."""
        return tuple(item for item in self.items if not item.wheel)

    def lines(self) -> list[str]:
        """The plan as the CLI shows it before asking: one line per file, then the total."""
        width = max((len(f"{i.name} {i.version}") for i in self.items), default=0)
        rows = [
            f"{f'{i.name} {i.version}':<{width}}  {_size(i.unpacked):>9}  {'wheel' if i.wheel else 'sdist: built here'}" for i in self.items
        ]
        files = f"{len(self.items)} file{'s' if len(self.items) != 1 else ''}"
        return rows + [f"{files}, {_size(self.total_size)} to install (unpacked; {_size(self.download_size)} downloaded)"]

    def discard(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _token() -> str:
    return f"{os.getpid()}-{time.monotonic_ns()}"


def pip_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The user's environment for pip, minus what would move or reshape the install, never prompting."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in _PIP_ENV_DROPPED}
    env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUTF8="1")
    return env


# pip, unable to start another program: a build backend, a setup.py, a VCS client all need
# execve, so no package's code can run through a resolve or an install that was not --allow-build.
_NO_EXEC_PIP = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from runner.sandbox.seccomp import install_no_exec; "
    "install_no_exec(); del sys.path[0]; import runpy; sys.argv[0] = 'pip'; runpy.run_module('pip', run_name='__main__', alter_sys=True)"
)
_ROOT = str(Path(__file__).resolve().parent.parent)  # where runner/ is, for the line above
_Run = Callable[[list[str]], subprocess.CompletedProcess]  # pip with plan()'s folder, environment and timeout, no exec


def _pip(
    args: Sequence[str], cwd: Path, environ: Mapping[str, str] | None, timeout: float, python: str, *, may_exec: bool = False
) -> subprocess.CompletedProcess:
    argv = [python, "-P", "-m", "pip", *args] if may_exec else [python, "-P", "-c", _NO_EXEC_PIP, _ROOT, *args]
    try:
        return subprocess.run(
            argv, cwd=cwd, env=pip_environ(environ), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise InstallError(f"pip did not finish within {timeout:g}s: {' '.join(args[:1])} was stopped") from None
    except OSError as exc:
        raise InstallError(f"cannot run pip with {python}: {exc.strerror or exc}") from None


def _pip_error(result: subprocess.CompletedProcess) -> str:
    text = result.stderr + result.stdout
    if "No module named pip" in text:
        return f"pip is not installed for {sys.executable}: run: {sys.executable} -m ensurepip"
    errors = [" ".join(line[len("ERROR:") :].split()) for line in text.splitlines() if line.startswith("ERROR:")]
    last = [line for line in text.splitlines() if line.strip()][-1:] or [f"exit status {result.returncode}"]
    return "; ".join(errors[:2]) or " ".join(last[0].split())


def _check_references(declared: Declared) -> None:
    # parse_declared refuses direct references; a Declared built some other way must not bring one back
    for req in declared.parsed():
        if req.url:
            raise InstallError(f"{req.name} @ {req.url} is a direct reference: sandchat installs only releases from the package index")


def _resolve_error(declared: Declared, args: list[str], result: subprocess.CompletedProcess, run: _Run) -> InstallError:
    reason = _pip_error(result)
    if "--only-binary=:all:" in args and "No matching distribution" in reason:  # which projects did pip see only as source?
        again = run(["download", "-vv", *args[1:]])
        sources = sorted(set(_NO_SOURCES.findall(again.stdout + again.stderr)))
        if sources:
            reason = (
                f"{', '.join(sources)} {'is' if len(sources) == 1 else 'are'} available only as source (an sdist), not as a wheel; "
                "building runs the package's code outside the sandbox: rerun with --allow-build if you trust it"
            )
    return InstallError(f"cannot resolve {', '.join(declared.requirements)}: {reason}")


def _probe(declared: Declared, probe: Path, base: list[str], run: _Run) -> None:
    """Download into ``probe``, ``--no-deps`` and round by round, every release the set may need.

    pip follows a dependency's direct reference (``x @ file:///...``, ``@ https://...``) as
    soon as it resolves, before anything can read it; here pip resolves nothing: each round
    asks for named requirements only, and each wheel's Requires-Dist is read (and a direct
    reference refused) before the next round asks for what it names. One requirement per
    name per round, so no round can conflict with itself; the real resolve is done later,
    offline, among these files.
    """
    asked: set[str] = set()
    pending = list(declared.requirements)
    read: dict[str, tuple[str, WheelInfo]] = {}  # each probed wheel's project and requirements, read once
    for _ in range(MAX_ROUNDS):
        batch: dict[str, str] = {}
        for text in pending:
            batch.setdefault(canonicalize_name(Requirement(text).name), text)
        args = [*base, "--no-deps", "--dest", str(probe), "--", *batch.values()]
        result = run(args)
        if result.returncode != 0:
            raise _resolve_error(declared, args, result, run)
        asked |= set(batch.values())
        extras: dict[str, set[str]] = {}
        for text in [*declared.requirements, *asked]:
            req = Requirement(text)
            extras.setdefault(canonicalize_name(req.name), {""}).update(canonicalize_name(e) for e in req.extras)
        pending = [text for text in pending if text not in asked]
        for name, info in probed(probe, read).items():
            for text in info.requires:
                try:
                    wanted = asked_as(Requirement(text), extras.get(name, {""}))
                except InvalidRequirement:
                    continue  # the offline resolve below refuses it, following nothing
                if wanted and wanted not in asked and wanted not in pending:
                    pending.append(wanted)
        if not pending:
            return
    raise InstallError(f"cannot resolve {', '.join(declared.requirements)}: dependencies nest deeper than {MAX_ROUNDS} levels")


def _offline(environ: Mapping[str, str] | None) -> dict[str, str]:
    """The environment for the resolve among probed files: none of the user's pip settings but constraints (no index to add)."""
    kept = {k: v for k, v in (os.environ if environ is None else environ).items() if not k.startswith("PIP_") or k == "PIP_CONSTRAINT"}
    return {**kept, "PIP_CONFIG_FILE": os.devnull}


def plan(
    declared: Declared,
    store: EnvStore,
    *,
    index: IndexOptions = IndexOptions(),  # noqa: B008 - frozen, so one shared default is safe
    allow_build: bool = False,
    environ: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    python: str = sys.executable,
) -> Plan:
    """Resolve and download ``declared`` into a staging folder; raise InstallError (one line) if pip cannot.

    Without ``allow_build``: probe (see :func:`_probe`), then resolve offline among the probed
    wheels into the staging folder. With it, an sdist's requirements are known only once its
    backend has run, so pip resolves in one pass and its direct references are refused after.
    """
    if not declared:
        raise InstallError("the plugin declares no dependencies")
    _check_references(declared)
    store.root.mkdir(parents=True, exist_ok=True)
    stage = store.root / f".stage-{declared.key}-{_token()}"
    probe = stage.with_name(stage.name + "-probe")
    stage.mkdir()
    started = time.monotonic()
    try:
        if allow_build:
            args = ["download", "--progress-bar", "off", "--prefer-binary", *index.argv(), "--dest", str(stage)]
            result = _pip([*args, "--", *declared.requirements], stage, environ, timeout, python, may_exec=True)
            if result.returncode != 0:
                raise InstallError(f"cannot resolve {', '.join(declared.requirements)}: {_pip_error(result)}")
        else:
            probe.mkdir()
            base = ["download", "--progress-bar", "off", "--only-binary=:all:", *index.argv()]
            _probe(declared, probe, base, lambda args: _pip(args, stage, environ, timeout, python))
            offline = ["download", "--progress-bar", "off", "--only-binary=:all:", "--no-index", "--no-cache-dir"]
            offline += ["--find-links", str(probe)]
            result = _pip([*offline, "--dest", str(stage), "--", *declared.requirements], stage, _offline(environ), timeout, python)
            if result.returncode != 0:
                raise InstallError(f"cannot resolve {', '.join(declared.requirements)} among the releases found: {_pip_error(result)}")
        items = staged(stage, allow_build)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return Plan(declared, declared.key, stage, items, allow_build, time.monotonic() - started)


def _pins(plan: Plan) -> str:
    hashed = not plan.builds
    return "".join(f"{i.name}=={i.version}" + (f" --hash=sha256:{i.sha256}" if hashed else "") + "\n" for i in plan.items)


def install(
    plan: Plan,
    store: EnvStore,
    *,
    index: IndexOptions = IndexOptions(),  # noqa: B008
    environ: Mapping[str, str] | None = None,
    replace: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    python: str = sys.executable,
    plugin: tuple[str, Path | str] | None = None,
) -> Env:
    """Install exactly ``plan``'s files into ``envs/<key>``, atomically; the plan's staging folder is consumed.

    An environment already there is kept (another plugin with the same set installed it,
    or a concurrent install won) unless ``replace``. ``plugin`` = (name, file) is recorded
    as a user. Index settings matter only with allow_build (for build requirements).
    """
    final = store.path(plan.key)
    tmp = store.root / f".tmp-{plan.key}-{_token()}"
    started = time.monotonic()
    try:
        existing = store.find(plan.declared)
        if existing is not None and not replace:
            env = existing
        else:
            tmp.mkdir(parents=True)
            (tmp / "lib").mkdir()
            if plan.items:  # none when every declared requirement's marker excludes this machine
                _pip_install(plan, tmp / "lib", index, environ, timeout, python)
            lacking = missing(plan.declared, tmp / "lib")
            if lacking:
                raise InstallError(f"pip finished but {', '.join(lacking)} is still not satisfied in {tmp / 'lib'}")
            store.write_manifest(tmp, _manifest(plan, tmp / "lib", time.monotonic() - started))
            env = _move_into_place(store, tmp, final, replace)
        if plugin is not None:
            store.record_use(env.key, plugin[0], plugin[1])
        return store.find(plan.declared) or env
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        plan.discard()


def _pip_install(plan: Plan, lib: Path, index: IndexOptions, environ: Mapping[str, str] | None, timeout: float, python: str) -> None:
    pins = plan.stage / PINS
    pins.write_text(_pins(plan))
    args = ["install", "--progress-bar", "off", "--no-user", "--target", str(lib), "--no-warn-script-location"]
    args += ["--find-links", str(plan.stage)]
    if plan.builds:  # build requirements come from the user's index
        args += ["--prefer-binary", *index.argv()]
    else:
        args += ["--no-index", "--only-binary=:all:", "--require-hashes"]
    result = _pip([*args, "-r", str(pins)], plan.stage, environ, timeout, python, may_exec=bool(plan.builds))
    if result.returncode != 0:
        raise InstallError(f"cannot install {', '.join(plan.declared.requirements)}: {_pip_error(result)}")


def _move_into_place(store: EnvStore, tmp: Path, final: Path, replace: bool) -> Env:
    with store.lock():
        if final.exists() and replace:
            users = (store.manifest(final.name) or {}).get("plugins", [])
            store.write_manifest(tmp, {**(store.manifest_at(tmp) or {}), "plugins": users})
            old = store.root / f".old-{final.name}-{_token()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        elif not final.exists():
            os.rename(tmp, final)  # the one step that makes it visible: complete, or not there
    manifest = store.manifest(final.name)
    if manifest is None:
        raise InstallError(f"{final} exists but has no readable manifest (sandchat did not make it): move it away, then install again")
    return Env(final.name, final, manifest)


def _manifest(plan: Plan, lib: Path, seconds: float) -> dict:
    pth = sorted(str(p.relative_to(lib)) for p in lib.rglob("*.pth"))
    return {
        "version": 1,
        "key": plan.key,
        "python": plan.python,
        "requirements": list(plan.declared.requirements),
        "allow_build": plan.allow_build,
        "built_from_source": [i.name for i in plan.builds],
        "distributions": [
            {"name": i.name, "version": i.version, "file": i.filename, "size": i.size, "sha256": i.sha256} for i in plan.items
        ],
        "installed_bytes": sum(p.stat().st_size for p in lib.rglob("*") if p.is_file()),
        "pth_files_never_processed": pth,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "install_seconds": round(plan.seconds + seconds, 2),
        "plugins": [],
    }
