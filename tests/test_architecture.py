"""The shape of the code: who may import whom, read from the source with ``ast``.

Direction: app -> runner -> the shared core (runner.constants, runner.protocol,
runner.budget, runner.netwire). The app uses the runner through its package alone
(``import runner``, ``from runner import NAME``). The child side (runner.child.*,
runner.sandbox.*) runs inside the sandbox and imports no host code. No module is part of
an import cycle. Inside the app: cli -> commands -> features -> manager -> stores.

Every import counts, at module level or inside a function; only those under
``if TYPE_CHECKING:`` do not (they never run). Each check names the offending lines.
"""

from __future__ import annotations

import ast
import functools
import importlib
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.timeout(60)

PACKAGES = ("app", "runner")
CORE = ("runner.constants", "runner.protocol", "runner.budget", "runner.netwire")
#: What the child side may import besides the standard library and itself.
CHILD_MAY_IMPORT = ("llm_utils", *CORE)
CHILD_SIDE = ("runner.child", "runner.sandbox")
#: The modules (of the child side and the core) that may import msgpack.
MSGPACK_USERS = ("runner.child.server", "runner.protocol")


@dataclass(frozen=True)
class Import:
    """One import statement's target, as a module name, and where it stands."""

    source: str  # the importing module
    target: str  # the module imported (for ``from X import Y``: X.Y when that is a module, else X)
    line: int
    text: str  # the statement as written

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.text}"


def _module_files() -> dict[str, Path]:
    """Every module of ours: dotted name -> file."""
    found = {"llm_utils": ROOT / "llm_utils.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _module_files()
PACKAGE_INITS = sorted(name for name, path in MODULES.items() if path.name == "__init__.py")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, in functions too, but not under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _statements(ast.Module(body=[child], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _statements(node)


def imports_of(name: str, source: str | None = None) -> list[Import]:
    """The imports of module ``name`` (its text is read from its file unless ``source`` is given)."""
    return list(_imports_of(name, source))


@functools.cache
def _imports_of(name: str, source: str | None) -> tuple[Import, ...]:
    path = MODULES[name]
    text = source if source is not None else path.read_text(encoding="utf-8")
    lines = text.splitlines()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in _statements(ast.parse(text, filename=str(path))):
        written = lines[node.lineno - 1].strip()  # its first line
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, node.lineno, written) for alias in node.names]
            continue
        base = node.module or ""
        if node.level:  # relative: from the package, up level - 1
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        if base == "__future__":
            continue
        for alias in node.names:
            full = f"{base}.{alias.name}"
            found.append(Import(name, full if full in MODULES else base, node.lineno, written))
    return tuple(found)


def _graph(overrides: dict[str, str] | None = None) -> dict[str, list[Import]]:
    """Each module's imports of our own modules (``overrides``: module -> replacement source)."""
    overrides = overrides or {}
    return {name: [i for i in imports_of(name, overrides.get(name)) if i.target in MODULES] for name in MODULES}


def _all_imports(overrides: dict[str, str] | None = None) -> list[Import]:
    overrides = overrides or {}
    return [i for name in MODULES for i in imports_of(name, overrides.get(name))]


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _top(name: str) -> str:
    return name.partition(".")[0]


# -- the checks, each a function of the imports so that a test can prove it fails -------------


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """The import cycles: each strongly connected set of modules larger than one (or importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the graph is small enough to recurse
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph[node]:
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or any(e.target == node for e in graph[node]):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _cycle_lines(graph: dict[str, list[Import]], component: list[str]) -> list[str]:
    return list(dict.fromkeys(str(e) for name in component for e in graph[name] if e.target in component))


def _describe(graph: dict[str, list[Import]], found: list[list[str]]) -> str:
    return "\n".join(f"{' <-> '.join(c)}:\n  " + "\n  ".join(_cycle_lines(graph, c)) for c in found)


def _within_the_app(component: list[str]) -> bool:
    return all(_top(name) == "app" for name in component)


def against_the_direction(imports: Iterable[Import]) -> list[Import]:
    """Imports up the chain app -> runner -> core: runner (or llm_utils) importing the app,
    the core or llm_utils importing the rest of the runner."""
    bad = []
    for i in imports:
        if _under(i.source, "runner", "llm_utils") and _top(i.target) == "app":
            bad.append(i)
        elif (i.source in CORE or i.source == "llm_utils") and _top(i.target) == "runner" and i.target not in CORE:
            bad.append(i)
    return bad


def app_reaching_into_the_runner(imports: Iterable[Import]) -> list[Import]:
    """App imports of a runner submodule: only ``import runner`` and ``from runner import NAME`` are the API."""
    return [i for i in imports if _top(i.source) == "app" and _under(i.target, "runner") and i.target != "runner"]


def child_side_reaching_the_host(imports: Iterable[Import]) -> list[Import]:
    """Child-side and core imports other than the standard library, msgpack (server, protocol),
    llm_utils, the core and the child side itself; and any import at all in runner.constants."""
    bad = []
    for i in imports:
        if i.source == "runner.constants":
            bad.append(i)
            continue
        if not (_under(i.source, *CHILD_SIDE) or i.source in CORE):
            continue
        if _top(i.target) in sys.stdlib_module_names:
            continue
        if _top(i.target) == "msgpack" and i.source in MSGPACK_USERS:
            continue
        if i.target in CHILD_MAY_IMPORT or _under(i.target, *CHILD_SIDE):
            continue
        bad.append(i)
    return bad


def package_init_problems(name: str, source: str | None = None) -> list[str]:
    """A package ``__init__`` without a docstring, or whose ``__all__`` is not sorted."""
    path = MODULES[name]
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    problems = [] if ast.get_docstring(tree) else [f"{name}: the package's __init__ has no docstring"]
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            names = ast.literal_eval(node.value)
            if list(names) != sorted(names):
                problems.append(f"{name}:{node.lineno}: __all__ is not sorted: {sorted(names)}")
    return problems


#: The app's layers, top first: a module may import its own layer and those below, never above.
APP_LAYERS: tuple[tuple[str, ...], ...] = (
    ("app.__main__", "app.entry", "app.cli", "app.agent.forker", "app.agent.worker"),  # the forker's workers run the CLI
    ("app.commands", "app.context"),  # a command's per-invocation context (settings, output, the manager) is theirs
    (
        "app.chat",
        "app.chatcore",
        "app.repl",
        "app.slash",
        "app.health",
        "app.conformance",
        "app.web",
        "app.agent.server",
        "app.agent.slots",
    ),  # the agent's own process: it serves health probes too
    ("app.manager",),
)
#: Below the manager: the stores and the small modules everything may use (settings, files,
#: output, interrupts, hints...): every app module not named above, the agent's paths, wire and errors included.


def app_layer(name: str) -> int:
    for depth, layer in enumerate(APP_LAYERS):
        if _under(name, *layer):
            return depth
    return len(APP_LAYERS)


def against_the_app_layers(imports: Iterable[Import]) -> list[Import]:
    """App imports of a module in a higher layer (``app`` itself, the package, counts as the manager)."""
    bad = []
    for i in imports:
        if _top(i.source) != "app" or _top(i.target) != "app" or i.source == "app":
            continue
        target = "app.manager" if i.target == "app" else i.target  # app's lazy PluginManager
        if app_layer(target) < app_layer(i.source):
            bad.append(i)
    return bad


# -- the checks can fail: each is shown a planted violation --------------------------------------


def _cycles_outside_the_app(sources: dict[str, str]) -> list[list[str]]:
    return [c for c in cycles(_graph(sources)) if not _within_the_app(c)]


def _init_problems(sources: dict[str, str]) -> list[str]:
    return [problem for name, text in sources.items() for problem in package_init_problems(name, text)]


def _imports_through(check: Callable[[Iterable[Import]], list[Import]]) -> Callable[[dict[str, str]], list[Import]]:
    return lambda sources: check(_all_imports(sources))


#: (what is planted, the check, {module: the source it is given instead of its own})
PLANTED: list[tuple[str, Callable[[dict[str, str]], list[Any]], dict[str, str]]] = [
    ("a cycle", _cycles_outside_the_app, {"runner.constants": "import runner.client\n"}),
    ("runner importing the app", _imports_through(against_the_direction), {"runner.turn": "from app import manager\n"}),
    ("the core importing the runner", _imports_through(against_the_direction), {"runner.budget": "import runner.client\n"}),
    (
        "the app importing runner.client",
        _imports_through(app_reaching_into_the_runner),
        {"app.render": "from runner.client import Plugin\n"},
    ),
    (
        "the app importing a submodule by name",
        _imports_through(app_reaching_into_the_runner),
        {"app.render": "from runner import client\n"},
    ),
    (
        "the child importing host code",
        _imports_through(child_side_reaching_the_host),
        {"runner.child.loader": "def f():\n    import runner.client\n"},
    ),
    ("the sandbox importing msgpack", _imports_through(child_side_reaching_the_host), {"runner.sandbox.seccomp": "import msgpack\n"}),
    ("runner.constants importing the stdlib", _imports_through(child_side_reaching_the_host), {"runner.constants": "import os\n"}),
    ("an __init__ without a docstring", _init_problems, {"runner.child": "x = 1\n"}),
    ("an unsorted __all__", _init_problems, {"app": '"""Doc."""\n__all__ = ["b", "a"]\n'}),
    (
        "the manager importing a command",
        _imports_through(against_the_app_layers),
        {"app.manager": "def f():\n    import app.commands.chat\n"},
    ),
]


@pytest.mark.parametrize(("violation", "check", "sources"), PLANTED, ids=[name for name, _, _ in PLANTED])
def test_each_check_finds_a_planted_violation(
    violation: str, check: Callable[[dict[str, str]], list[Any]], sources: dict[str, str]
) -> None:
    already = {str(found) for found in check({})}  # what the tree itself gives (the app layering, today)
    assert {str(found) for found in check(sources)} - already, f"the check missed {violation}"


def test_imports_under_type_checking_do_not_count_and_those_in_functions_do() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import app.cli\ndef f():\n    import app.chat\n"
    assert [i.target for i in imports_of("runner.turn", source) if _top(i.target) == "app"] == ["app.chat"]


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(MODULES) - {"app.__main__"}))  # that one runs the CLI when imported
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_the_modules_are_all_found() -> None:
    assert {"app.cli", "app.commands.plugins", "runner.client", "runner.child.entry", "runner.sandbox.seccomp", "llm_utils"} <= set(MODULES)
    assert {"app", "app.agent", "app.commands", "app.web", "runner", "runner.child", "runner.sandbox"} == set(PACKAGE_INITS)


def test_no_import_cycle() -> None:
    """Cycles all of whose modules are the app's are the app layering's (test_the_app_imports_down_its_layers)."""
    graph = _graph()
    found = [c for c in cycles(graph) if not _within_the_app(c)]
    assert not found, "import cycles:\n" + _describe(graph, found)


def test_imports_follow_app_runner_core() -> None:
    bad = against_the_direction(_all_imports())
    assert not bad, "imports against app -> runner -> core:\n" + "\n".join(map(str, bad))


def test_the_app_uses_the_runner_through_its_package_only() -> None:
    bad = app_reaching_into_the_runner(_all_imports())
    assert not bad, "app imports of runner submodules (use `import runner` or `from runner import NAME`):\n" + "\n".join(map(str, bad))


def test_the_child_side_imports_no_host_code() -> None:
    bad = child_side_reaching_the_host(_all_imports())
    assert not bad, "child-side imports of host code (or any import in runner.constants):\n" + "\n".join(map(str, bad))


@pytest.mark.parametrize("name", PACKAGE_INITS)
def test_package_inits_have_a_docstring_and_a_sorted_all(name: str) -> None:
    assert package_init_problems(name) == []


def test_the_app_imports_down_its_layers() -> None:
    bad = against_the_app_layers(_all_imports())
    assert not bad, "app imports up its layers (cli -> commands -> features -> manager -> stores):\n" + "\n".join(map(str, bad))
    graph = _graph()
    found = [c for c in cycles(graph) if _within_the_app(c)]
    assert not found, "import cycles in the app:\n" + _describe(graph, found)
