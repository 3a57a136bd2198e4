"""The agent's lean JSON (``app.agent.leanjson``): ``json``'s output and verdicts, without importing ``json`` or ``re``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.agent import leanjson

pytestmark = pytest.mark.timeout(60)

DOCUMENTS = [
    {"type": "run", "argv": ["prompt", "é", "\u2028", "\x00", '"\\'], "env": {"A": "b"}, "umask": 18, "flag": True, "none": None},
    {"numbers": [0, -1, 10**20, 2.5, 1e300, -0.0, 1e-320], "nested": [[[{"k": []}]]], "empty": {}},
    [],
    "text",
    12,
]
BAD = ["", "  ", "[1,]", "{} x", "[", '"\\ud800', "nul", "{'a': 1}", "1 2", "9" * 5000, '{"a" 1}', "\x00"]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_dumps_writes_what_json_writes_and_loads_reads_it_back(document: object) -> None:
    expected = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    assert leanjson.dumps(document) == expected
    assert leanjson.loads(expected) == json.loads(expected)
    assert leanjson.loads(f" \n{expected}\t ") == json.loads(expected)


@pytest.mark.parametrize("text", BAD)
def test_what_json_refuses_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        leanjson.loads(text)


def test_nesting_past_the_parsers_depth_is_a_recursion_error_not_a_crash() -> None:
    with pytest.raises(RecursionError):
        leanjson.loads("[" * 200_000 + "]" * 200_000)


@pytest.mark.parametrize("document", [{"a": object()}, {(1, 2): 1}, [{1, 2}]])
def test_what_json_cannot_hold_is_a_type_error(document: object) -> None:
    with pytest.raises(TypeError):
        leanjson.dumps(document)


def test_a_warm_commands_client_imports_neither_json_nor_re() -> None:
    """What app.entry and the handoff import before the forker answers: each of these costs ms at every command."""
    probe = "import sys, app.entry, app.agent.handoff; print(sorted(m for m in ('json', 're', 'enum', 'typing') if m in sys.modules))"
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True)
    assert found.stdout.strip() == "[]"
