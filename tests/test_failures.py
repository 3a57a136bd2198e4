"""Each way a plugin can fail costs only that plugin: a named error, and echo still answers.

The runner alone: each handle is built from a PluginConfig (the ``plugins`` fixture), no manager.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from runner import (
    PluginCrashed,
    PluginLoadError,
    PluginProtocolError,
    PluginRaised,
    PluginResultError,
    PluginStartError,
    PluginStartTimeout,
    PluginTimeout,
    PluginVersionError,
)
from tests.helpers import FAST, DirectPlugins

pytestmark = pytest.mark.timeout(60)


def echo_still_answers(plugins: DirectPlugins) -> None:
    assert plugins.handle("echo").generate_response("", "still here") == "echo: still here"


def test_syntax_error_is_a_load_error_naming_the_line(plugins: DirectPlugins) -> None:
    with pytest.raises(PluginLoadError) as info:
        plugins.handle("syntax_error").generate_response("", "hi")
    assert info.value.remote_type == "SyntaxError"
    assert "line 4" in str(info.value) and str(info.value).startswith("plugin 'syntax_error' failed to load")
    echo_still_answers(plugins)


def test_missing_library_names_the_module(plugins: DirectPlugins) -> None:
    with pytest.raises(PluginLoadError) as info:
        plugins.handle("import_error").count_tokens("x")
    assert "ModuleNotFoundError" in str(info.value) and "your_llm_library" in str(info.value)
    assert "import your_llm_library" in info.value.remote_traceback
    echo_still_answers(plugins)


def test_sys_exit_at_import_is_a_load_error(plugins: DirectPlugins) -> None:
    with pytest.raises(PluginLoadError, match=r"sys\.exit\(3\) at import"):
        plugins.handle("exit_at_import").count_tokens("x")
    echo_still_answers(plugins)


def test_hard_exit_before_hello_reports_status_and_stderr(plugins: DirectPlugins) -> None:
    with pytest.raises(PluginStartError) as info:
        plugins.handle("hard_exit_at_import").count_tokens("x")
    assert not isinstance(info.value, PluginTimeout)
    assert info.value.exit_code == 4
    assert "exited with status 4 before its hello" in str(info.value)
    assert "giving up at import" in str(info.value)
    echo_still_answers(plugins)


def test_no_hello_before_deadline_is_a_start_timeout(home, tmp_path) -> None:
    from dataclasses import replace

    with DirectPlugins(home, deadlines=replace(FAST, start=1.5)) as plugins:
        with pytest.raises(PluginStartTimeout, match=r"sent no hello within 1\.5s"):
            plugins.handle("slow_start").count_tokens("x")
        echo_still_answers(plugins)


def test_forged_hello_with_other_version_is_refused(plugins: DirectPlugins) -> None:
    with pytest.raises(PluginVersionError, match="protocol 99"):
        plugins.handle("forged_hello").count_tokens("x")
    echo_still_answers(plugins)


def test_segfault_in_a_call_is_a_crash_with_the_signal(plugins: DirectPlugins) -> None:
    client = plugins.handle("segfault")
    assert client.count_tokens("a b c") == 3
    with pytest.raises(PluginCrashed) as info:
        client.generate_response("", "boom")
    assert info.value.signal == 11 and "SIGSEGV during generate" in str(info.value)
    assert client.count_tokens("a b") == 2  # a fresh process on the next call
    echo_still_answers(plugins)


def test_sys_exit_in_a_call_is_a_crash_with_the_status(plugins: DirectPlugins) -> None:
    with pytest.raises(PluginCrashed) as info:
        plugins.handle("exit_in_call").generate_response("", "bye")
    assert info.value.exit_code == 7 and "exited with status 7 during generate" in str(info.value)
    echo_still_answers(plugins)


def test_hang_past_the_deadline_is_killed(plugins: DirectPlugins) -> None:
    client = plugins.handle("hang")
    with pytest.raises(PluginTimeout) as info:
        client.count_tokens("x")
    assert info.value.phase == "count_tokens" and "timed out after 3s" in str(info.value)
    assert not client.running
    with pytest.raises(PluginTimeout) as info:
        client.generate_response("", "x")
    assert info.value.phase == "total"
    echo_still_answers(plugins)


def test_child_that_stops_reading_its_input_is_killed_at_the_write_deadline(plugins: DirectPlugins) -> None:
    """A request larger than the pipe, to a child that no longer reads: the write itself has a deadline."""
    client = plugins.handle("noisy")
    assert client.count_tokens("abcd") == 4
    pid = client.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # stopped, as if stuck in C code: it reads nothing more
    began = time.monotonic()
    with pytest.raises(PluginTimeout) as info:
        client.count_tokens("x" * (4 * 2**20))  # 4 MiB: the 64 KiB pipe fills at once
    elapsed = time.monotonic() - began
    assert info.value.phase == "write"
    assert str(info.value) == "plugin 'noisy' stopped reading its input during count_tokens"
    assert FAST.first_chunk * 0.9 <= elapsed < FAST.first_chunk + 2
    assert not client.running
    assert client.count_tokens("abcd") == 4 and client.pid != pid  # a fresh process
    echo_still_answers(plugins)


def test_prints_to_stdout_never_corrupt_messages(plugins: DirectPlugins) -> None:
    client = plugins.handle("noisy")
    assert client.generate_response("", "q") == "noisy answer to q"
    assert list(client.stream_response("", "q")) == ["one", " two", " three"]
    assert client.count_tokens("abcd") == 4
    assert any("noisy: hello from import" in line for line in client.stderr_tail(40))
    echo_still_answers(plugins)


def test_wrong_return_types_are_named(plugins: DirectPlugins) -> None:
    client = plugins.handle("wrong_types")
    with pytest.raises(PluginResultError) as info:
        client.generate_response("", "x")
    assert str(info.value) == "plugin 'wrong_types' returned NoneType from generate_response, expected str"
    with pytest.raises(PluginResultError, match="returned str from count_tokens, expected a non-negative int"):
        client.count_tokens("x")
    with pytest.raises(PluginResultError, match="returned -1 from count_tokens"):
        client.count_tokens("negative")
    with pytest.raises(PluginResultError, match="returned bool from count_tokens"):
        client.count_tokens("bool")
    with pytest.raises(PluginResultError, match="yielded int from stream_response, expected str"):
        list(client.stream_response("", "x"))
    assert client.running  # a contract error is not a crash: the process is kept
    echo_still_answers(plugins)


def test_exception_in_plugin_carries_its_traceback(plugins: DirectPlugins) -> None:
    with pytest.raises(PluginRaised) as info:
        plugins.handle("raises").generate_response("", "hello")
    assert str(info.value) == "plugin 'raises' raised ValueError: model rejected 'hello'"
    assert info.value.remote_type == "ValueError"
    assert "_inner_helper" in info.value.remote_traceback
    echo_still_answers(plugins)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("no_class", "defines no LLMClient subclass"),
        ("two_classes", r"defines 2 LLMClient subclasses \(First, Second\)"),
        ("abstract", "Half does not implement count_tokens"),
        ("init_raises", r"RuntimeError: EXAMPLE_API_KEY is not set \(in NeedsKey.__init__\)"),
    ],
)
def test_class_problems_are_load_errors(plugins: DirectPlugins, name: str, expected: str) -> None:
    with pytest.raises(PluginLoadError, match=expected):
        plugins.handle(name).count_tokens("x")
    echo_still_answers(plugins)


def test_response_over_the_size_cap_is_a_protocol_error(plugins: DirectPlugins) -> None:
    client = plugins.handle("huge")
    with pytest.raises(PluginProtocolError, match="larger than the 16777216-byte cap"):
        client.generate_response("", "x")
    assert not client.running
    echo_still_answers(plugins)


def test_garbage_on_the_channel_is_a_protocol_error(plugins: DirectPlugins) -> None:
    client = plugins.handle("garbage")
    with pytest.raises(PluginProtocolError):
        client.generate_response("", "x")
    with pytest.raises(PluginProtocolError, match="unknown request id|malformed"):
        client.count_tokens("x")
    echo_still_answers(plugins)


def test_a_message_in_many_small_pieces_is_capped_too(plugins: DirectPlugins) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    client = plugins.handle("many_pieces")
    # The object budget refuses it long before the byte cap would.
    with pytest.raises(PluginProtocolError, match="more than 4096 objects"):
        client.generate_response("", "x")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024, f"the host buffered {grown_kib} KiB of one message"
    assert not client.running
    echo_still_answers(plugins)


def test_a_forged_result_of_the_wrong_type_costs_the_process(plugins: DirectPlugins) -> None:
    client = plugins.handle("forged_result")
    with pytest.raises(PluginProtocolError, match="answered count_tokens with str"):
        client.count_tokens("x")
    assert not client.running and client.stats.errors == 1
    assert client.generate_response("", "x") == "fine"  # a fresh process
    echo_still_answers(plugins)
