"""The plugin child's import path when the plugin has an environment of its own: that environment and the stdlib, not sandchat's packages.

Standard library only, no import of ``app`` or of a host module, and nothing here runs a
third-party line before the sandbox is on. The child (``runner/child/entry.py``) of a plugin
with declared dependencies calls, in this order:

1. before the sandbox, :func:`locate` the modules sandchat itself needs from its own
   site-packages (msgpack): finding a spec stats and lists folders, it runs nothing;
2. after the sandbox, :func:`load` them (msgpack's code runs now, inside the sandbox, as it
   would have under ``site.main()``) and import the runner's modules that use them;
3. :func:`isolate`: ``sys.path`` becomes the plugin's environment plus the interpreter's
   own path (the stdlib as ``python -I -S`` sees it); sandchat's root and site-packages
   leave it, and msgpack leaves ``sys.modules``, so the plugin imports its own msgpack (or
   none), while the runner keeps the copy it already holds. ``llm_utils`` stays in
   ``sys.modules``: it is the plugin's API.

``site.main()`` is not called for such a plugin, so no ``.pth`` file of any folder is
processed: the environment is a plain ``sys.path`` entry, never ``site.addsitedir``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterable
from importlib.machinery import ModuleSpec

__all__ = ["HOST_MODULES", "isolate", "load", "locate"]

#: sandchat's own third-party modules that the child's runner code imports.
HOST_MODULES = ("msgpack",)


def locate(names: Iterable[str], dirs: Iterable[str]) -> dict[str, ModuleSpec]:
    """Find each top-level module in ``dirs`` without running it; ImportError names the first one not found."""
    found = {}
    search = [str(d) for d in dirs]
    for name in names:
        spec = importlib.machinery.PathFinder.find_spec(name, search)
        if spec is None or spec.loader is None:
            raise ImportError(f"sandchat child: {name} is not in {', '.join(search) or 'any folder'}")
        found[name] = spec
    return found


def load(specs: dict[str, ModuleSpec]) -> None:
    """Run the located modules and register them in ``sys.modules`` (after the sandbox is on)."""
    for name, spec in specs.items():
        module, loader = importlib.util.module_from_spec(spec), spec.loader
        if loader is None:
            raise ImportError(f"sandchat child: {name} has no loader")
        sys.modules[name] = module
        try:
            loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise


def _site_builtins() -> None:
    """``exit``, ``quit``, ``help``, ``copyright``: what ``site.main()`` would add, minus the path work."""
    import site  # with -S, importing site runs none of its path processing

    site.setquit()
    site.setcopyright()
    site.sethelper()


def isolate(env_paths: Iterable[str], interpreter_path: Iterable[str], forget: Iterable[str] = HOST_MODULES) -> list[str]:
    """Make ``sys.path`` the environment's entries then ``interpreter_path``; drop ``forget`` from ``sys.modules``.

    ``interpreter_path`` is ``sys.path`` as the interpreter built it under ``-I -S``, captured
    before the child added anything (the stdlib, its zip and lib-dynload). Returns the new path.
    """
    new_path = list(dict.fromkeys([*map(str, env_paths), *map(str, interpreter_path)]))
    for entry in set(sys.path) - set(new_path):
        sys.path_importer_cache.pop(entry, None)
    sys.path[:] = new_path
    for name in tuple(forget):
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]  # whoever imported it keeps the module object; new imports look afresh
    importlib.invalidate_caches()
    _site_builtins()
    return new_path
