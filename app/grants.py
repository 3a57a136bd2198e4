"""Permission grants: what the user allowed a plugin, bound to the file's content hash.

A plugin *requests* network endpoints and environment variables in its metadata block;
only a grant lets it have them. A grant records the SHA-256 of the file it was given
to: when the file changes, the grant lapses and the plugin runs untrusted again.
Shipped plugins carry a built-in grant of exactly what they request, bound the same
way to the content hashes recorded in ``llm_plugins/TRUSTED``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from app.files import JsonFile

__all__ = ["Grant", "GrantStore", "Lapsed", "file_sha256", "shipped_hashes"]


@dataclass(frozen=True)
class Grant:
    """Network endpoints and environment variables granted to one plugin file."""

    plugin: str
    sha256: str
    network: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    granted_at: float = 0.0
    source: str = "user"  # "user" or "shipped"


@dataclass(frozen=True)
class Lapsed:
    """A grant that no longer applies because the plugin file changed since it was given (told by ``app.hints.for_lapsed``)."""

    grant: Grant
    current_sha256: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_hashes(shipped_dir: Path) -> dict[str, str]:
    """File name -> SHA-256 of the shipped plugins as released (``llm_plugins/TRUSTED``)."""
    try:
        lines = (shipped_dir / "TRUSTED").read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    pairs = (line.split() for line in lines if line.strip() and not line.startswith("#"))
    return {name: digest for digest, name in pairs}


class GrantStore:
    """The user's grants, kept in the config directory as a :class:`~app.files.JsonFile`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = JsonFile(path, "grants")

    def load(self) -> dict[str, Grant]:
        raw = self._file.read()
        if raw is None:
            return {}  # nothing stored yet
        entries = raw.get("grants", {}) if isinstance(raw, dict) else None
        if not isinstance(entries, dict):
            raise self._file.corrupt("no table of grants")
        try:
            return {
                name: Grant(
                    plugin=name,
                    sha256=str(entry["sha256"]),
                    network=tuple(entry.get("network", ())),
                    env=tuple(entry.get("env", ())),
                    granted_at=float(entry.get("granted_at", 0.0)),
                )
                for name, entry in entries.items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._file.corrupt(f"a bad entry: {exc!r}") from None

    def _save(self, grants: dict[str, Grant]) -> None:
        self._file.write({"version": 1, "grants": {name: _entry(g) for name, g in sorted(grants.items())}})

    def grant(self, name: str, sha256: str, network: tuple[str, ...], env: tuple[str, ...]) -> Grant:
        grants = self.load()
        grants[name] = Grant(name, sha256, tuple(network), tuple(env), time.time())
        self._save(grants)
        return grants[name]

    def remove(self, name: str, network: tuple[str, ...] = (), env: tuple[str, ...] = ()) -> Grant | None:
        """Take ``network`` and ``env`` out of ``plugin``'s grant; the rest stays. None if it had none."""
        grants = self.load()
        old = grants.get(name)
        if old is None:
            return None
        return self.grant(name, old.sha256, tuple(e for e in old.network if e not in network), tuple(v for v in old.env if v not in env))

    def revoke(self, name: str) -> bool:
        grants = self.load()
        if grants.pop(name, None) is None:
            return False
        self._save(grants)
        return True


def _entry(grant: Grant) -> dict[str, object]:
    entry = asdict(grant)
    for key in ("plugin", "source"):
        entry.pop(key)
    entry["network"], entry["env"] = list(grant.network), list(grant.env)
    return entry
