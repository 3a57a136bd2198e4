"""Plugin environments: the installed dependency folders under the data directory, their manifests, users and pruning.

Layout, at ``<data dir>/envs``::

    envs/<key>/lib/           a pip --target folder: the one entry the child puts on sys.path
    envs/<key>/manifest.json  what was asked and what was installed (names, versions, sizes, sha256), and by whom
    envs/.lock                taken while an environment is moved into place, recorded or pruned

``<key>`` is :func:`app.deps.env_key` of the declared set. An ``envs/<key>`` folder exists only
complete: installs are built beside it and renamed into place (``app/depinstall.py``), so
"its manifest is there" means "installed", and a start checks no more than that.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

from app.deps import Declared, DependencyError, missing, missing_message, python_problem

__all__ = ["ChildPaths", "Env", "EnvStore", "STALE_SECONDS", "Status", "child_paths"]

STALE_SECONDS = 3600  # an unfinished install or plan older than this is litter (prune removes it)
_TEMP_PREFIXES = (".tmp-", ".stage-", ".old-")


@dataclass(frozen=True)
class Env:
    """An installed environment: ``lib`` goes on the child's sys.path and into its read rules."""

    key: str
    path: Path
    manifest: dict = field(default_factory=dict, compare=False)

    @property
    def lib(self) -> Path:
        return self.path / "lib"

    def import_paths(self) -> list[str]:
        """The child's sys.path entries for this environment (added as plain entries: no .pth is processed)."""
        return [str(self.lib)]

    def read_paths(self) -> list[str]:
        """The Landlock read rules this environment needs (read-only: the child never writes there)."""
        return [str(self.lib)]


@dataclass(frozen=True)
class ChildPaths:
    """What the child of a plugin with an environment needs (see runner/child/path.py and docs/dependencies.md).

    ``env_paths``: its sys.path entries before the stdlib; ``host_dirs``: where it finds
    sandchat's own msgpack before the sandbox; ``read_paths``: the Landlock read rules that
    replace the whole-venv ones (the interpreter's own tree, msgpack's files, the environment).
    """

    env_paths: tuple[str, ...]
    host_dirs: tuple[str, ...]
    read_paths: tuple[str, ...]


def _host_files(name: str) -> tuple[str, list[str]]:
    """(the folder holding top-level module ``name``, the paths of its distribution's files there)."""
    spec = importlib.util.find_spec(name)  # a top-level spec: found, not run
    if spec is None or spec.origin is None:
        raise DependencyError(f"sandchat's own {name} is not importable here")
    package = Path(spec.origin).parent if spec.submodule_search_locations else Path(spec.origin)
    folder = package.parent
    tops = {package.name}
    try:  # a wheel may ship beside its package, e.g. NAME.libs/ with bundled shared libraries
        files = importlib_metadata.distribution(name).files or []
        tops |= {f.parts[0] for f in files if len(f.parts) > 1 and not f.parts[0].endswith((".dist-info", ".data")) and f.parts[0] != ".."}
    except importlib_metadata.PackageNotFoundError:
        pass
    return str(folder), [str(folder / top) for top in sorted(tops) if (folder / top).exists()]


def child_paths(env: Env, host_modules: Iterable[str] = ("msgpack",)) -> ChildPaths:
    """The import path entries and read rules for the child of a plugin using ``env``."""
    dirs, reads = [], []
    for name in host_modules:
        folder, files = _host_files(name)
        dirs.append(folder)
        reads += files
    interpreter = [p for p in (sys.base_prefix, sys.base_exec_prefix) if p]
    every = [*interpreter, *reads, *env.read_paths()]
    return ChildPaths(tuple(env.import_paths()), tuple(dict.fromkeys(dirs)), tuple(dict.fromkeys(every)))


@dataclass(frozen=True)
class Status:
    """Where a plugin's declared requirements stand: its environment (None if not installed) and what is missing."""

    declared: Declared
    key: str
    env: Env | None
    missing: tuple[str, ...]
    python: str | None = None  # requires-python's complaint about this interpreter

    @property
    def ok(self) -> bool:
        return not self.missing and self.python is None

    def reason(self, plugin: str) -> str | None:
        """Why the plugin cannot load, without the ``plugin 'X'`` prefix (``runner.PluginLoadError``
        adds it); None when it can."""
        if self.python:
            return self.python
        return missing_message(plugin, self.missing).split(" ", 2)[2] if self.missing else None

    def message(self, plugin: str) -> str | None:
        """The whole line (``plugin 'X' needs ...``), for ``plugins check`` and ``plugins list``."""
        reason = self.reason(plugin)
        return None if reason is None else f"plugin '{plugin}' {reason}"


class EnvStore:
    """The environments under ``root`` (``<data dir>/envs``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def manifest(self, key: str) -> dict | None:
        data = self.manifest_at(self.path(key))
        return data if data is not None and data.get("key") == key else None

    @staticmethod
    def manifest_at(directory: Path) -> dict | None:
        try:
            data = json.loads((directory / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def find(self, declared: Declared) -> Env | None:
        key = declared.key
        manifest = self.manifest(key)
        return None if manifest is None else Env(key, self.path(key), manifest)

    def status(self, declared: Declared, verify: bool = False) -> Status:
        """Fast by default (the environment exists: installs are atomic); ``verify`` also reads its metadata."""
        key, env = declared.key, self.find(declared)
        if not declared:
            lacking: list[str] = []
        elif env is None:
            lacking = list(declared.requirements)
        else:
            lacking = missing(declared, env.lib) if verify else []
        return Status(declared, key, env, tuple(lacking), python_problem(declared))

    def keys(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith("."))
        except FileNotFoundError:
            return []

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise moves into place, use records and pruning across sandchat processes."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def write_manifest(self, directory: Path, manifest: dict) -> None:
        tmp = directory / "manifest.tmp"
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp, directory / "manifest.json")

    def record_use(self, key: str, plugin: str, path: Path | str) -> None:
        """Note that ``plugin`` (its file at ``path``) uses ``key``, and no longer any other environment."""
        use = {"plugin": plugin, "path": str(path)}
        with self.lock():
            for other in self.keys():
                manifest = self.manifest(other)
                if manifest is None:
                    continue
                users = [u for u in manifest.get("plugins", []) if u != use]
                if other == key and use not in users:
                    users.append(use)
                if users != manifest.get("plugins", []):
                    manifest["plugins"] = users
                    self.write_manifest(self.path(other), manifest)

    def prune(self, keep: Iterable[str], *, keep_recorded: bool = True) -> list[str]:
        """Remove the environments not in ``keep``; return their keys.

        ``keep_recorded``: also keep an environment while a plugin file recorded as its user
        still exists (a plugin in a ``--plugins-dir`` not named this time still needs it).
        Unfinished installs and plans older than :data:`STALE_SECONDS` go too. A folder
        without a manifest naming it is never deleted: ``envs`` may be a link to a disk
        that holds the user's own folders too (see :meth:`foreign`).
        """
        keep = set(keep)
        removed = []
        with self.lock():
            for key in self.keys():
                manifest = self.manifest(key)
                if key in keep or manifest is None:  # no manifest of its own: not an environment sandchat made (foreign())
                    continue
                if keep_recorded and any(Path(u.get("path", "")).is_file() for u in manifest.get("plugins", [])):
                    continue
                self._remove(self.path(key))
                removed.append(key)
            now = time.time()
            for entry in os.scandir(self.root):
                if entry.name.startswith(_TEMP_PREFIXES) and now - entry.stat().st_mtime > STALE_SECONDS:
                    self._remove(Path(entry.path))
        return removed

    def foreign(self) -> list[str]:
        """The folders under ``root`` sandchat did not make (no manifest naming them): prune leaves them."""
        return [key for key in self.keys() if self.manifest(key) is None]

    def _remove(self, path: Path) -> None:
        """Rename first (a start that looks now sees nothing rather than half an environment), then delete."""
        doomed = self.root / f".old-{path.name}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)
