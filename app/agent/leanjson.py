"""Lean JSON: ``dumps`` and ``loads`` on CPython's C accelerator, without importing the ``json`` package.

``json`` imports ``re`` (its pure-Python scanner and encoder are regular expressions), and
with it ``enum``, ``functools`` and ``collections``: 10-20 ms, which a warm command's client
(``app.agent.handoff``) would pay before it reaches the forker. The C scanner and encoder
that ``json`` itself uses need none of that. Output and accepted input are ``json``'s with
``ensure_ascii=False`` and compact separators; where the accelerator is missing (another
Python implementation) this is ``json`` itself.
"""

from __future__ import annotations

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing: see app/__init__.py
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]

_WHITESPACE = " \t\n\r"  # JSON's whitespace, the only thing allowed around the value


class _Context:
    """What the C scanner reads off ``json.JSONDecoder``: strict strings, plain dicts, Python numbers."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int  # the interpreter's limit on digits applies: a 5,000-digit number is a ValueError
    parse_constant = float  # NaN, Infinity, -Infinity, as json reads them


def dumps(document: Any) -> str:
    """``json.dumps(document, ensure_ascii=False, separators=(",", ":"))``; TypeError for what JSON cannot hold."""
    if _json is None:
        import json

        return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    encode = _json.make_encoder({}, _refuse, _json.encode_basestring, None, ":", ",", False, False, True)
    return "".join(encode(document, 0))


def loads(text: str) -> Any:
    """``json.loads(text)``: ValueError on anything that is not one JSON value (RecursionError past its depth)."""
    if _json is None:
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _json.make_scanner(_Context())(text, start)  # type: ignore[arg-type]  # reads only these attributes
    except StopIteration as stop:
        raise ValueError(f"no JSON value at character {stop.value}") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"extra data at character {end}")
    return value


def _refuse(value: object) -> object:
    raise TypeError(f"a {type(value).__name__} is not JSON")
