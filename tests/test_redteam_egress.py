"""Red team: a hostile network plugin against the host's egress broker (docs/security.md 2.5).

Each test runs a real plugin from ``tests/redteam/`` in the network profile, with real
loopback listeners the test owns, and checks that the attack FAILED: no connection on a
listener the grant does not name, nothing through the proxy but the granted name, the
host's canaries intact and other plugins still answering. Attacks that got through are
kept as ``xfail(strict=True, reason="HOLE: ...")`` until fixed; the holes found (the
hint proposing a wildcard or control characters from a non-host, broker threads dying on
odd numbers) are fixed and these are plain tests now.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import runner
from app import PluginManager
from app.health import health_text, probe_all
from app.hints import hint_for
from runner.cleantext import clean_text
from tests.attackkit import (
    Host,
    accepted,
    assert_host_healthy,
    drain,
    grant_network,
    listener,
    port,
)

REDTEAM = Path(__file__).resolve().parent / "redteam"
NAME = "rt_egress"
# Generous call deadlines: a few attacks make hundreds of requests, and a granted wildcard
# name is looked up in real DNS (an NXDOMAIN here).
SLOW_OK = runner.Deadlines(start=20, first_chunk=30, idle=30, total=60, count_tokens=3, ping=3, cancel_grace=1, stop_grace=1)


# -- helpers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def redteam(home: Path, environ: dict[str, str] | None = None) -> Iterator[PluginManager]:
    with PluginManager([REDTEAM], home=home, deadlines=SLOW_OK, environ=environ) as manager:
        yield manager


def run(manager: PluginManager, order: dict[str, Any]) -> list[str]:
    lines = manager.handle(NAME).generate_response("", json.dumps(order)).splitlines()
    assert lines, "the attack said nothing"
    return lines


def assert_no_leak(lines: list[str]) -> None:
    leaked = [line for line in lines if line.startswith("LEAKED")]
    assert not leaked, "\n".join(leaked)


def start_network(manager: PluginManager, name: str, *endpoints: str) -> runner.Plugin:
    grant_network(manager, name, *endpoints)
    client = manager.handle(name)
    assert client.start()["sandbox"]["profile"] == "network"
    return client


def egress_threads(name: str = NAME) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"sandchat-egress-{name}"]


def stop_and_reap(client: runner.Plugin, name: str = NAME) -> None:
    """Stop the plugin and wait for its broker thread to end (it must: EOF on the channel)."""
    client.stop()
    for thread in egress_threads(name):
        thread.join(10)
        assert not thread.is_alive(), "the broker thread outlived its plugin"


def host_fds() -> dict[int, str]:
    found = {}
    for entry in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found[int(entry)] = os.readlink(f"/proc/self/fd/{entry}")
    return found


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Exceptions that escaped any host thread (the broker's) while the test ran."""
    seen: list[str] = []
    monkeypatch.setattr(
        threading,
        "excepthook",
        lambda args: seen.append(f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}"),
    )
    return seen


@pytest.fixture
def ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")


class FakeProxy:
    """An HTTP proxy the test owns: records each CONNECT line, answers 200 when released."""

    def __init__(self, hold: bool = False) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[str] = []
        self.payloads: list[bytes] = []
        self.asked = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()
        if not hold:
            self.release.set()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                head = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                self.requests.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
                self.asked.set()
                if not self.release.wait(20):
                    continue
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    self.payloads.append(conn.recv(100))
                self.done.set()

    def close(self) -> None:
        self.release.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept(): a close() alone does not, on Linux
        self.sock.close()
        self._thread.join(10)


@contextlib.contextmanager
def fake_proxy(hold: bool = False) -> Iterator[FakeProxy]:
    proxy = FakeProxy(hold)
    try:
        yield proxy
    finally:
        proxy.close()


# -- reaching an address or port the grant does not name -------------------------------------------


@pytest.mark.timeout(120)
def test_ip_spellings_of_loopback_reach_no_ungranted_port(home: Path, host: Host, ipv6_loopback: None) -> None:
    """IPv4-mapped and -compatible IPv6, 0.0.0.0, scope ids, brackets, trailing dots and
    whitespace, numeric names libc reads as addresses, odd families: all refused."""
    with listener() as granted, listener() as other, listener(socket.AF_INET6, ("::1", 0)) as other6, redteam(home) as manager:
        start_network(manager, NAME, f"127.0.0.1:{port(granted)}")
        lines = run(manager, {"attack": "spellings", "g": port(granted), "u": port(other), "u6": port(other6)})
        assert_no_leak(lines)
        assert len(lines) > 150
        assert accepted(other) == [] and accepted(other6) == [] and accepted(granted) == []
        assert_host_healthy(manager, host)


@pytest.mark.timeout(120)
def test_handed_out_addresses_open_no_other_port(home: Path, host: Host, ipv6_loopback: None) -> None:
    """Resolve the granted name, then use its addresses (and odd port spellings of the
    lookup: none, 0, '', service names, padded digits) to reach another port."""
    with listener() as granted, listener() as other, listener(socket.AF_INET6, ("::1", 0)) as other6, redteam(home) as manager:
        start_network(manager, NAME, f"localhost:{port(granted)}")
        lines = run(manager, {"attack": "after_resolve", "g": port(granted), "u": port(other), "u6": port(other6)})
        assert_no_leak(lines)
        assert lines[-1] == "CONTROL: create_connection to the granted name worked"
        assert accepted(granted) == [b"control"]  # the attack's own control: the grant works
        assert accepted(other) == [] and accepted(other6) == []
        assert_host_healthy(manager, host)


@pytest.mark.timeout(120)
def test_wildcard_grant_matches_one_label_only(home: Path, host: Host) -> None:
    """``*.rt.test``: not the apex, not two labels, not a suffix game, not NUL/newline/space
    tricks, not IDNA full stops, not another port; the host looks up only ``a.rt.test``."""
    with listener() as granted, listener() as other, redteam(home) as manager:
        start_network(manager, NAME, f"*.rt.test:{port(granted)}")
        lines = run(manager, {"attack": "wildcard", "g": port(granted), "u": port(other)})
        assert_no_leak(lines)
        assert lines[-1] == f"CONTROL: a.rt.test at {port(granted)}: looked up"
        assert accepted(other) == [] and accepted(granted) == []
        assert_host_healthy(manager, host)


@pytest.mark.timeout(60)
def test_residual_a_wildcard_grant_carries_labels_to_the_resolver(home: Path, host: Host) -> None:
    """Documented residual (docs/security.md 4, "Wildcards carry data"): confirmed, the host
    looks up any one label under a granted wildcard, so its DNS operator sees it."""
    with redteam(home) as manager:
        start_network(manager, NAME, "*.rt.test:443")
        (line,) = run(manager, {"attack": "exfil", "g": 443})
        assert line.startswith("RESIDUAL: looked up"), line
        assert_host_healthy(manager, host)


@pytest.mark.timeout(120)
def test_a_connected_socket_cannot_be_pointed_elsewhere(home: Path, host: Host) -> None:
    """With the host's real TCP socket in hand: connect(AF_UNSPEC) and reconnect, raw
    connect, TCP_REPAIR, TCP_ULP, IP_TRANSPARENT, Fast Open, sendto/sendmsg with an address,
    libc socket(), SEQPACKET pairs, listen/bind, and dup2 games on the placeholder."""
    with listener() as granted, listener() as other, redteam(home) as manager:
        start_network(manager, NAME, f"127.0.0.1:{port(granted)}")
        lines = run(manager, {"attack": "socket_tricks", "g": port(granted), "u": port(other)})
        assert_no_leak(lines)
        assert accepted(other) == []
        assert [line for line in lines if line.startswith("INFO: sendmsg")], lines
        assert_host_healthy(manager, host)


@pytest.mark.timeout(120)
def test_racing_threads_on_the_channel_reach_no_ungranted_port(home: Path, host: Host) -> None:
    """Eight threads through the adapter plus one writing frames past its lock: replies may
    land on the wrong thread, but no socket the host hands out is for the other port."""
    with listener() as granted, listener() as other, redteam(home) as manager:
        granted.listen(128)  # room for every connection the race makes: a full backlog would stall the host's connects
        start_network(manager, NAME, f"127.0.0.1:{port(granted)}")
        run(manager, {"attack": "race", "g": port(granted), "u": port(other)})  # its own tally is unreliable by design
        assert accepted(other) == []
        drain(granted)  # some of its sockets carry no bytes: a reply read by the wrong thread
        assert_host_healthy(manager, host)


@pytest.mark.timeout(120)
def test_pipelined_requests_are_answered_in_order_and_grant_nothing_more(home: Path, host: Host) -> None:
    with listener() as granted, listener() as other, redteam(home) as manager:
        granted.listen(128)  # room for every connection the pipeline makes before the test accepts
        start_network(manager, NAME, f"127.0.0.1:{port(granted)}", f"localhost:{port(granted)}")
        (line,) = run(manager, {"attack": "pipeline", "g": port(granted), "u": port(other)})
        assert line == "BLOCKED: 120 replies, 20 sockets, leaks []", line
        assert accepted(other) == []
        assert accepted(granted) == [b"p"] * 20
        assert_host_healthy(manager, host)


# -- the proxy -----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_proxy_is_asked_only_for_the_granted_name_and_port(home: Path, host: Host) -> None:
    """Through the user's HTTP proxy: synthetic addresses at other ports, synthetic addresses
    never handed out, mapped spellings, other names: the proxy sees one CONNECT, the grant's."""
    with fake_proxy() as proxy, listener() as other:
        environ = {"HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}", "HTTP_PROXY": f"http://127.0.0.1:{proxy.port}"}
        with redteam(home, environ) as manager:
            start_network(manager, NAME, "api.rt.test:8443")
            lines = run(manager, {"attack": "proxied", "g": 8443, "u": port(other)})
            assert_no_leak(lines)
            assert lines[-1] == "CONTROL: tunnelled to the granted name"
            assert proxy.requests == ["CONNECT api.rt.test:8443 HTTP/1.1"]
            assert proxy.done.wait(10) and proxy.payloads == [b"tunnelled"]
            assert accepted(other) == []
            assert_host_healthy(manager, host)


@pytest.mark.timeout(120)
def test_a_connect_the_host_waits_on_starves_no_one(home: Path, host: Host) -> None:
    """The host's broker for one plugin waits on a slow connect (a proxy that does not
    answer yet): the chat, another network plugin and the same plugin's calls go on."""
    with fake_proxy(hold=True) as proxy, listener() as granted:
        environ = {"HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}", "NO_PROXY": "127.0.0.1"}
        with redteam(home, environ) as manager:
            start_network(manager, NAME, "api.rt.test:443")
            start_network(manager, "rt_bystander", f"127.0.0.1:{port(granted)}")
            assert run(manager, {"attack": "slow", "g": 443}) == ["STARTED"]
            assert proxy.asked.wait(10)  # the host is now inside the slow connect
            assert manager.handle("rt_bystander").generate_response("", json.dumps(["127.0.0.1", port(granted)])) == "connected"
            assert accepted(granted) == [b"bystander"]
            assert manager.handle(NAME).generate_response("", "ping") == "pong"
            assert_host_healthy(manager, host)
            proxy.release.set()
            assert proxy.done.wait(10) and proxy.payloads == [b"slow"]


# -- the host's broker as a target: hostile frames, fds, a full channel -----------------------------

_ENDS_CLEANLY = [
    "deep_nesting",
    "deep_object",
    "length_max",
    "length_1025",
    "length_zero",
    "not_utf8",
    "nan_timeout",
    "inf_timeout",
    "neg_timeout",
    "huge_int_port",
    "huge_int_family",
    "float_family",
    "bool_port",
    "string_port_connect",
    "port_70000",
    "host_list",
    "host_301",
    "unknown_op",
    "extra_field",
    "duplicate_op",
    "top_array",
    "lone_surrogate",
    "trailing_garbage",
]


@pytest.mark.timeout(300)
def test_hostile_frames_end_only_that_broker(home: Path, host: Host, thread_errors: list[str]) -> None:
    """JSON bombs within 1 KiB, lengths past the limit, NaN and infinite timeouts, huge
    integers, wrong types, extra fields, a lone surrogate: each one is answered or ends that
    process's broker; no host thread raises, no socket is handed out, the next start works."""
    with listener() as granted, listener() as other, redteam(home) as manager:
        client = start_network(manager, NAME, f"127.0.0.1:{port(granted)}")
        start_network(manager, "rt_bystander", f"127.0.0.1:{port(granted)}")
        for kind in _ENDS_CLEANLY:
            (line,) = run(manager, {"attack": "poison", "kind": kind, "g": port(granted), "u": port(other)})
            assert line.startswith("BLOCKED: "), line
            assert manager.handle(NAME).generate_response("", "ping") == "pong"  # the plugin lives on
            stop_and_reap(client)
            assert thread_errors == [], (kind, thread_errors)
        assert accepted(other) == []
        assert manager.handle("rt_bystander").generate_response("", json.dumps(["127.0.0.1", port(granted)])) == "connected"
        assert accepted(granted) == [b"bystander"]
        assert_host_healthy(manager, host)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["superscript_port", "huge_int_timeout"])
def test_frames_that_raise_inside_the_host_broker(home: Path, host: Host, thread_errors: list[str], kind: str) -> None:
    with listener() as granted, redteam(home) as manager:
        client = start_network(manager, NAME, f"127.0.0.1:{port(granted)}")
        (line,) = run(manager, {"attack": "poison", "kind": kind, "g": port(granted), "u": 1})
        assert line.startswith("BLOCKED: "), line
        stop_and_reap(client)
        assert_host_healthy(manager, host)
        assert thread_errors == []


@pytest.mark.timeout(60)
def test_fds_sent_to_the_host_are_dropped(home: Path, host: Host) -> None:
    with redteam(home) as manager:
        start_network(manager, NAME, "127.0.0.1:9")
        before = host_fds()
        lines = run(manager, {"attack": "send_fds"})
        after = host_fds()
        marker = lines[-1].removeprefix("MARKER: ")
        assert "'ok': True" in lines[0], lines  # the broker answered the request and the next one
        assert len(after) - len(before) < 20, "the host kept the fds the plugin sent"
        assert not [target for target in after.values() if target == marker]
        assert_host_healthy(manager, host)


@pytest.mark.timeout(60)
def test_a_broker_stuffed_with_unread_replies_blocks_only_that_plugin(home: Path, host: Host) -> None:
    with listener() as granted, redteam(home) as manager:
        client = start_network(manager, NAME, f"127.0.0.1:{port(granted)}")
        start_network(manager, "rt_bystander", f"127.0.0.1:{port(granted)}")
        (line,) = run(manager, {"attack": "stuff"})
        assert line.startswith("STUFFED: ")
        assert manager.handle("rt_bystander").generate_response("", json.dumps(["127.0.0.1", port(granted)])) == "connected"
        assert manager.handle(NAME).generate_response("", "ping") == "pong"
        assert_host_healthy(manager, host)
        stop_and_reap(client)  # the blocked broker thread ends with its plugin
        assert accepted(granted) == [b"bystander"]


# -- refusals as words: the hint, the health report -------------------------------------------------


def refused_call(manager: PluginManager, op: str, host_name: str, port_number: Any, family: int = 0) -> runner.PluginRaised:
    with pytest.raises(runner.PluginRaised) as failure:
        manager.handle(NAME).generate_response(
            "", json.dumps({"attack": "hint", "op": op, "host": host_name, "port": port_number, "family": family})
        )
    return failure.value


@pytest.mark.timeout(60)
def test_hint_proposes_the_endpoint_the_host_refused(home: Path, host: Host) -> None:
    """Control: a plain refused name becomes exactly that grant in the hint."""
    with redteam(home) as manager:
        start_network(manager, NAME, "127.0.0.1:9")
        error = refused_call(manager, "resolve", "Evil.RT.test.", 443)
        assert error.refused == "evil.rt.test:443"
        fix = hint_for(manager, NAME, error)
        assert fix is not None and fix.network == ("evil.rt.test:443",)
        assert_host_healthy(manager, host)


@pytest.mark.timeout(60)
def test_hint_never_proposes_a_wildcard_the_host_never_matched(home: Path, host: Host) -> None:
    with redteam(home) as manager:
        start_network(manager, NAME, "127.0.0.1:9")
        error = refused_call(manager, "resolve", "*.com", 443)
        fix = hint_for(manager, NAME, error)
        assert fix is None or not [n for n in fix.network if n.startswith("*")], fix
        assert_host_healthy(manager, host)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("op, host_name, family", [
    ("connect", "::1%\x1b]0;owned\x07\x1b[2J", socket.AF_INET6),  # an IPv6 scope id is any text to ipaddress
    ("connect", "::1%\nsandchat: Granted 'rt_egress' api.anthropic.com:443", socket.AF_INET6),
    ("resolve", "evil.rt.test\n", 0),  # _NAME's '$' matches before a final newline
    ("connect", "::1%\ud800", socket.AF_INET6),  # a lone surrogate: not encodable on the terminal
])  # fmt: skip
def test_hint_text_carries_no_control_characters(home: Path, host: Host, op: str, host_name: str, family: int) -> None:
    with redteam(home) as manager:
        start_network(manager, NAME, "127.0.0.1:9")
        error = refused_call(manager, op, host_name, 443, family)
        fix = hint_for(manager, NAME, error)
        assert_host_healthy(manager, host)
        assert fix is None or (clean_text(fix.text, keep_newlines=False) == fix.text and fix.text.isprintable()), repr(fix.text)


@pytest.mark.timeout(60)
def test_health_report_shows_hostile_refusals_cleaned(home: Path, host: Host) -> None:
    """The same hostile endpoints in ``plugins health``: cleaned in the table, escaped in JSON."""
    hostile = ["::1%\x1b]0;owned\x07\x1b[2J", "::1%\nFAKE LINE", "::1%\ud800", "\x1b[31mred\u202e", "evil.rt.test\n"]
    with redteam(home) as manager:
        start_network(manager, NAME, "127.0.0.1:9")
        for name in hostile:
            refused_call(manager, "connect" if name.startswith("::1") else "resolve", name, 443, socket.AF_INET6)
        reports = probe_all(manager, [NAME])
        assert reports[0]["refused_24h"] == len(hostile)
        text = health_text(reports, False, width=400)
        text.encode("utf-8")  # no surrogate reaches the terminal
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        assert not [line for line in text.splitlines() if line.startswith("FAKE")]
        json.dumps(reports, indent=2).encode("ascii")
        assert_host_healthy(manager, host)
