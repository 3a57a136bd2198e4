"""Plugin dependencies: the requirements a plugin declares, the key they give its environment, and whether they are met.

A plugin's metadata block may declare PEP 508 requirements and a Python version::

    # /// plugin
    # dependencies = ["your-llm-library>=1.2"]
    # requires-python = ">=3.11"
    # ///

:func:`parse_declared` turns them into a :class:`Declared` (normalized, sorted, deduplicated;
each bad entry is a one-line :class:`DependencyError` naming it). Equal sets have one
:func:`env_key` (a hash of the normalized set and of the interpreter's tag), so plugins that
declare the same set share one environment (``app/envs.py``; installs: ``app/depinstall.py``).
:func:`missing` reads installed metadata as text: nothing here runs pip or a package's code.
"""

from __future__ import annotations

import hashlib
import json
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = [
    "Declared", "DependencyError", "canonicalize_name",
    "env_key", "missing", "missing_message", "parse_declared", "python_problem", "python_tag",
]  # fmt: skip

MAX_REQUIREMENTS = 64
MAX_REQUIREMENT_CHARS = 1000
MANIFEST_VERSION = 1


class DependencyError(ValueError):
    """A declared requirement is malformed, or an install or plan failed: one line, naming the cause."""


@dataclass(frozen=True)
class Declared:
    """A plugin's declared requirements (normalized, sorted, unique) and its requires-python ("" if none)."""

    requirements: tuple[str, ...] = ()
    requires_python: str = ""

    def __bool__(self) -> bool:
        return bool(self.requirements)

    @property
    def key(self) -> str:
        return env_key(self)

    def parsed(self) -> list[Requirement]:
        return [Requirement(text) for text in self.requirements]


def _normal(req: Requirement) -> str:
    """One spelling per requirement: canonical name and extras, sorted specifiers, packaging's marker text."""
    text: str = canonicalize_name(req.name)
    if req.extras:
        text += "[" + ",".join(sorted(canonicalize_name(extra) for extra in req.extras)) + "]"
    text += str(SpecifierSet(str(req.specifier)))
    if req.marker is not None:
        text += f"; {req.marker}"
    return text


def parse_declared(dependencies: object = (), requires_python: object = None) -> Declared:
    """Validate the metadata's ``dependencies`` list and ``requires-python`` string; raise DependencyError."""
    if not isinstance(dependencies, list | tuple) or not all(isinstance(item, str) for item in dependencies):
        raise DependencyError("dependencies must be a list of strings")
    if len(dependencies) > MAX_REQUIREMENTS:
        raise DependencyError(f"dependencies lists {len(dependencies)} entries; at most {MAX_REQUIREMENTS} are allowed")
    normal = []
    for text in dependencies:
        shown = text if len(text) <= 80 else text[:77] + "..."
        if len(text) > MAX_REQUIREMENT_CHARS:
            raise DependencyError(f"dependencies entry {shown!r} is longer than {MAX_REQUIREMENT_CHARS} characters")
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            reason = " ".join(str(exc).split())
            raise DependencyError(f"dependencies entry {shown!r} is not a PEP 508 requirement: {reason}") from None
        if req.url:  # pip would fetch (or read) it while planning, before the user is asked: a plugin names no address
            raise DependencyError(
                f"dependencies entry {shown!r} is a direct reference (a URL), which sandchat does not install: "
                f"name a release from the package index instead, e.g. '{canonicalize_name(req.name)}>=1.0'"
            )
        normal.append(_normal(req))
    if requires_python is None:
        spec = ""
    elif not isinstance(requires_python, str):
        raise DependencyError("requires-python must be a string")
    else:
        try:
            spec = str(SpecifierSet(requires_python))
        except InvalidSpecifier:
            raise DependencyError(f"requires-python {requires_python!r} is not a version specifier (e.g. '>=3.11')") from None
    return Declared(tuple(sorted(set(normal))), spec)


def python_problem(declared: Declared, version: str | None = None) -> str | None:
    """Why this interpreter (or ``version``) does not satisfy requires-python; None when it does."""
    if not declared.requires_python:
        return None
    version = version or ".".join(str(part) for part in sys.version_info[:3])
    if SpecifierSet(declared.requires_python).contains(version, prereleases=True):
        return None
    return f"requires Python {declared.requires_python}; this is Python {version} ({sys.executable})"


def python_tag() -> str:
    """What makes an installed environment fit an interpreter: implementation, version, ABI and platform."""
    return f"{sys.implementation.cache_tag}{sys.abiflags}-{sysconfig.get_platform()}"


def env_key(declared: Declared, tag: str | None = None) -> str:
    """The environment's name: a hash of the normalized requirements and the interpreter's tag.

    Only what the metadata says and the interpreter go in, so the host finds the environment
    at every start from the plugin's file alone. Install options (``--allow-build``) and the
    user's index settings are not part of it: the manifest records them.
    """
    body = json.dumps({"v": MANIFEST_VERSION, "requirements": list(declared.requirements), "python": tag or python_tag()})
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def _environment(extra: str = "") -> dict[str, str]:
    env = {key: str(value) for key, value in default_environment().items()}
    env["extra"] = extra
    return env


def _installed(lib: Path) -> dict:
    from importlib import metadata  # ~40 ms: paid by checks, not by discovery

    found: dict = {}
    for dist in metadata.distributions(path=[str(lib)]):
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist)
    return found


def _unsatisfied(req: Requirement, dists: dict, seen: set, extra: str = "") -> str | None:
    """Why ``req`` (and what it requires, recursively) is not installed; None when it is."""
    if req.marker is not None and not req.marker.evaluate(_environment(extra)):
        return None
    name = canonicalize_name(req.name)
    dist = dists.get(name)
    if dist is None:
        return f"{name} is missing"
    try:
        version = Version(dist.version)
    except InvalidVersion:
        return f"{name} has an unreadable version {dist.version!r}"
    if not req.url and not req.specifier.contains(version, prereleases=True):
        return f"{name} {version} is installed"
    for wanted in sorted(req.extras) or [""]:
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        for text in dist.requires or ():
            try:
                child = Requirement(text)
            except InvalidRequirement:
                continue  # a dependency's own metadata: not ours to judge
            problem = _unsatisfied(child, dists, seen, canonicalize_name(wanted) if wanted else "")
            if problem:
                return problem
    return None


def missing(declared: Declared, lib: Path | None) -> list[str]:
    """The declared requirements that ``lib`` does not satisfy (their dependencies included), as declared."""
    dists = _installed(lib) if lib is not None and lib.is_dir() else {}
    return [text for text, req in zip(declared.requirements, declared.parsed(), strict=True) if _unsatisfied(req, dists, set())]


def missing_message(plugin: str, names: Iterable[str]) -> str:
    """The one line a plugin that cannot load for want of its dependencies fails with."""
    names = list(names)
    which = "which is" if len(names) == 1 else "which are"
    return f"plugin '{plugin}' needs {', '.join(names)}, {which} not installed: run: sandchat plugins deps {plugin}"
