"""The host survives any child: bytes a plugin may send are bounded before they are trusted.

Found by an outside review, each reproduced here with a plugin in ``tests/hostile/``
that writes straight onto its protocol descriptor: a 16 MiB message of 16 million empty
arrays (the host grew to 1.2 GiB), an endless stream (kept 1:1 in memory), a message
nested 1,000 deep (RecursionError escaped the API), a forged hello (``plugins health``
crashed on ``layers = 5``, and showed made-up layers), the sandbox-error marker printed
by plugin code (the host advised turning the sandbox off), and a call made on the thread
reading a stream (it killed the plugin and lost chunks).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import runner
from app import PluginManager
from app.health import probe_all
from app.hints import hint_for
from app.settings import Paths, Settings
from tests.helpers import FAST, HOSTILE_PLUGINS, SHIPPED_PLUGINS, TEST_PLUGINS, DirectPlugins

pytestmark = pytest.mark.timeout(90)

MiB = 2**20


@pytest.fixture
def hostile(home: Path) -> Iterator[PluginManager]:
    settings = Settings(paths=Paths.from_home(home), plugin_options={"endless": {"max_reply": 4 * MiB}})
    with PluginManager([HOSTILE_PLUGINS, TEST_PLUGINS], settings=settings, deadlines=FAST) as manager:
        yield manager


@pytest.fixture
def hostile_plugins(home: Path) -> Iterator[DirectPlugins]:
    """As ``hostile``, without the manager: runner.Plugin handles built from a PluginConfig."""
    folders = (HOSTILE_PLUGINS, TEST_PLUGINS, SHIPPED_PLUGINS)
    with DirectPlugins(home, deadlines=FAST, folders=folders, options={"endless": {"max_reply": 4 * MiB}}) as plugins:
        yield plugins


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def peak_rss_growth(action: object) -> int:
    """How far above its RSS before the host's peak RSS went (bytes) while ``action()`` ran.

    Writing 5 to clear_refs resets the peak (VmHWM), so an earlier test's peak does not
    hide this one's.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status("VmRSS")
    action()  # type: ignore[operator]
    return _status("VmHWM") - before


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text.startswith("plugin '"), text
    return text


def echo_still_answers(manager: PluginManager | DirectPlugins) -> None:
    assert manager.handle("echo").generate_response("", "still here") == "echo: still here"


def test_a_message_of_sixteen_million_empty_arrays_is_refused_before_it_is_decoded(hostile_plugins: DirectPlugins) -> None:
    client = hostile_plugins.handle("amplify")
    client.start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.generate_response("", "x")
        except runner.PluginProtocolError as exc:
            errors.append(exc)

    grown = peak_rss_growth(call)
    assert errors and "more than 4096 objects" in one_line(errors[0])
    assert grown < 64 * MiB, f"the host grew {grown // MiB} MiB decoding one message"
    assert not client.running
    echo_still_answers(hostile_plugins)


@pytest.mark.parametrize("padding", [0, 8000])
def test_a_message_nested_a_thousand_deep_is_a_protocol_error_not_a_recursion_error(hostile_plugins: DirectPlugins, padding: int) -> None:
    """Short messages cannot exceed the object budget and are shape-checked without recursion;
    longer ones are scanned first and refused for their depth."""
    with pytest.raises(runner.PluginProtocolError) as caught:
        hostile_plugins.handle("deep").generate_response("", str(padding))
    text = one_line(caught.value)
    assert "nested more than 16 deep" in text or (not padding and "malformed message a list of 4 items" in text), text
    echo_still_answers(hostile_plugins)


def test_an_endless_stream_stops_at_max_reply_and_is_not_kept(hostile_plugins: DirectPlugins) -> None:
    client = hostile_plugins.handle("endless")
    client.start()
    seen: list[int] = []

    def consume() -> None:
        with pytest.raises(runner.PluginProtocolError) as caught:
            for chunk in client.stream_response("", "go"):
                seen.append(len(chunk))  # the caller keeps what it wants; here only sizes
        assert "longer than its limit of 4,194,304 characters (max_reply)" in one_line(caught.value)

    grown = peak_rss_growth(consume)
    assert sum(seen) <= 4 * MiB and len(seen) >= 3
    assert grown < 48 * MiB, f"the host grew {grown // MiB} MiB while the caller kept nothing"
    assert not client.running
    with pytest.raises(runner.PluginProtocolError, match="larger than|longer than"):
        client.generate_response("", "one answer of 20 Mi characters")
    echo_still_answers(hostile_plugins)


def test_a_bad_max_reply_setting_is_one_line(home: Path) -> None:
    settings = Settings(paths=Paths.from_home(home), plugin_options={"echo": {"max_reply": "lots"}})
    with PluginManager([TEST_PLUGINS], settings=settings) as manager:
        with pytest.raises(runner.PluginUnavailable, match="bad max_reply in the settings file: 'lots'"):
            manager.handle("echo")


def test_a_forged_hello_does_not_replace_the_hosts_facts(hostile: PluginManager) -> None:
    client = hostile.handle("liar")
    hello = client.start()
    assert hello["pid"] == client.pid != 1
    report = hello["sandbox"]  # what the child's trusted code sent before the plugin ran
    assert report["profile"] == "untrusted" and "seccomp" in report["layers"] and "landlock-fs" in report["layers"]
    assert client.context_window == 100_000  # a plausible claim about itself is the plugin's to make
    health = probe_all(hostile, ["liar"])[0]
    assert health["healthy"] and health["profile"] == "untrusted" and health["pid"] == client.pid
    assert "seccomp" in health["layers"]
    echo_still_answers(hostile)


def test_a_hello_with_an_impossible_context_window_is_refused(hostile: PluginManager) -> None:
    with pytest.raises(runner.PluginStartError) as caught:
        hostile.handle("liar_window").start()
    assert "sent a bad hello: field 'context_window' is missing or invalid" in one_line(caught.value)
    report = probe_all(hostile, ["liar_window"])[0]
    assert not report["healthy"] and "context_window" in report["last_error"]
    echo_still_answers(hostile)


def test_plugin_code_cannot_pass_for_a_sandbox_failure(hostile: PluginManager) -> None:
    with pytest.raises(runner.PluginStartError) as caught:
        hostile.handle("exit78").start()
    assert not isinstance(caught.value, runner.PluginSandboxError)
    assert "exited with status 78 before its hello" in one_line(caught.value)
    fix = hint_for(hostile, "exit78", caught.value)
    hint = fix.text if fix is not None else ""
    assert "allow_unsandboxed" not in hint
    echo_still_answers(hostile)


@pytest.mark.parametrize("call", ["count_tokens", "ping", "generate_response", "stream"])
def test_a_call_on_the_thread_reading_a_stream_fails_at_once_and_the_stream_goes_on(hostile_plugins: DirectPlugins, call: str) -> None:
    client = hostile_plugins.handle("stream_reentry")
    actions = {
        "count_tokens": lambda: client.count_tokens("x"),
        "ping": client.ping,
        "generate_response": lambda: client.generate_response("", "x"),
        "stream": lambda: list(client.stream_response("", "x")),
    }
    received = []
    for chunk in client.stream_response("", "go"):
        received.append(chunk)
        if len(received) == 3:
            with pytest.raises(runner.PluginUnavailable) as caught:
                actions[call]()
            assert caught.value.reason == "busy" and "is streaming a reply to this thread" in one_line(caught.value)
    assert received == [f"{i} " for i in range(10)]  # nothing lost
    assert client.count_tokens("x") == 7 and client.stats.errors == 0 and client.stats.starts == 1
