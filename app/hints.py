"""Permission hints: from what failed and what is granted, the one fix, as a command that adds.

A hint is computed from the failure itself, never from a guess: the endpoint the host
refused the plugin during the failed call (``PluginRaised.refused``: the host's own
record, never the plugin's words), a variable the error names that is not set, a grant
that lapsed because the file changed, or a plugin never granted what it requests. Every
command it proposes adds to the plugin's grant; none replaces what works, and none is
granted without the user's yes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from app.access import access_of

if TYPE_CHECKING:
    from app.discovery import Metadata
    from app.grants import Lapsed
    from app.manager import PluginManager

__all__ = ["Hint", "HintKind", "for_lapsed", "hint_for", "requests"]

#: What a hint is about: a kernel without Landlock (a setting), an endpoint the host refused, a
#: grant that lapsed with the file, a request never granted, or a variable that is not set.
HintKind = Literal["no-landlock", "grant-network", "lapsed", "grant-requested", "set-key"]

_NO_LANDLOCK = (
    "this kernel lacks Landlock, so sandchat cannot confine plugin file access; to run plugins "
    "anyway, unprotected, set allow_unsandboxed = true in config.toml or SANDCHAT_ALLOW_UNSANDBOXED=1"
)


@dataclass(frozen=True)
class Hint:
    """What to do about one failure: its kind, a line for the user, the command it proposes, and what a yes would grant."""

    kind: HintKind
    text: str
    command: str | None = None  # the whole command the text proposes; None when the fix is a setting
    network: tuple[str, ...] = ()
    env: tuple[str, ...] = ()

    @property
    def grants(self) -> bool:
        """True when the fix is a grant (the chat may offer it)."""
        return bool(self.network or self.env)


def hint_for(manager: PluginManager, name: str, error: Exception | None) -> Hint | None:
    """The fix for plugin ``name``'s ``error``, or None when no permission or setting explains it."""
    import runner
    from app.policy import MissingDependencies

    if isinstance(error, runner.PluginSandboxError) and "Landlock" in str(error):
        return Hint("no-landlock", _NO_LANDLOCK)
    if isinstance(error, MissingDependencies):
        return None  # its own line names what is missing and the command that installs it; a grant would not help
    try:
        plugin_file = manager.plugin_file(name)
    except runner.PluginError:
        return None
    access = access_of(plugin_file, manager.grants)
    refused = _refused_endpoint(error)
    if refused is not None and refused not in access.network:
        command = f"sandchat plugins grant {name} --network {refused}"
        return Hint(
            "grant-network", f"plugin {name!r} tried to reach {refused}, which is not granted: run {command}", command, network=(refused,)
        )
    meta = plugin_file.metadata
    if access.lapsed is not None:
        return for_lapsed(access.lapsed, meta)
    if access.grant is None and (meta.network or meta.env):
        command = f"sandchat plugins grant {name}"
        text = f"plugin {name!r} requests {requests(meta)}, not granted; to grant it, run: {command}"
        return Hint("grant-requested", text, command, network=meta.network, env=meta.env)
    return _unset_variable(manager, name, error, (*access.env, *meta.env))


def requests(meta: Metadata) -> str:
    """What a metadata block requests, in words: ``network a:443, b:443; env X_KEY``, or ``nothing``."""
    return "; ".join(filter(None, [
        f"network {', '.join(meta.network)}" if meta.network else "",
        f"env {', '.join(meta.env)}" if meta.env else "",
    ])) or "nothing"  # fmt: skip


def for_lapsed(lapsed: Lapsed, meta: Metadata | None = None) -> Hint:
    """A grant that lapsed because the file changed: review the file, then grant what it requests (``meta``) again."""
    grant = lapsed.grant
    what = "differs from the shipped version" if grant.source == "shipped" else "changed since its permissions were granted"
    command = f"sandchat plugins grant {grant.plugin}"
    text = f"plugin {grant.plugin!r} {what}, so it runs untrusted; review it, then run: {command}"
    return Hint("lapsed", text, command, network=meta.network if meta else (), env=meta.env if meta else ())


def _refused_endpoint(error: Exception | None) -> str | None:
    """The endpoint the host refused during the failed call, spelled as a grant, or None."""
    import runner

    if not isinstance(error, runner.PluginRaised) or not error.refused:
        return None
    try:
        endpoint = runner.parse_endpoint(error.refused)
    except runner.EndpointError:
        return None  # a name with no port (a lookup without one), or no host at all: no grant would match it
    return None if endpoint.wildcard else str(endpoint)  # the host refuses names, never patterns


def _unset_variable(manager: PluginManager, name: str, error: Exception | None, variables: tuple[str, ...]) -> Hint | None:
    """A granted or requested variable the error names, if it is not set anywhere."""
    text = str(error or "")
    for variable in dict.fromkeys(variables):
        if re.search(rf"\b{re.escape(variable)}\b", text) and not manager.keys.resolve((variable,), manager.settings.environ):
            command = f"sandchat keys set {variable}"
            return Hint("set-key", f"plugin {name!r} needs {variable}, which is not set; run: {command}", command)
    return None
