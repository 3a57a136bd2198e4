"""Plugin discovery: find plugin files, name them and read their metadata, never running them.

A plugin is a ``*.py`` file in a plugin folder. Its name is the file stem with a trailing
``_plugin`` removed (``claude_plugin.py`` -> ``claude``). Its optional metadata block
is TOML in comment lines, read as text::

    # /// plugin
    # description = "..."
    # network = ["api.example.com:443"]
    # env = ["EXAMPLE_API_KEY"]
    # files = ["example_plugin.toml"]
    # dependencies = ["example-sdk>=1.2"]
    # requires-python = ">=3.11"
    # ///

``dependencies`` (PEP 508) are installed by ``sandchat plugins deps NAME`` into an
environment of the plugin's own (``app.envs``); discovery only validates and normalizes them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.files import file_stamp

if TYPE_CHECKING:
    from app.deps import Declared

__all__ = [
    "Discovery", "Metadata", "MetadataError", "PluginFile", "Skipped",
    "discover", "file_problem", "find", "metadata_of", "parse_metadata", "plugin_name",
]  # fmt: skip

_BLOCK = re.compile(r"(?m)^# /// plugin[ \t]*$\r?\n(?P<body>(?:^#(?:| .*)\r?\n)*?)^# ///[ \t]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEAD_BYTES = 64 * 1024  # the block must sit near the top; big files are not read whole


class MetadataError(ValueError):
    """Raised when a plugin's metadata block is not valid TOML or has bad values."""


@dataclass(frozen=True)
class Metadata:
    """What a plugin file says about itself: a description and the permissions it requests."""

    description: str = ""
    network: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # companion files it reads, relative to its folder
    dependencies: tuple[str, ...] = ()  # PEP 508 requirements, normalized and sorted (app.deps)
    requires_python: str = ""

    def __post_init__(self) -> None:
        if self.dependencies or self.requires_python:
            from app.deps import DependencyError, parse_declared  # packaging is paid for only by plugins that declare

            try:
                declared = parse_declared(list(self.dependencies), self.requires_python or None)
            except DependencyError as exc:
                raise MetadataError(str(exc)) from None
            object.__setattr__(self, "dependencies", declared.requirements)
            object.__setattr__(self, "requires_python", declared.requires_python)
        if self.network:
            from runner import EndpointError, parse_endpoint  # ipaddress is paid for only by plugins that ask

            try:  # spelled one way everywhere: what is granted is what the host matches
                object.__setattr__(self, "network", tuple(dict.fromkeys(str(parse_endpoint(e)) for e in self.network)))
            except EndpointError as exc:
                raise MetadataError(str(exc)) from None
        for name in self.env:
            if not _ENV.match(name):
                raise MetadataError(f"env entry {name!r} is not a valid variable name")
        for name in self.files:
            parts = name.split("/")
            if not name or name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts):
                raise MetadataError(f"files entry {name!r} must be a path inside the plugin's folder (no '..', not absolute)")

    @property
    def declared(self) -> Declared:
        """The declared requirements as ``app.deps`` works with them (empty when none are declared)."""
        from app.deps import Declared

        return Declared(self.dependencies, self.requires_python)


@dataclass(frozen=True)
class PluginFile:
    """A discovered plugin: its name, file, folder kind, and metadata (or why it is bad)."""

    name: str
    path: Path
    source: str  # "shipped", "user" or "dir"
    metadata: Metadata = field(default_factory=Metadata)
    metadata_error: str | None = None
    stamp: tuple[int, int] = (0, 0)  # (mtime_ns, size) when read: a different stamp means "changed"


@dataclass(frozen=True)
class Skipped:
    """A file in a plugin folder that is not a plugin, and why.

    ``candidate``: it looks like an attempt at a plugin (a ``.py`` file, ``x.py.bak``, a
    package folder), so a person wants to hear that it was skipped; a ``README`` or
    ``notes.txt`` is not one, and only ``plugins list --all`` mentions it.
    """

    path: Path
    reason: str
    candidate: bool = True


@dataclass(frozen=True)
class Discovery:
    """The result of scanning the plugin folders."""

    plugins: dict[str, PluginFile]
    skipped: tuple[Skipped, ...] = ()
    conflicts: dict[str, tuple[PluginFile, ...]] = field(default_factory=dict)
    missing_dirs: tuple[Path, ...] = ()

    def names(self) -> list[str]:
        return sorted(self.plugins)

    def files(self) -> dict[Path, PluginFile]:
        """Every plugin file seen, conflicting ones included, by path."""
        every = list(self.plugins.values()) + [f for files in self.conflicts.values() for f in files]
        return {f.path: f for f in every}


def plugin_name(path: Path) -> str:
    stem = path.stem
    return stem[: -len("_plugin")] if stem.endswith("_plugin") and len(stem) > len("_plugin") else stem


def parse_metadata(text: str) -> Metadata:
    """Read the ``# /// plugin`` block from a plugin's source text; absent means empty."""
    blocks = list(_BLOCK.finditer(text))
    if not blocks:
        return Metadata()
    if len(blocks) > 1:
        raise MetadataError("more than one '# /// plugin' block")
    import tomllib  # only paid for by files that have a block

    body = "".join(line[2:] if line.startswith("# ") else line[1:] for line in blocks[0]["body"].splitlines(keepends=True))
    try:
        data = tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        raise MetadataError(f"metadata block is not valid TOML: {exc}") from None
    unknown = set(data) - {"description", "network", "env", "files", "dependencies", "requires-python"}
    if unknown:
        raise MetadataError(f"unknown metadata keys: {', '.join(sorted(unknown))}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise MetadataError("description must be a string")
    lists = {key: data.get(key, []) for key in ("network", "env", "files")}
    for key, value in lists.items():
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise MetadataError(f"{key} must be a list of strings")
    requires_python = data.get("requires-python", "")
    if not isinstance(requires_python, str):
        raise MetadataError("requires-python must be a string")
    dependencies = data.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(isinstance(item, str) for item in dependencies):
        raise MetadataError("dependencies must be a list of strings")
    if "requires-python" in data and not requires_python.strip():
        raise MetadataError("requires-python must not be empty (leave it out instead)")
    return Metadata(description=description, **{key: tuple(value) for key, value in lists.items()},
                    dependencies=tuple(dependencies), requires_python=requires_python)  # fmt: skip


def metadata_of(code: bytes) -> Metadata:
    """The metadata block of a plugin's code, read from its first bytes as discovery does."""
    return parse_metadata(code[:_HEAD_BYTES].decode("utf-8", errors="replace"))


def _skip_reason(path: Path) -> str | None:
    name = path.name
    if name == "__pycache__":
        return "python cache"
    if path.is_dir():
        return "a directory"
    if name.startswith("."):
        return "hidden file (name starts with '.')"
    if name.startswith("_"):
        return "private file (name starts with '_')"
    if path.suffix != ".py":
        return "not a .py file"
    if " " in name:
        return "file name contains a space"
    if not _NAME.match(plugin_name(path)):
        return "name must be letters, digits, '_' or '-'"
    return None


#: sandchat's own files in the shipped folder: neither plugins nor skipped plugins.
_OWN_FILES = frozenset({"TRUSTED"})


def _candidate(path: Path) -> bool:
    """Whether a skipped file looks like an attempt at a plugin (see :class:`Skipped`)."""
    if path.name.startswith(".") or path.name.endswith("~"):  # editor and system litter (.swp, .DS_Store, backups)
        return False
    if path.is_dir():
        return (path / "__init__.py").is_file()  # a package: plugins are single files, say so
    return ".py" in (suffix.lower() for suffix in path.suffixes)


def file_problem(path: Path) -> str | None:
    """Why discovery would skip a file at ``path`` (its name breaks a rule), or None."""
    reason = _skip_reason(path)
    return "python cache folder" if reason == "python cache" else reason


def _read_file(path: Path, source: str, previous: dict[Path, PluginFile]) -> PluginFile:
    stamp = file_stamp(path)
    known = previous.get(path)
    if known is not None and known.stamp == stamp and known.source == source:
        return known  # unchanged since the last scan: not read again
    name = plugin_name(path)
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
        return PluginFile(name, path, source, metadata_of(head), stamp=stamp)  # as each start reads it
    except (OSError, MetadataError) as exc:
        return PluginFile(name, path, source, Metadata(), metadata_error=str(exc), stamp=stamp)


def _distinct(folders: Iterable[tuple[Path, str]]) -> Iterator[tuple[Path, str]]:
    """Each folder resolved, once (its first source wins), in order."""
    seen: set[Path] = set()
    for folder, source in folders:
        folder = folder.resolve()
        if folder not in seen:
            seen.add(folder)
            yield folder, source


def find(folders: Iterable[tuple[Path, str]], name: str) -> PluginFile | None:
    """Plugin ``name``'s file as :func:`discover` finds it, reading no other; None unless exactly one file has that name.

    For a command that uses one plugin (a warm ``prompt``): the other plugins' metadata is
    not parsed. None leaves the why (missing, ambiguous) to a whole :func:`discover`.
    """
    if not _NAME.match(name):
        return None
    found: list[PluginFile] = []
    for folder, source in _distinct(folders):
        for path in (folder / f"{name}.py", folder / f"{name}_plugin.py"):  # the two stems plugin_name maps to name
            if plugin_name(path) == name and path.exists() and _skip_reason(path) is None:
                found.append(_read_file(path, source, {}))
    return found[0] if len(found) == 1 else None


def discover(folders: Iterable[tuple[Path, str]], previous: Discovery | None = None) -> Discovery:
    """Scan ``(folder, source)`` pairs in order; files unchanged since ``previous`` are reused."""
    known = {} if previous is None else previous.files()
    found: dict[str, list[PluginFile]] = {}
    skipped: list[Skipped] = []
    missing: list[Path] = []
    for folder, source in _distinct(folders):
        if not folder.is_dir():
            missing.append(folder)
            continue
        for path in sorted(folder.iterdir()):
            reason = _skip_reason(path)
            if reason == "python cache" or (source == "shipped" and path.name in _OWN_FILES):
                continue
            if reason:
                skipped.append(Skipped(path, reason, _candidate(path)))
                continue
            plugin_file = _read_file(path, source, known)
            found.setdefault(plugin_file.name, []).append(plugin_file)
    companions = {f.path.parent / name for files in found.values() for f in files for name in f.metadata.files}
    skipped = [s for s in skipped if s.path not in companions]  # a plugin's own data file, not a skipped plugin
    plugins = {name: files[0] for name, files in found.items() if len(files) == 1}
    conflicts = {name: tuple(files) for name, files in found.items() if len(files) > 1}
    for files in conflicts.values():
        skipped.extend(Skipped(f.path, f"name {f.name!r} is used by {len(files)} files") for f in files)
    return Discovery(plugins, tuple(skipped), conflicts, tuple(missing))
