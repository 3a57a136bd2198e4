"""Launch decision digest: one canonical fingerprint of everything a plugin start is given.

The agent reuses a warm plugin process only when the caller's launch decision, computed
now, is the one that process was started with. ``digest`` makes "the same" exact: the
whole ``runner.PluginConfig`` (the file's bytes, environment and keys, sandbox profile,
paths, endpoints, limits, settings) serialised canonically (dataclass fields in order,
mappings sorted, bytes hashed) and hashed with SHA-256. Any difference restarts the plugin,
so a warm process never keeps an access the caller would no longer give.

The deadlines are left out: they bound each call, not the start, and the client applies
its own (``--timeout``) to every request; a ``--timeout`` must not cost a restart.

``to_plain`` and ``from_plain`` carry a whole config (deadlines and source bytes included)
across the agent's JSON wire and back; only the classes of a launch decision are rebuilt.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import os
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import runner

#: Fields of PluginConfig that are not part of the start decision (see the module docstring).
PER_CALL_FIELDS = frozenset({"deadlines"})


def digest(config: runner.PluginConfig) -> str:
    """The SHA-256 (hex) of ``config``'s canonical form, deadlines aside."""
    return hashlib.sha256(json.dumps(canonical(config), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def canonical(config: runner.PluginConfig) -> dict[str, Any]:
    """``config`` as JSON-able data; the plugin's source bytes appear only as their SHA-256."""
    return {field.name: _plain(getattr(config, field.name)) for field in dataclasses.fields(config) if field.name not in PER_CALL_FIELDS}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__name__} | {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return {"sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, PurePath):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in sorted(value.items())}
    if isinstance(value, (tuple, list, frozenset, set)):
        items = [_plain(item) for item in value]
        return sorted(items, key=repr) if isinstance(value, (frozenset, set)) else items
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"no canonical form for {type(value).__name__} in a launch decision")


def to_plain(config: runner.PluginConfig) -> dict[str, Any]:
    """``config`` whole as JSON data: dataclasses tagged with their class, bytes as base64."""
    return _whole(config)


def from_plain(data: Any) -> runner.PluginConfig:
    """The ``PluginConfig`` that ``to_plain`` made ``data`` of; ``ValueError`` for anything else."""
    config = _rebuild(data)
    if not isinstance(config, runner.PluginConfig):
        raise ValueError("not a launch decision")
    return config


def _whole(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__name__} | {f.name: _whole(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, PurePath):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {"__map__": [[str(key), _whole(item)] for key, item in value.items()]}  # keys stay strings, never a tag
    if isinstance(value, (tuple, list)):
        return [_whole(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"no plain form for {type(value).__name__} in a launch decision")


@functools.cache
def _classes() -> dict[str, type]:
    """The only classes ``from_plain`` builds: the dataclasses a ``PluginConfig`` is made of, from its type hints."""
    found: dict[str, type] = {}
    pending: list[Any] = [runner.PluginConfig]
    while pending:
        hint = pending.pop()
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if hint.__name__ not in found:
                found[hint.__name__] = hint
                pending += typing.get_type_hints(hint).values()
        else:
            pending += typing.get_args(hint)  # Path | None, tuple[Endpoint | str, ...], Mapping[str, str]
    return found


def _rebuild(value: Any, depth: int = 0) -> Any:
    if depth > 8:  # a decision is four levels deep: deeper is not one
        raise ValueError("a launch decision nested too deep")
    if isinstance(value, list):
        return tuple(_rebuild(item, depth + 1) for item in value)
    if not isinstance(value, dict):
        return value
    if set(value) == {"__bytes__"}:
        return base64.b64decode(value["__bytes__"], validate=True)
    if set(value) == {"__map__"}:
        return {str(key): _rebuild(item, depth + 1) for key, item in value["__map__"]}
    cls = _classes().get(value.get("__type__", ""))
    if cls is None:
        raise ValueError(f"not a class of a launch decision: {value.get('__type__')!r}")
    fields = {key: _rebuild(item, depth + 1) for key, item in value.items() if key != "__type__"}
    try:
        return cls(**fields)
    except TypeError as error:
        raise ValueError(f"a bad {cls.__name__}: {error}") from None
