"""Plugin loading inside the child: run one plugin's code and find its LLMClient class.

The code arrives as bytes from the host (see runner/child/entry.py); the path only names it,
for tracebacks and ``__file__``: the file itself is never opened here.

Runs only in the sandboxed child. Every failure becomes a :class:`LoadFailure` carrying
plain strings (type, message, traceback) so it can cross the process boundary as data.
"""

from __future__ import annotations

import importlib.util
import linecache
import os
import sys
import traceback
from types import ModuleType

from llm_utils import DEFAULT_CONTEXT_WINDOW, LLMClient

__all__ = ["LoadFailure", "instantiate", "load_module", "plugin_class"]


class LoadFailure(Exception):
    """Raised when a plugin file cannot be turned into a working LLMClient instance."""

    def __init__(self, type_: str, message: str, traceback_text: str = "") -> None:
        self.type = type_
        self.message = message
        self.traceback = traceback_text
        super().__init__(f"{type_}: {message}")


def _from_exception(exc: BaseException, doing: str) -> LoadFailure:
    text = "".join(traceback.format_exception(exc))
    if isinstance(exc, SyntaxError):
        where = f"{os.path.basename(exc.filename or '?')}, line {exc.lineno}"
        return LoadFailure("SyntaxError", f"{exc.msg} ({where})", text)
    if isinstance(exc, SystemExit):
        return LoadFailure("SystemExit", f"called sys.exit({exc.code!r}) {doing}", text)
    return LoadFailure(type(exc).__name__, f"{exc} ({doing})" if str(exc) else doing, text)


def load_module(source: bytes, path: str, module_name: str) -> ModuleType:
    """Execute ``source`` (the plugin's code, named ``path``) as a fresh module named ``module_name``."""
    module = ModuleType(module_name)
    module.__file__ = path
    sys.modules[module_name] = module
    try:
        text = importlib.util.decode_source(source)  # honours a PEP 263 coding line, as import does
        # Tracebacks read lines through linecache: give it these bytes, not the file as it is now.
        linecache.cache[path] = (len(text), None, text.splitlines(keepends=True), path)
        code = compile(source, path, "exec", dont_inherit=True)
        exec(code, module.__dict__)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt at import are load failures too
        raise _from_exception(exc, "at import") from None
    return module


def plugin_class(module: ModuleType) -> type[LLMClient]:
    """Return the one concrete LLMClient subclass defined in ``module``."""
    defined = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, LLMClient) and obj is not LLMClient and obj.__module__ == module.__name__
    ]
    concrete = [cls for cls in defined if not getattr(cls, "__abstractmethods__", None)]
    if len(concrete) == 1:
        return concrete[0]
    if len(concrete) > 1:
        names = ", ".join(sorted(cls.__name__ for cls in concrete))
        raise LoadFailure("PluginClassError", f"defines {len(concrete)} LLMClient subclasses ({names}); expected exactly one")
    if defined:
        missing = "; ".join(f"{cls.__name__} does not implement {', '.join(sorted(cls.__abstractmethods__))}" for cls in defined)
        raise LoadFailure("PluginClassError", f"has no concrete LLMClient subclass: {missing}")
    raise LoadFailure(
        "PluginClassError",
        "defines no LLMClient subclass (expected a class that subclasses llm_utils.LLMClient)",
    )


def instantiate(cls: type[LLMClient]) -> LLMClient:
    """Create the plugin instance and check the attributes the host relies on."""
    try:
        instance = cls()
    except BaseException as exc:
        raise _from_exception(exc, f"in {cls.__name__}.__init__") from None
    window = getattr(instance, "context_window", DEFAULT_CONTEXT_WINDOW)
    if type(window) is not int or window <= 0:
        raise LoadFailure("PluginClassError", f"{cls.__name__}.context_window must be a positive int, got {window!r}")
    return instance
