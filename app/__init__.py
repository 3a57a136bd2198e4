"""sandchat: a command-line chat whose LLM back-ends are sandboxed plugins.

The public Python API is :class:`PluginManager`; the command line is ``app.cli``.
``PluginManager`` is imported on first access (PEP 562) so that CLI commands which
never run a plugin do not pay for importing the runner.

Vocabulary (one name, one meaning, across ``app``):

* **name**: a plugin's name, the ``str`` users type (``claude`` for ``claude_plugin.py``).
  Records keep it in a field called ``plugin`` (runner errors, ``Exchange``, ``Grant``, logs.db).
* **PluginFile** (``plugin_file``): a discovered plugin file: name, path, folder kind, metadata.
* **handle**: a ``runner.Plugin``, the host's ``LLMClient`` for one plugin, its process
  started on first use (``manager.handle(name)``); the plugin's own class runs in the child.
* **Settings** (``app.settings``): what the user chose: config.toml, ``SANDCHAT_*``, the CLI's options.
* **launch config**: the ``runner.PluginConfig`` of one start: what it may read, write,
  reach and see (``app.policy``, ``manager.launch_config(name)``).
* **Access** and **grant** (``app.access``, ``app.grants``): the profile and permissions a
  plugin file has, a grant being bound to the file's SHA-256; a **refusal** (``app.refusals``)
  is why a plugin may not start at all; a **hint** (``app.hints``) is the fix for a failure.

Imports go one way, down this list; a module imports only from the layers below its own
(``TYPE_CHECKING``-only annotations aside):

1. ``cli`` (and ``__main__``, ``entry``, and ``agent.forker``/``agent.worker``, which run it): parsing, dispatch
2. ``commands.*``, ``context``: one module per command group
3. ``chat`` (over ``chatcore``), ``repl``, ``slash``, ``health``, ``conformance``, ``hints``, ``choice``, and
   their helpers ``history``, ``transcript``, ``tokencache``, ``stream``, ``interrupt``, ``pluginlog``
4. ``manager``: the registry of plugins and their handles
5. ``policy``, ``access``, ``refusals``, ``discovery``, ``companions``: the decisions
6. ``grants``, ``keys``, ``switches``, ``healthlog``, ``chatlog``, ``files``, ``sqlitefile``: the stores
7. ``settings``, ``render``, ``exits``: read by all

``app`` imports only ``runner``'s public names (``runner.__all__``), never its submodules.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms of a handed-over command); mypy knows the name

if TYPE_CHECKING:
    from typing import Any

    from app.manager import PluginManager

__all__ = ["PluginManager"]


def __getattr__(name: str) -> Any:
    if name == "PluginManager":
        from app.manager import PluginManager

        return PluginManager
    raise AttributeError(f"module 'app' has no attribute {name!r}")
