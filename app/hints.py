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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.manager import PluginManager

__all__ = ["Hint", "hint_for"]

_NO_LANDLOCK = (
    "this kernel lacks Landlock, so sandchat cannot confine plugin file access; to run plugins "
    "anyway, unprotected, set allow_unsandboxed = true in config.toml or SANDCHAT_ALLOW_UNSANDBOXED=1"
)


@dataclass(frozen=True)
class Hint:
    """What to do about one failure: a line for the user, and what a yes would add to the grant."""

    text: str
    network: tuple[str, ...] = ()
    env: tuple[str, ...] = ()

    @property
    def grants(self) -> bool:
        """True when the fix is a grant (the chat may offer it)."""
        return bool(self.network or self.env)


def hint_for(manager: PluginManager, name: str, error: Exception | None) -> Hint | None:
    """The fix for plugin ``name``'s ``error``, or None when no permission or setting explains it."""
    import runner

    if isinstance(error, runner.PluginSandboxError) and "Landlock" in str(error):
        return Hint(_NO_LANDLOCK)
    try:
        plugin = manager.plugin_file(name)
    except runner.PluginError:
        return None
    access = manager.access(plugin)
    refused = _refused_endpoint(error)
    if refused is not None and refused not in access.network:
        return Hint(
            f"plugin {name!r} tried to reach {refused}, which is not granted: run sandchat plugins grant {name} --network {refused}",
            network=(refused,),
        )
    meta = plugin.metadata
    if access.lapsed is not None:
        return Hint(access.lapsed.explain(), network=meta.network, env=meta.env)
    if access.grant is None and (meta.network or meta.env):
        wants = "; ".join(filter(None, [
            f"network {', '.join(meta.network)}" if meta.network else "",
            f"env {', '.join(meta.env)}" if meta.env else "",
        ]))  # fmt: skip
        return Hint(
            f"plugin {name!r} requests {wants}, not granted; to grant it, run: sandchat plugins grant {name}",
            network=meta.network,
            env=meta.env,
        )
    return _unset_variable(manager, name, error, (*access.env, *meta.env))


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
            return Hint(f"plugin {name!r} needs {variable}, which is not set; run: sandchat keys set {variable}")
    return None
