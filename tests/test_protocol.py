"""docs/protocol.md and the code agree, byte for byte; the decoder's two paths agree with each other.

The examples are read from the document itself (its ``msgpack``, ``code-frame`` and
``report-frame`` blocks, laid out as its appendix A says), so the text and this test
cannot drift apart:

- every example message is what ``runner.protocol.Encoder`` writes, and decodes back
  through the hostile (host) and trusting (child) decoders alike;
- the worked example (section 12) is what the reference child's ``Server`` writes when
  the shipped echo plugin is asked those requests;
- the code frame and the sandbox report frame are laid out byte for byte as shown;
- for a table of inputs (valid, every malformed shape, oversized, deep, ext, partial,
  several messages in one read, one message split at every byte boundary) the fast path
  (``Decoder.single``) and the full path (``Decoder.feed``) agree, for both kinds of
  decoder; ``scan`` finds exactly where each valid message ends and nothing in a prefix;
- what the document says about the five places an outside reader found unclear (a
  ``chat`` without ``messages``, malformed option values, leading ``--``, how the host
  matches request ids, a bad result) is what the code does.

The five deviations of the code from the document these tests first found (its section
13) were fixed; the tests that found them now pin the fixed behaviour.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest

import runner
from llm_utils import LLMClient
from runner.child import entry as child
from runner.child import loader
from runner.child.server import Server, _hello
from runner.client import Plugin
from runner.errors import PluginStartError
from runner.handshake import MAX_REPORT, parse_report
from runner.methods import generation
from runner.protocol import (
    DEFAULT_MAX_MESSAGE,
    ERROR_KINDS,
    MAX_DEPTH,
    MAX_MSGID,
    MAX_OBJECTS,
    MAX_SOURCE,
    NOTIFICATION,
    REQUEST,
    RESPONSE,
    Decoder,
    Encoder,
    ProtocolViolation,
    check_response,
    error_map,
    scan,
    source_frame,
)  # fmt: skip

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "protocol.md"
ECHO = ROOT / "llm_plugins" / "echo_plugin.py"


# -- the document's blocks ---------------------------------------------------------------


def fenced_blocks(info: str) -> list[str]:
    """The bodies of the fenced blocks whose info string is ``info``, in document order."""
    pattern = re.compile(r"^```" + re.escape(info) + r"\n(.*?)^```$", re.M | re.S)
    return [match.group(1) for match in pattern.finditer(DOC.read_text(encoding="utf-8"))]


@dataclass(frozen=True)
class Example:
    direction: str  # ">" host -> child, "<" child -> host
    name: str
    length: int  # as the heading states it
    value: Any
    data: bytes

    @property
    def id(self) -> str:
        return f"{self.direction} {self.name}"


_HEX_LINE = re.compile(r"^    [0-9a-f]{2}( [0-9a-f]{2})*$")
_HEAD = re.compile(r"^([<>]) (.+?)  \((\d+) bytes\)$")


def parse_examples(block: str) -> list[Example]:
    """Entries of a ``msgpack`` block: a ``>``/``<`` heading, JSON lines (2 spaces), hex lines (4)."""
    entries: list[Example] = []
    head: re.Match[str] | None = None
    json_lines: list[str] = []
    hex_lines: list[str] = []

    def close() -> None:
        if head is not None:
            value = json.loads(" ".join(json_lines))
            data = bytes.fromhex(" ".join(hex_lines))
            entries.append(Example(head.group(1), head.group(2), int(head.group(3)), value, data))

    for line in block.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            close()
            head, json_lines, hex_lines = _HEAD.match(line), [], []
            assert head is not None, f"not an example heading: {line!r}"
        elif _HEX_LINE.match(line):
            hex_lines.append(line.strip())
        else:
            assert line.startswith("  ") and not hex_lines, f"JSON after the hex, or misindented: {line!r}"
            json_lines.append(line.strip())
    close()
    return entries


CATALOGUE = [example for block in fenced_blocks("msgpack") for example in parse_examples(block)]
CONVERSATION = [example for block in fenced_blocks("msgpack conversation") for example in parse_examples(block)]
EXAMPLES = CATALOGUE + CONVERSATION


def _kind_of(value: list[Any]) -> str:
    if value[0] == REQUEST:
        return f"request {value[2]}"
    if value[0] == NOTIFICATION:
        return f"notification {value[1]}"
    return f"error {value[2]['kind']}" if value[2] is not None else "response"


def test_the_document_shows_an_example_of_every_message() -> None:
    shown = {_kind_of(example.value) for example in EXAMPLES}
    wanted = {f"request {method}" for method in ("generate", "chat", "stream", "count_tokens", "ping", "cancel", "shutdown")}
    wanted |= {"response", "notification hello", "notification chunk"}
    wanted |= {f"error {kind}" for kind in ("plugin", "contract", "cancelled", "request", "busy")}
    assert wanted <= shown, f"docs/protocol.md lacks examples of {sorted(wanted - shown)}"
    assert len(CONVERSATION) >= 6, "the worked example (section 12) is missing or unreadable"


# -- (i) every example, byte for byte ----------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_is_what_the_encoder_writes(example: Example) -> None:
    assert len(example.data) == example.length, "the heading states another length than the hex has"
    encoder = Encoder()
    assert encoder.pack(example.value) == example.data
    kind = example.value[0]
    if kind == REQUEST:
        typed = encoder.request(*example.value[1:])
    elif kind == RESPONSE:
        typed = encoder.response(*example.value[1:])
    else:
        typed = encoder.notification(*example.value[1:])
    assert typed == example.data
    assert (example.direction == ">") == (kind == REQUEST), "requests go host -> child, everything else back"


@pytest.mark.parametrize("hostile", [True, False], ids=["hostile", "trusting"])
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_decodes_back(example: Example, hostile: bool) -> None:
    assert Decoder(DEFAULT_MAX_MESSAGE, hostile).single(example.data) == example.value
    assert list(Decoder(DEFAULT_MAX_MESSAGE, hostile).feed(example.data)) == [example.value]
    assert scan(example.data, 0, DEFAULT_MAX_MESSAGE) == len(example.data)


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.value[0] == REQUEST and e.value[2] in ("generate", "chat", "stream")],
                         ids=lambda e: e.id)  # fmt: skip
def test_generation_examples_have_the_params_in_the_order_the_host_sends_them(example: Example) -> None:
    params = example.value[3]
    prompt = {key: params[key] for key in ("user_message", "messages") if key in params}
    sent = generation(params["system"], params["max_tokens"], params["temperature"], **prompt)
    assert list(sent.items()) == list(params.items())
    assert type(params["max_tokens"]) is int and type(params["temperature"]) is float


@pytest.mark.parametrize("example", [e for e in EXAMPLES if _kind_of(e.value).startswith("error")], ids=lambda e: e.id)
def test_error_examples_are_error_maps_as_the_child_builds_them(example: Example) -> None:
    error = example.value[2]
    assert error["kind"] in ERROR_KINDS
    assert list(error.items()) == list(error_map(error["kind"], error["type"], error["message"], error["traceback"]).items())
    assert example.value[3] is None


def _load(path: Path, name: str = "echo") -> Any:
    module = loader.load_module(path.read_bytes(), str(path), "sandchat_plugin_" + name)
    return loader.instantiate(loader.plugin_class(module))


@pytest.fixture(scope="module")
def echo() -> Any:
    return _load(ECHO)


def test_hello_examples_have_the_fields_of_the_reference_child(echo: Any) -> None:
    hellos = [e.value[2] for e in EXAMPLES if _kind_of(e.value) == "notification hello"]
    loaded = next(h for h in hellos if h["error"] is None)
    mine = _hello({"name": loaded["plugin"]}, {}, echo)
    assert list(loaded) == list(mine)  # the fields, in the order the child writes them
    assert {**loaded, "pid": 0, "python": ""} == {**mine, "pid": 0, "python": ""}
    failed = next(h for h in hellos if h["error"] is not None)
    with pytest.raises(loader.LoadFailure) as exc:
        loader.plugin_class(loader.load_module(b"x = 1\n", "/p/broken.py", "sandchat_plugin_broken"))
    assert (exc.value.type, exc.value.message) == (failed["error"]["type"], failed["error"]["message"])
    assert list(failed) == list(_hello({"name": "broken"}, {}, None))


def test_a_hello_sent_before_the_report_reads_as_an_oversized_report() -> None:
    hello = next(e for e in EXAMPLES if _kind_of(e.value) == "notification hello")
    assert hello.data[:4].hex(" ") == "93 02 a5 68"
    assert int.from_bytes(hello.data[:4], "big") == 2_466_424_168 > MAX_REPORT


def _read_exactly(fd: int, size: int, seconds: float = 10.0) -> bytes:
    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while len(data) < size:
        assert poller.poll(seconds * 1000), f"the child wrote {len(data)} of {size} bytes, then nothing"
        chunk = os.read(fd, size - len(data))
        assert chunk, "the child closed its output"
        data += chunk
    return data


def test_the_worked_example_is_what_the_reference_child_writes(echo: Any) -> None:
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    server = Server(to_child_r, from_child_w, echo, DEFAULT_MAX_MESSAGE)
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(server.run()), daemon=True)
    thread.start()
    try:
        steps: list[tuple[Example, list[Example]]] = []
        for example in CONVERSATION:
            if example.direction == ">":
                steps.append((example, []))
            else:
                steps[-1][1].append(example)
        for request, replies in steps:
            os.write(to_child_w, request.data)
            expected = b"".join(reply.data for reply in replies)
            assert _read_exactly(from_child_r, len(expected)) == expected, f"after {request.name}"
        thread.join(10)
        assert not thread.is_alive() and status == [0], "the child did not stop after shutdown"
        os.close(from_child_w)
        from_child_w = -1
        assert os.read(from_child_r, 1) == b"", "the child wrote more than the example shows"
    finally:
        for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
            if fd >= 0:
                os.close(fd)


# -- (ii) the two frames, byte for byte --------------------------------------------------


def _frame_fields(block: str) -> tuple[dict[str, str], list[str]]:
    """``key: value`` lines (a value continued on lines indented by two spaces), then the rest."""
    fields: dict[str, str] = {}
    lines = block.splitlines()
    key = None
    while lines:
        line = lines[0]
        match = re.match(r"^(\w+): (.*)$", line)
        if match and match.group(1) in ("code", "report", "length"):
            key = match.group(1)
            fields[key] = match.group(2)
        elif key is not None and line.startswith("  "):
            fields[key] += " " + line.strip()
        elif key == "code" and re.fullmatch(r"[0-9a-f]{2}( [0-9a-f]{2})*", line):
            fields["hex"] = line
        else:
            break
        lines.pop(0)
    return fields, lines


def test_the_documented_code_frame_is_what_the_host_sends() -> None:
    blocks = fenced_blocks("code-frame")
    assert blocks, "docs/protocol.md shows no code frame"
    for block in blocks:
        fields, rest = _frame_fields(block)
        assert not rest
        code = json.loads(fields["code"]).encode("utf-8")
        assert source_frame(code) == bytes.fromhex(fields["hex"])


def test_the_documented_report_frame_is_what_the_child_sends() -> None:
    blocks = fenced_blocks("report-frame")
    assert blocks, "docs/protocol.md shows no report frame"
    for block in blocks:
        fields, body_lines = _frame_fields(block)
        report = json.loads(fields["report"])
        body = "\n".join(body_lines).encode("utf-8")
        length = bytes.fromhex(fields["length"])
        assert length == len(body).to_bytes(4, "big")
        assert child.report_frame(report) == length + body
        assert parse_report("doc", body, report["profile"]) == report


CODE_FRAMES = [
    ("empty", b"", "00 00 00 00 00 00 00 00"),
    ("one byte", b"\n", "00 00 00 00 00 00 00 01 0a"),
    ("256 bytes", b"#" * 256, "00 00 00 00 00 00 01 00" + " 23" * 256),
    ("not UTF-8: bytes as they are", b"\xff\x00", "00 00 00 00 00 00 00 02 ff 00"),
]


@pytest.mark.parametrize("code, frame", [(c, f) for _, c, f in CODE_FRAMES], ids=[n for n, _, _ in CODE_FRAMES])
def test_code_frame_layout(code: bytes, frame: str) -> None:
    data = bytes.fromhex(frame)
    assert source_frame(code) == data
    read, write = os.pipe()
    try:
        os.write(write, data + b"trailing bytes are the first request's")
        assert child.read_source(read) == code
        assert os.read(read, 8) == b"trailing", "read_source read past its frame"
    finally:
        os.close(read)
        os.close(write)


def test_code_frame_limit() -> None:
    assert len(source_frame(b"x" * MAX_SOURCE)) == 8 + MAX_SOURCE
    with pytest.raises(ValueError):
        source_frame(b"x" * (MAX_SOURCE + 1))


@pytest.mark.parametrize("sent, message", [
    ((MAX_SOURCE + 1).to_bytes(8, "big"), f"the host sent {MAX_SOURCE + 1} bytes of code (the limit is {MAX_SOURCE})"),
    (b"\x00\x00\x00", "the host closed the channel before sending the plugin's code"),
    (b"\x00" * 7 + b"\x05abc", "the host closed the channel before sending the plugin's code"),
], ids=["too long", "EOF in the length", "EOF in the code"])  # fmt: skip
def test_child_refuses_a_bad_code_frame(sent: bytes, message: str) -> None:
    read, write = os.pipe()
    try:
        os.write(write, sent)
        os.close(write)
        write = -1
        with pytest.raises(SystemExit) as exc:
            child.read_source(read)
        assert str(exc.value) == "sandchat child: " + message  # printed to stderr, status 1
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


REPORT_FRAMES = [
    (
        "profile none",
        {"profile": "none", "layers": ["rlimits"], "landlock_abi": 0, "limits": {"core": 0}, "missing": []},
        "00 00 00 50 " + b"sandchat-sandbox-report 1\nprofile none\nlandlock_abi 0\nlayer rlimits\nlimit core 0".hex(" "),
    ),
    (
        "whitespace in a missing reason is collapsed",
        {"profile": "network", "layers": [], "landlock_abi": 0, "limits": {}, "missing": ["a  b\nc\td"]},
        "00 00 00 48 " + b"sandchat-sandbox-report 1\nprofile network\nlandlock_abi 0\nmissing a b c d".hex(" "),
    ),
]


@pytest.mark.parametrize("report, frame", [(r, f) for _, r, f in REPORT_FRAMES], ids=[n for n, _, _ in REPORT_FRAMES])
def test_report_frame_layout(report: dict[str, Any], frame: str) -> None:
    data = bytes.fromhex(frame)
    assert child.report_frame(report) == data
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    parsed = parse_report("t", data[4:], report["profile"])
    assert parsed == {**report, "missing": [" ".join(m.split()) for m in report["missing"]]}


GOOD_BODY = "sandchat-sandbox-report 1\nprofile none\nlandlock_abi 0\nlayer rlimits\nlimit core 0"
BAD_REPORTS = [
    ("another magic", GOOD_BODY.replace("report 1", "report 2"), "did not start with a sandbox report"),
    ("a trailing newline", GOOD_BODY + "\n", "sent a malformed sandbox report line ''"),
    ("an unknown layer", GOOD_BODY + "\nlayer magic", "sent a malformed sandbox report line 'layer magic'"),
    ("an ABI of 1000", GOOD_BODY.replace("abi 0", "abi 1000"), "sent a malformed sandbox report line 'landlock_abi 1000'"),
    ("a limit of three words", GOOD_BODY + "\nlimit as 1 2", "sent a malformed sandbox report line 'limit as 1 2'"),
    ("a negative limit", GOOD_BODY + "\nlimit as -1", "sent a malformed sandbox report line 'limit as -1'"),
    ("an unknown key", GOOD_BODY + "\nseccomp on", "sent a malformed sandbox report line 'seccomp on'"),
    ("another profile", GOOD_BODY.replace("profile none", "profile untrusted"), "reported sandbox profile 'untrusted', expected 'none'"),
]


@pytest.mark.parametrize("body, message", [(b, m) for _, b, m in BAD_REPORTS], ids=[n for n, _, _ in BAD_REPORTS])
def test_host_refuses_a_bad_report(body: str, message: str) -> None:
    with pytest.raises(PluginStartError) as exc:
        parse_report("t", body.encode(), "none")
    assert exc.value.message == message


def test_a_missing_reason_is_cut_at_300_characters_and_the_last_profile_counts() -> None:
    assert parse_report("t", (GOOD_BODY + "\nmissing " + "x" * 400).encode(), "none")["missing"] == ["x" * 300]
    assert MAX_REPORT == 64 * 1024
    assert parse_report("t", (GOOD_BODY + "\nprofile network\nprofile none").encode(), "none")["profile"] == "none"


def test_a_non_ascii_digit_in_the_report_is_a_start_error() -> None:
    with pytest.raises(PluginStartError):
        parse_report("t", GOOD_BODY.replace("abi 0", "abi \u00b2").encode(), "none")


# -- (iii) the fast path and the full path agree -----------------------------------------

PENDING = "pending"  # feed() has yielded nothing yet: the message is not all there
VIOLATION = "violation"
SMALL = 1024  # the smallest max_message a PluginConfig allows
pack = Encoder().pack
_HEAD4 = b"\x94\x00\x01\xa1x"  # [0, 1, "x", ...: a request whose params follow


def _wrap(value: Any, times: int) -> Any:
    for _ in range(times):
        value = [value]
    return value


def _nested(depth: int, inner: bytes = b"\x01") -> bytes:
    """A request of ``depth`` nested non-empty arrays (its own array the first) around ``inner``."""
    return _HEAD4 + b"\x91" * (depth - 1) + inner


def _nested_value(depth: int, inner: Any = 1) -> list[Any]:
    return [0, 1, "x", _wrap(inner, depth - 1)]


def _objects(count: int) -> bytes:
    """A request of exactly ``count`` objects: its array, 0, 1, "x" and a params array of count-5 zeros."""
    return pack([0, 1, "x", [0] * (count - 5)])


_TIMESTAMP = b"\xd6\xff\x00\x00\x00\x01"  # ext type -1 (timestamp), 4 bytes: 1970-01-01T00:00:01Z
_EXT = b"\xd5\x01ab"  # ext type 1, 2 bytes
_LONG = "y" * 5000
_ERROR = error_map("plugin", "ValueError", "bad", "t" * 8000)
_AT_CAP = pack([1, 1, None, "z" * (SMALL - 7)])  # 4 bytes, a str16 header of 3, then the text
_OVER_CAP = pack([0, 1, "x", ["a" * 500, "b" * 500, "c" * 500]])
assert len(_AT_CAP) == SMALL and len(_OVER_CAP) > SMALL + 256


@dataclass(frozen=True, repr=False)
class Case:
    name: str
    data: bytes
    hostile: Any  # the expected outcome: the list of messages, PENDING or VIOLATION
    trusting: Any = None  # the same for a child's decoder; None: as for the host's
    max_message: int = DEFAULT_MAX_MESSAGE
    deviation: str = ""  # a known deviation of the hostile fast path (docs/protocol.md section 13)
    exact: bool = True  # the data is exactly the expected messages (nothing after them)

    def __repr__(self) -> str:  # the expected values may nest deeper than repr() can go
        return f"Case({self.name!r})"


def _valid(name: str, value: list[Any], **kw: Any) -> Case:
    return Case(name, pack(value), [value], **kw)


_CHAT = [0, 1, "chat", {"messages": [{"role": "user", "content": "hi"}] * 1000}]

CASES: list[Case] = [
    *(Case("doc: " + e.id, e.data, [e.value]) for e in CATALOGUE),
    # valid shapes the examples do not show
    _valid("msgid 0", [1, 0, None, 1]),
    _valid("msgid 2^32-1", [1, MAX_MSGID, None, 1]),
    Case("msgid in a uint64", b"\x94\x01\xcf" + (5).to_bytes(8, "big") + b"\xc0\x02", [[1, 5, None, 2]]),
    Case("msgid in an int8", b"\x94\x01\xd0\x05\xc0\x02", [[1, 5, None, 2]]),
    _valid("an error map of type and message only", [1, 1, {"type": "T", "message": ""}, None]),
    _valid("an error map of an unknown kind, extra keys", [1, 1, {"kind": "new", "type": "T", "message": "m", "x": [1]}, None]),
    _valid("an error and a result", [1, 1, {"type": "T", "message": "m"}, 5]),
    _valid("a notification of any method", [2, "progress", {"done": 0.5}]),
    _valid("a bin map key", [0, 1, "ping", {b"k": 1}]),
    _valid("a response over 4096 bytes (flat: no scan)", [1, 300, None, _LONG]),
    _valid("a chunk over 4096 bytes (flat: no scan)", [2, "chunk", [70000, _LONG]]),
    _valid("a response over 4096 bytes with a map", [1, 7, None, {"a": _LONG, "b": [1, 2, {"c": None}]}]),
    _valid("an error response over 4096 bytes", [1, 7, _ERROR, None]),
    Case("a chat of 1000 messages", pack(_CHAT), VIOLATION, [_CHAT]),
    Case("nested 16 deep", _nested(16), [_nested_value(16)]),
    Case("nested 16 deep, an empty array at 17", _nested(16, b"\x90"), [_nested_value(16, [])]),
    Case("4096 objects", _objects(MAX_OBJECTS), [[0, 1, "x", [0] * (MAX_OBJECTS - 5)]]),
    Case("exactly max_message bytes", _AT_CAP, [[1, 1, None, "z" * (SMALL - 7)]], max_message=SMALL),
    Case("over max_message, complete in one read", _OVER_CAP, [msgpack.unpackb(_OVER_CAP)], max_message=SMALL),
    # every malformed shape
    Case("a scalar", b"\x05", VIOLATION),
    Case("nil", b"\xc0", VIOLATION),
    Case("a string", pack("hello"), VIOLATION),
    Case("a map", pack({"type": 1}), VIOLATION),
    Case("an empty array", b"\x90", VIOLATION),
    Case("type 3", pack([3, 1, "x", {}]), VIOLATION),
    Case("a type that is a string", pack(["1", 1, None, 1]), VIOLATION),
    Case("a request of 3", pack([0, 1, "x"]), VIOLATION),
    Case("a request of 5", pack([0, 1, "x", {}, 1]), VIOLATION),
    Case("a request with a bool msgid", pack([0, True, "x", {}]), VIOLATION),
    Case("a request with a negative msgid", pack([0, -1, "x", {}]), VIOLATION),
    Case("a request with msgid 2^32", pack([0, 2**32, "x", {}]), VIOLATION),
    Case("a request with a float msgid", pack([0, 1.0, "x", {}]), VIOLATION),
    Case("a request with a string msgid", pack([0, "1", "x", {}]), VIOLATION),
    Case("a request with a nil method", pack([0, 1, None, {}]), VIOLATION),
    Case("a request with a bin method", pack([0, 1, b"x", {}]), VIOLATION),
    Case("a response of 3", pack([1, 1, None]), VIOLATION),
    Case("a response of 5", pack([1, 1, None, 1, 2]), VIOLATION),
    Case("a response with a bool msgid", pack([1, False, None, 1]), VIOLATION),
    Case("a response with msgid 2^64-1", pack([1, 2**64 - 1, None, 1]), VIOLATION),
    Case("an error that is a string", pack([1, 1, "boom", None]), VIOLATION),
    Case("an error that is a list", pack([1, 1, ["T", "m"], None]), VIOLATION),
    Case("an error that is false", pack([1, 1, False, None]), VIOLATION),
    Case("an error without type", pack([1, 1, {"message": "m"}, None]), VIOLATION),
    Case("an error without message", pack([1, 1, {"type": "T"}, None]), VIOLATION),
    Case("an error whose type is an int", pack([1, 1, {"type": 1, "message": "m"}, None]), VIOLATION),
    Case("an error whose kind is an int", pack([1, 1, {"kind": 5, "type": "T", "message": "m"}, None]), VIOLATION),
    Case("an error whose traceback is nil", pack([1, 1, {"type": "T", "message": "m", "traceback": None}, None]), VIOLATION),
    Case("a notification of 2", pack([2, "chunk"]), VIOLATION),
    Case("a notification of 4", pack([2, "chunk", [1, "x"], 1]), VIOLATION),
    Case("a notification with a nil method", pack([2, None, {}]), VIOLATION),
    Case("a malformed message over 4096 bytes", pack([0, 1, None, _LONG]), VIOLATION),
    # undecodable bytes
    Case("the byte c1", b"\xc1", VIOLATION),
    Case("the byte c1 inside", _HEAD4 + b"\xc1", VIOLATION),
    Case("invalid UTF-8", b"\x94\x00\x01\xa2\xff\xfe\x80", VIOLATION),
    Case("an int map key", pack([0, 1, "x", {1: 2}]), VIOLATION),
    # oversized
    Case("a str over max_message", pack([1, 1, None, "s" * (SMALL + 1)]), VIOLATION, max_message=SMALL),
    Case("a bin over max_message", pack([1, 1, None, b"s" * (SMALL + 1)]), VIOLATION, max_message=SMALL),
    Case("a str32 header claiming 2 GiB", b"\x94\x01\x01\xc0\xdb\x80\x00\x00\x00", VIOLATION, PENDING),
    Case(
        "a str32 header claiming 2 GiB, then 1100 bytes",
        b"\x94\x01\x01\xc0\xdb\x80\x00\x00\x00" + b"s" * 1100,
        VIOLATION,
        max_message=SMALL,
    ),  # fmt: skip
    Case("over max_message of a message not yet whole", _OVER_CAP[: SMALL + 76], VIOLATION, max_message=SMALL),
    # the hostile budgets
    Case("4097 objects", _objects(MAX_OBJECTS + 1), VIOLATION, [[0, 1, "x", [0] * (MAX_OBJECTS - 4)]]),
    Case("65535 empty arrays (the first 8000)", b"\x94\x01\x01\xc0\xdc\xff\xff" + b"\x90" * 8000, VIOLATION, PENDING),
    Case("nested 17 deep, over 4096 bytes", _nested(17, pack(_LONG)), VIOLATION, [_nested_value(17, _LONG)]),
    Case("nested 17 deep", _nested(17), VIOLATION, [_nested_value(17)], deviation="nesting past 16"),
    Case("nested 1024 deep", _nested(1024), VIOLATION, [_nested_value(1024)], deviation="nesting past 16"),
    Case("nested 1025 deep", _nested(1025), VIOLATION),
    Case("an ext value", _HEAD4 + _EXT, VIOLATION, [[0, 1, "x", msgpack.ExtType(1, b"ab")]]),
    Case(
        "an ext value over 4096 bytes",
        pack([1, 1, None, [_LONG, msgpack.ExtType(1, b"ab")]]),
        VIOLATION,
        [[1, 1, None, [_LONG, msgpack.ExtType(1, b"ab")]]],
    ),  # fmt: skip
    Case("a timestamp", _HEAD4 + _TIMESTAMP, VIOLATION, [[0, 1, "x", msgpack.Timestamp(1)]], deviation="the timestamp ext type"),
    Case(
        "a timestamp over 4096 bytes",
        b"\x94\x01\x01\xc0\x92" + pack(_LONG) + _TIMESTAMP,
        VIOLATION,
        [[1, 1, None, [_LONG, msgpack.Timestamp(1)]]],
    ),  # fmt: skip
    # partial, and several in one read
    Case("nothing but a fixarray header", b"\x94", PENDING),
    Case("half a request", CATALOGUE[0].data[: len(CATALOGUE[0].data) // 2], PENDING),
    Case("a long response but its last byte", pack([1, 1, None, _LONG])[:-1], PENDING),
    Case("two messages", CATALOGUE[0].data + CATALOGUE[1].data, [CATALOGUE[0].value, CATALOGUE[1].value]),
    Case("every example in one read", b"".join(e.data for e in CATALOGUE), [e.value for e in CATALOGUE]),
    Case("a message and half of the next", CATALOGUE[2].data + CATALOGUE[3].data[:5], [CATALOGUE[2].value], exact=False),
    Case("a message, then a bad one", CATALOGUE[2].data + b"\xc1", VIOLATION),
    Case("a message, then one nested 17 deep", CATALOGUE[2].data + _nested(17), VIOLATION, [CATALOGUE[2].value, _nested_value(17)]),
]


def _same(a: Any, b: Any) -> bool:
    """``a == b`` with types compared exactly (``True`` is not ``1``), without recursion (1024 levels)."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, list):
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif isinstance(x, dict):
            if list(x) != list(y):
                return False
            stack.extend((x[key], y[key]) for key in x)
        elif x != y:
            return False
    return True


def test_the_cases_have_unique_names() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), "a case would hide another in the parametrize ids"


def _outcome(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except ProtocolViolation:
        return VIOLATION


def _params() -> list[Any]:
    params = []
    for case in CASES:
        for hostile in (True, False):
            params.append(pytest.param(case, hostile, id=f"{case.name}-{'hostile' if hostile else 'trusting'}"))
    return params


@pytest.mark.parametrize("case, hostile", _params())
def test_fast_and_full_path_agree(case: Case, hostile: bool) -> None:
    expected = case.hostile if hostile or case.trusting is None else case.trusting
    fast = _outcome(lambda: Decoder(case.max_message, hostile).single(case.data))
    full = _outcome(lambda: list(Decoder(case.max_message, hostile).feed(case.data)))
    if fast == VIOLATION:
        assert full == VIOLATION, "single() refused what feed() accepts"
    elif fast is not None:
        assert _same(full, [fast]), "single() and feed() decoded different messages"
    assert _same(full if full != [] else PENDING, expected)
    # The fast path is taken for what it is for: one whole message within the cap.
    if isinstance(expected, list) and len(expected) == 1 and case.exact and len(case.data) <= case.max_message:
        assert _same(fast, expected[0]), "single() deferred one whole message within the cap to feed()"
    if expected == PENDING or isinstance(expected, list) and (len(expected) > 1 or not case.exact):
        assert fast is None, "single() decoded a read that is not exactly one message"


def _connection_reads(decoder: Decoder, reads: list[bytes]) -> Any:
    """Decode ``reads`` as runner/connection.py does: single() first, feed() when it says None."""
    messages: list[Any] = []
    for data in reads:
        message = decoder.single(data)
        messages.extend([message] if message is not None else decoder.feed(data))
    return messages


def _feed_reads(decoder: Decoder, reads: list[bytes]) -> Any:
    messages: list[Any] = []
    for data in reads:
        messages.extend(decoder.feed(data))
    return messages


SPLIT = [e for e in CATALOGUE if e.name in ("count_tokens", "chat", "hello", "error: plugin", "chunk", "ping result")]
SPLIT.append(Example("<", "a response > 4096 bytes with a map", 0, [1, 7, None, {"a": "y" * 4200, "b": [1]}],
                     pack([1, 7, None, {"a": "y" * 4200, "b": [1]}])))  # fmt: skip


@pytest.mark.parametrize("hostile", [True, False], ids=["hostile", "trusting"])
@pytest.mark.parametrize("example", SPLIT, ids=[e.name for e in SPLIT])
def test_a_message_split_at_every_byte_boundary(example: Example, hostile: bool) -> None:
    data = example.data
    for cut in range(1, len(data)):
        reads = [data[:cut], data[cut:]]
        for decode in (_connection_reads, _feed_reads):
            decoder = Decoder(DEFAULT_MAX_MESSAGE, hostile)
            assert decode(decoder, reads[:1]) == [], f"a message out of {cut} bytes"
            assert decode(decoder, reads[1:]) == [example.value], f"cut at {cut}, {decode.__name__}"
    for decode in (_connection_reads, _feed_reads):
        assert decode(Decoder(DEFAULT_MAX_MESSAGE, hostile), [data[i : i + 1] for i in range(len(data))]) == [example.value]


@pytest.mark.parametrize("hostile", [True, False], ids=["hostile", "trusting"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 4096, 5000])
def test_every_example_in_one_stream_cut_into_reads(size: int, hostile: bool) -> None:
    stream = b"".join(e.data for e in CATALOGUE) + SPLIT[-1].data
    reads = [stream[i : i + size] for i in range(0, len(stream), size)]
    expected = [e.value for e in CATALOGUE] + [SPLIT[-1].value]
    assert _connection_reads(Decoder(DEFAULT_MAX_MESSAGE, hostile), reads) == expected
    assert _feed_reads(Decoder(DEFAULT_MAX_MESSAGE, hostile), reads) == expected


# -- (iv) scan ---------------------------------------------------------------------------

SCANNED = {f"doc {i}: {e.id}": e.data for i, e in enumerate(EXAMPLES)} | {
    c.name: c.data for c in CASES
    if not c.name.startswith("doc: ") and isinstance(c.hostile, list) and len(c.hostile) == 1 and c.exact
    and c.max_message == DEFAULT_MAX_MESSAGE
}  # fmt: skip


@pytest.mark.parametrize("data", list(SCANNED.values()), ids=list(SCANNED))
def test_scan_finds_the_end_and_nothing_in_a_prefix(data: bytes) -> None:
    assert scan(data, 0, DEFAULT_MAX_MESSAGE) == len(data)
    assert scan(data + b"\x94\x00", 0, DEFAULT_MAX_MESSAGE) == len(data)
    assert scan(b"junk" + data, 4, DEFAULT_MAX_MESSAGE) == 4 + len(data)
    view = memoryview(data)
    for end in range(len(data)):
        assert scan(view[:end], 0, DEFAULT_MAX_MESSAGE) is None, f"prefix of {end} bytes"


@pytest.mark.parametrize("data, message", [
    (b"\xc1", "type byte 0xc1 is not allowed (no ext types)"),
    (_HEAD4 + _EXT, "type byte 0xd5 is not allowed (no ext types)"),
    (_HEAD4 + _TIMESTAMP, "type byte 0xd6 is not allowed (no ext types)"),
    (_HEAD4 + b"\xc7\x01\x05x", "type byte 0xc7 is not allowed (no ext types)"),
    (_objects(MAX_OBJECTS + 1), f"message with more than {MAX_OBJECTS} objects"),
    (_nested(MAX_DEPTH + 1), f"message nested more than {MAX_DEPTH} deep"),
    (b"\x94\x01\x01\xc0\xdb\x01\x00\x00\x01", f"message larger than the {DEFAULT_MAX_MESSAGE}-byte cap"),
    (b"\x94\x01\x01\xc0\xc6\x01\x00\x00\x01", f"message larger than the {DEFAULT_MAX_MESSAGE}-byte cap"),
], ids=["c1", "fixext", "timestamp", "ext8", "objects", "depth", "str32", "bin32"])  # fmt: skip
def test_scan_refuses_before_the_message_is_whole(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolViolation) as exc:
        scan(data, 0, DEFAULT_MAX_MESSAGE)
    assert str(exc.value) == message


# -- the five places an outside reader asked about ---------------------------------------


class _Plain(LLMClient):
    def generate_response(self, system: str, user_message: str, max_tokens: int = 4096, temperature: float = 0.8) -> str:
        return "ok"

    def count_tokens(self, text: str) -> int:
        return 1


def _serve(requests: list[list[Any]], answers: int) -> list[Any]:
    """The first ``answers`` messages the reference child's Server writes for ``requests`` (sent in one read)."""
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    server = Server(to_r, from_w, _Plain(), DEFAULT_MAX_MESSAGE)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    unpacker = msgpack.Unpacker(raw=False)
    got: list[Any] = []
    poller = select.poll()
    poller.register(from_r, select.POLLIN)
    try:
        os.write(to_w, b"".join(pack(r) for r in requests))
        while len(got) < answers:  # generation requests are answered from a worker thread
            assert poller.poll(10_000), f"the child answered {len(got)} of {answers}"
            unpacker.feed(os.read(from_r, 65536))
            got.extend(unpacker)
        os.close(to_w)
        to_w = -1
        thread.join(10)
        assert not thread.is_alive(), "the child did not stop at EOF"
        os.close(from_w)
        from_w = -1
        while chunk := os.read(from_r, 65536):
            unpacker.feed(chunk)
        got.extend(unpacker)
        return got
    finally:
        for fd in (to_r, to_w, from_r, from_w):
            if fd >= 0:
                os.close(fd)


def _bad_request(message: str) -> dict[str, str]:
    return error_map("request", "BadRequest", message)


MESSAGES_BAD = "param 'messages' must be a list of {role, content} maps"
GEN = {"system": "", "max_tokens": 5, "temperature": 0.5}
SERVED = [
    ("(a) a chat without messages", [0, 1, "chat", GEN], [1, 1, _bad_request(MESSAGES_BAD), None]),
    ("(a) a chat with messages nil", [0, 1, "chat", {**GEN, "messages": None}], [1, 1, _bad_request(MESSAGES_BAD), None]),
    ("(a) a chat without system", [0, 1, "chat", {"max_tokens": 5}], [1, 1, _bad_request("param 'system' must be str"), None]),
    (
        "(a) a chat, messages before max_tokens",
        [0, 1, "chat", {"system": "", "max_tokens": True}],
        [1, 1, _bad_request(MESSAGES_BAD), None],
    ),
    (
        "(a) a stream with messages nil",
        [0, 1, "stream", {**GEN, "messages": None, "user_message": "x"}],
        [1, 1, _bad_request(MESSAGES_BAD), None],
    ),  # fmt: skip
    ("(a) a generate without user_message", [0, 1, "generate", GEN], [1, 1, _bad_request("param 'user_message' must be str"), None]),
    (
        "a bool max_tokens",
        [0, 1, "generate", {**GEN, "user_message": "x", "max_tokens": False}],
        [1, 1, _bad_request("param 'max_tokens' must be int"), None],
    ),  # fmt: skip
    ("an int temperature", [0, 1, "generate", {**GEN, "user_message": "x", "temperature": 1}], [1, 1, None, "ok"]),
    ("no temperature: the plugin's default", [0, 1, "generate", {"system": "", "max_tokens": 5, "user_message": "x"}], [1, 1, None, "ok"]),
    (
        "a string temperature",
        [0, 1, "generate", {**GEN, "user_message": "x", "temperature": "hot"}],
        [1, 1, _bad_request("param 'temperature' must be a number"), None],
    ),  # fmt: skip
    ("params not a map", [0, 1, "ping", []], [1, 1, _bad_request("params of ping must be a map"), None]),
    ("cancel of nothing", [0, 1, "cancel", {"id": True}], [1, 1, None, False]),
    ("an unknown method", [0, 1, "embed", {}], [1, 1, error_map("request", "UnknownMethod", "unknown method 'embed'"), None]),
]


@pytest.mark.parametrize("request_, answer", [(q, a) for _, q, a in SERVED], ids=[n for n, _, _ in SERVED])
def test_what_the_reference_child_answers(request_: list[Any], answer: list[Any]) -> None:
    assert _serve([request_], 1) == [answer]


def test_the_child_drops_what_follows_shutdown_in_the_same_read_and_ignores_responses() -> None:
    answers = _serve([[1, 9, None, 1], [2, "note", {}], [0, 1, "shutdown", {}], [0, 2, "ping", {}]], 1)
    assert answers == [[1, 1, None, None]]


BASE = ["--root", "/r", "--plugin", "/p.py"]
OPTIONS = [
    ("(c) no leading --", ["root", "/r", "--plugin", "/p.py"], "unknown option 'root'"),
    ("(c) a single -", ["-root", "/r", "--plugin", "/p.py"], "unknown option '-root'"),
    ("(c) --opt=value", ["--root=/r", "--plugin", "/p.py"], "unknown option '--root=/r'"),
    ("(c) names are case-sensitive", ["--Root", "/r", "--plugin", "/p.py"], "unknown option '--Root'"),
    ("(c) the flag with _", BASE + ["--allow_unsandboxed"], "unknown option '--allow_unsandboxed'"),
    ("a value missing", BASE + ["--name"], "option --name needs a value"),
    ("a list value missing", BASE + ["--ro"], "option --ro needs a value"),
    ("no --plugin", ["--root", "/r"], "--root and --plugin are required"),
    ("an empty --root", ["--root", "", "--plugin", "/p.py"], "--root and --plugin are required"),
    ("(b) --limit without =", BASE + ["--limit", "as"], "bad option value (not enough values to unpack (expected 2, got 1))"),
    ("(b) --limit not an int", BASE + ["--limit", "as=x"], "bad option value (invalid literal for int() with base 10: 'x')"),
    ("(b) --egress not an int", BASE + ["--egress", "x"], "bad option value (invalid literal for int() with base 10: 'x')"),
    ("--tcp is gone: the host connects", BASE + ["--tcp", "80"], "unknown option '--tcp'"),
    ("(b) --max-message in hex", BASE + ["--max-message", "0x10"], "bad option value (invalid literal for int() with base 10: '0x10')"),
    (
        "(b) --limit before --egress",
        BASE + ["--egress", "x", "--limit", "as=y"],
        "bad option value (invalid literal for int() with base 10: 'y')",
    ),
]


@pytest.mark.parametrize("argv, message", [(a, m) for _, a, m in OPTIONS], ids=[n for n, _, _ in OPTIONS])
def test_the_child_refuses_options(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        child.parse_options(argv)
    assert exc.value.code == "sandchat child: " + message  # one stderr line, status 1


ACCEPTED = [
    ("(c) _ for - in a valued option", BASE + ["--max_message", "2048"], {"max_message": 2048}),
    (
        "(b) int() leniency",
        BASE + ["--limit", "as=1_000", "--egress", " 5 ", "--max-message", "+5"],
        {"limits": {"as": 1000}, "egress": 5, "max_message": 5},
    ),  # fmt: skip
    ("a value that looks like an option", BASE + ["--name", "--root"], {"name": "--root"}),
    ("the last of a repeated option", BASE + ["--profile", "none", "--profile", "network"], {"profile": "network"}),
    (
        "(b) values the sandbox refuses later",
        BASE + ["--profile", "bogus", "--limit", "foo=-1"],
        {"profile": "bogus", "limits": {"foo": -1}},
    ),
]


@pytest.mark.parametrize("argv, wanted", [(a, w) for _, a, w in ACCEPTED], ids=[n for n, _, _ in ACCEPTED])
def test_the_child_accepts_options(argv: list[str], wanted: dict[str, Any]) -> None:
    options = child.parse_options(argv)
    assert {key: options[key] for key in wanted} == wanted


def test_the_host_compares_ids_as_integers() -> None:
    assert check_response([1, 7, None, 5], 7) == (None, 5)
    for message, text in [([1, 8, None, 5], "response to unknown request id 8 (expected 7)"),
                          ([0, 7, "x", {}], "expected a response, got a list of 4 items")]:  # fmt: skip
        with pytest.raises(ProtocolViolation) as exc:
            check_response(message, 7)
        assert str(exc.value) == text


# (d) and (e) with a child written from the document alone: an executable that speaks the
# protocol itself, started through PluginConfig.python like a child in another language
# (the raw_plugin fixture, tests/conftest.py).


def _result(action: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", action()
    except runner.PluginError as exc:
        return type(exc).__name__, exc.message


CANCEL_LATER = """
def handle(m):
    if m[2] == "generate":
        pending.append(m[1])
    elif m[2] == "cancel":
        {on_cancel}
    else:
        w(pack([1, m[1], None, 1]))
"""
ID_CASES = [
    ("a msgid in a uint64", "def handle(m): w(b'\\x94\\x01\\xcf' + m[1].to_bytes(8, 'big') + b'\\xc0\\x03')", ("ok", 3), True),
    (
        "a bool msgid",
        "def handle(m): w(pack([1, True, None, 3]))",
        ("PluginProtocolError", "broke the protocol: malformed message a list of 4 items"),
        False,
    ),  # fmt: skip
    (
        "another id",
        "def handle(m): w(pack([1, m[1] + 1, None, 3]))",
        ("PluginProtocolError", "response to unknown request id 2 (expected 1)"),
        False,
    ),  # fmt: skip
    (
        "a request from the child",
        "def handle(m): w(pack([0, 9, 'x', {}])); w(pack([1, m[1], None, 3]))",
        ("PluginProtocolError", "expected a response, got a list of 4 items"),
        False,
    ),  # fmt: skip
    (
        "a chunk during count_tokens is ignored",
        "def handle(m): w(pack([2, 'chunk', [m[1], 'x']])); w(pack([1, m[1], None, 3]))",
        ("ok", 3),
        True,
    ),  # fmt: skip
]


@pytest.mark.parametrize("handler, outcome, kept", [(h, o, k) for _, h, o, k in ID_CASES], ids=[n for n, *_ in ID_CASES])
def test_d_how_the_host_matches_a_response(raw_plugin: Callable[..., Plugin], handler: str, outcome: Any, kept: bool) -> None:
    plugin = raw_plugin(handler)
    assert _result(lambda: plugin.count_tokens("x")) == outcome
    assert plugin.running is kept


def test_d_a_second_response_to_an_answered_id_kills_the_next_call(raw_plugin: Callable[..., Plugin]) -> None:
    plugin = raw_plugin("def handle(m): w(pack([1, m[1], None, 3])); w(pack([1, m[1], None, 4]))")
    assert plugin.count_tokens("x") == 3
    assert _result(lambda: plugin.count_tokens("y")) == ("PluginProtocolError", "response to unknown request id 1 (expected 2)")
    assert not plugin.running


def test_d_the_host_numbers_its_requests_and_wraps_to_zero(raw_plugin: Callable[..., Plugin]) -> None:
    plugin = raw_plugin("def handle(m): w(pack([1, m[1], None, m[1] % 1000]))")
    plugin.start()
    plugin._conn._channel.last_id = MAX_MSGID - 1  # type: ignore[union-attr]  # skip four billion requests
    assert [plugin.count_tokens("x") for _ in range(3)] == [MAX_MSGID % 1000, 0, 1]


@pytest.mark.parametrize("on_cancel, outcome", [
    # the cancelled call's own reply ends it; the reply to the cancel comes later and is dropped
    ("w(pack([1, pending.pop(), {'kind': 'cancelled', 'type': 'Cancelled', 'message': 'c', 'traceback': ''}, None])); "
     "w(pack([1, m[1], {'kind': 'request', 'type': 'X', 'message': 'never read', 'traceback': ''}, None]))",
     ("PluginCancelled", "reply was cancelled")),
    # the plugin finished first: its answer is returned; the cancel is never answered
    ("w(pack([1, pending.pop(), None, 'done anyway']))", ("ok", "done anyway")),
], ids=["cancelled, then the cancel's reply", "finished first, the cancel unanswered"])  # fmt: skip
def test_d_a_cancelled_call_keeps_its_id(raw_plugin: Callable[..., Plugin], on_cancel: str, outcome: Any) -> None:
    plugin = raw_plugin(CANCEL_LATER.format(on_cancel=on_cancel))
    with _cancel_right_after_each_request(plugin):
        assert _result(lambda: plugin.generate_response("", "x")) == outcome
    assert plugin.count_tokens("next") == 1 and plugin.running


@contextlib.contextmanager
def _cancel_right_after_each_request(plugin: Plugin) -> Iterator[None]:
    """Cancel each request as soon as it is written, from another thread: the child sees the cancel next."""
    plugin.start()
    conn = plugin._conn
    assert conn is not None
    write = conn._channel.request

    def request_then_cancel(method: str, params: dict[str, Any], seconds: float) -> int:
        msgid = write(method, params, seconds)
        threading.Thread(target=conn.cancel, args=(msgid,)).start()
        return msgid

    conn._channel.request = request_then_cancel  # type: ignore[method-assign]
    try:
        yield
    finally:
        conn._channel.request = write  # type: ignore[method-assign]


def test_d_a_request_from_the_child_is_a_violation_even_with_an_ignored_id(raw_plugin: Callable[..., Plugin]) -> None:
    plugin = raw_plugin(CANCEL_LATER.format(on_cancel="w(pack([0, m[1], 'evil', {}])); w(pack([1, pending.pop(), None, 'done']))"))
    with _cancel_right_after_each_request(plugin):
        assert _result(lambda: plugin.generate_response("", "x"))[0] == "PluginProtocolError"


def test_d_true_is_not_a_message_type() -> None:
    with pytest.raises(ProtocolViolation):
        Decoder(DEFAULT_MAX_MESSAGE, hostile=True).single(b"\x94\xc3\x01\xc0\x02")


BAD_RESULTS = [
    ("count_tokens", "a negative count", "-1", "answered count_tokens with int"),
    ("count_tokens", "a bool", "True", "answered count_tokens with bool"),
    ("count_tokens", "a string", "'5'", "answered count_tokens with str"),
    ("generate", "nil", "None", "answered a generation with NoneType"),
    ("generate", "an int", "5", "answered a generation with int"),
    ("generate", "a text over max_reply", "'x' * 17", "sent a reply longer than its limit of 16 characters (max_reply)"),
]


@pytest.mark.parametrize("method, result, message", [(m, r, t) for m, _, r, t in BAD_RESULTS], ids=[n for _, n, _, _ in BAD_RESULTS])
def test_e_after_a_bad_result_the_process_is_killed_and_the_call_is_a_failure(
    raw_plugin: Callable[..., Plugin], method: str, result: str, message: str
) -> None:
    plugin = raw_plugin(f"def handle(m): w(pack([1, m[1], None, {result}]))", max_reply=16)
    call = (lambda: plugin.count_tokens("x")) if method == "count_tokens" else (lambda: plugin.generate_response("", "x"))
    assert _result(call) == ("PluginProtocolError", message)
    assert not plugin.running
    assert plugin.stats.errors == 1 and plugin.restart_gate.consecutive == 1


def test_e_the_final_result_of_a_stream_is_not_checked(raw_plugin: Callable[..., Plugin]) -> None:
    plugin = raw_plugin(
        "def handle(m): w(pack([2, 'chunk', [m[1], 'a']])); w(pack([2, 'chunk', [m[1], '']])); w(pack([1, m[1], None, 'any']))"
    )
    assert list(plugin.stream_response("", "x")) == ["a"]  # an empty chunk is dropped
    assert plugin.running and plugin.stats.errors == 0


_FORGED_COUNT = "def handle(m): w(pack([1, m[1], None, -1]))"
_EXIT_IN_CALL = "def handle(m): sys.exit(3)"


def _half_open_probe(plugin: Plugin) -> None:
    """Put the plugin where its next start is the probe after a quarantine (no cool-down to wait out)."""
    gate = plugin.restart_gate
    gate.quarantined_until, gate.half_open, gate.failures = None, True, []


def test_e_a_crash_in_the_probe_after_a_quarantine_quarantines_again(raw_plugin: Callable[..., Plugin]) -> None:
    plugin = raw_plugin(_EXIT_IN_CALL)
    _half_open_probe(plugin)
    assert _result(lambda: plugin.count_tokens("x"))[0] == "PluginCrashed"
    assert plugin.restart_gate.quarantined_until is not None  # the comparison the next test makes


def test_e_a_bad_result_in_the_probe_after_a_quarantine_quarantines_again(raw_plugin: Callable[..., Plugin]) -> None:
    plugin = raw_plugin(_FORGED_COUNT)
    _half_open_probe(plugin)
    assert _result(lambda: plugin.count_tokens("x")) == ("PluginProtocolError", "answered count_tokens with int")
    assert plugin.restart_gate.quarantined_until is not None
