"""Access decisions: may a plugin start at all, and under which grant does it run.

* **Startable.** Safe mode (``--no-plugins``) starts nothing; a plugin the user turned
  off (``SANDCHAT_DISABLE_PLUGINS``, the settings file's ``disabled`` list, ``plugins
  disable``) does not start (:func:`check_startable`, :func:`is_disabled`).
* **Grant.** A plugin *requests* endpoints and variables in its metadata block; only a
  grant bound to its file's SHA-256 gives them (:func:`access_of`). The user's grant
  applies to the very bytes it was given to; a shipped plugin whose bytes are those
  recorded in ``llm_plugins/TRUSTED`` is granted what it requests. Anything else runs
  ``untrusted``, and a grant it had is reported as lapsed.
* **Adding.** A new grant adds to what works (:func:`granted`, :func:`grant_more`), it
  never takes an endpoint away.

What the granted profile then lets the process read, write and reach is ``app.policy``'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.grants import Grant, GrantStore, Lapsed, file_sha256, shipped_hashes

if TYPE_CHECKING:
    from app.discovery import Metadata, PluginFile
    from app.settings import Settings
    from app.switches import SwitchStore

__all__ = ["Access", "access_of", "check_startable", "grant_more", "granted", "is_disabled"]


@dataclass(frozen=True)
class Access:
    """What one plugin file may do right now: its profile, the grant behind it, or why it lapsed."""

    profile: str
    grant: Grant | None = None
    lapsed: Lapsed | None = None

    @property
    def network(self) -> tuple[str, ...]:
        return self.grant.network if self.grant else ()

    @property
    def env(self) -> tuple[str, ...]:
        return self.grant.env if self.grant else ()


def is_disabled(name: str, settings: Settings, switches: SwitchStore) -> bool:
    """Whether the user turned plugin ``name`` off: the settings file, the environment, or ``plugins disable``."""
    return name in settings.disabled or name in switches.disabled()


def check_startable(name: str, settings: Settings, switches: SwitchStore) -> None:
    """Raise the refusal that keeps plugin ``name`` from starting at all now (``SafeMode``, ``TurnedOff``, ``SwitchedOff``)."""
    from app.refusals import SafeMode, SwitchedOff, TurnedOff  # the runner's errors: only when a plugin is to start

    if settings.no_plugins:
        raise SafeMode(name)
    if name in settings.disabled:
        raise TurnedOff(name)
    if name in switches.disabled():
        raise SwitchedOff(name)


def access_of(plugin_file: PluginFile, grants: GrantStore, code: bytes | None = None, meta: Metadata | None = None) -> Access:
    """The profile and grant that apply to ``plugin_file``'s ``code`` (default: the file as it is now).

    ``meta`` is the metadata block of that code; a shipped plugin is granted what it requests.
    """
    digest = hashlib.sha256(code).hexdigest() if code is not None else file_sha256(plugin_file.path)
    user = grants.load().get(plugin_file.name)
    if user is not None and user.sha256 == digest:
        return Access("network" if user.network else "untrusted", user)
    lapsed = Lapsed(user, digest) if user is not None else None
    pinned = shipped_hashes(plugin_file.path.parent).get(plugin_file.path.name) if plugin_file.source == "shipped" else None
    if pinned is not None:
        meta = meta or plugin_file.metadata
        shipped = Grant(plugin_file.name, pinned, meta.network, meta.env, source="shipped")
        if pinned == digest:
            return Access("network" if meta.network else "untrusted", shipped, lapsed)
        lapsed = lapsed or Lapsed(shipped, digest)
    return Access("untrusted", None, lapsed)


def granted(plugin_file: PluginFile, grants: GrantStore) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What ``plugin_file`` may use now, or was last granted: the base that a grant adds to.

    Its effective grant (the user's, or the one it ships with), joined with a user grant
    for an earlier version of the file: adding an endpoint never takes away one that
    works, be it the user's or the shipped plugin's own.
    """
    effective = access_of(plugin_file, grants).grant
    stored = grants.load().get(plugin_file.name)
    network = [*(effective.network if effective else ()), *(stored.network if stored else ())]
    env = [*(effective.env if effective else ()), *(stored.env if stored else ())]
    return tuple(dict.fromkeys(network)), tuple(dict.fromkeys(env))


def grant_more(plugin_file: PluginFile, grants: GrantStore, network: tuple[str, ...], env: tuple[str, ...]) -> Grant:
    """Grant ``network`` and ``env`` on top of :func:`granted`, bound to the file as it is now."""
    base_net, base_env = granted(plugin_file, grants)
    return grants.grant(plugin_file.name, file_sha256(plugin_file.path), tuple(dict.fromkeys((*base_net, *network))),
                        tuple(dict.fromkeys((*base_env, *env))))  # fmt: skip
