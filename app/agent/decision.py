"""Launch decision digest: one canonical fingerprint of everything a plugin start is given.

The agent reuses a warm plugin process only when the caller's launch decision, computed
now, is the one that process was started with. ``digest`` makes "the same" exact: the
whole ``runner.PluginConfig`` (the file's bytes, environment and keys, sandbox profile,
paths, endpoints, limits, settings) serialised canonically (dataclass fields in order,
mappings sorted, bytes hashed) and hashed with SHA-256. Any difference restarts the plugin,
so a warm process never keeps an access the caller would no longer give.

The deadlines are left out: they bound each call, not the start, and the client applies
its own (``--timeout``) to every request; a ``--timeout`` must not cost a restart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
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
