"""The network broker end to end: a grant names a host, the host resolves and connects, nothing else gets out.

Real plugin processes (``tests/egress/``, run through the public ``PluginManager`` in the
network profile), real sockets on loopback that record every contact. The machine
resolves ``localhost`` and ``vm`` to 127.0.0.1 (``/etc/hosts``): the tests grant
``localhost:P`` and attack through ``vm:P``, so one listener sees both names and a
refusal is the broker's doing, not a missing route. Every refusal test asserts the
plugin's error *and* that the listener recorded no contact. Hostile use of the broker's
channel itself is in ``tests/test_egress_attacks.py``.

Three product bugs found while writing these tests (ssl's wrap-then-connect, a service
name that broke the broker, lookups ignoring family and flags) are fixed; their tests
stay.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import runner
from app import PluginManager
from app.hints import hint_for
from tests.attackkit import accepted, datagrams, grant_network, listener, port, udp_socket
from tests.conftest import FAST
from tests.fakeapi.tls import LocalCA
from tests.helpers import sandchat

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

EGRESS = Path(__file__).resolve().parent / "egress"
PROBE = "egress_probe"
#: FAST, with room for a call that runs a dozen network steps (or imports httpx) in one go.
DEADLINES = replace(FAST, first_chunk=10, idle=10, total=15)
NO_SUCH_HOST = "sandchat-no-such-host.invalid"


# -- the world the plugins reach -------------------------------------------------------------


@contextlib.contextmanager
def serving(server: socket.socket, handle: Callable[[socket.socket], None]) -> Iterator[None]:
    """Accept on ``server`` in a thread, ``handle`` each connection in its own; stop on exit."""

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes accept()
        server.close()
        thread.join(5)
        assert not thread.is_alive(), "the test server did not stop"


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HttpServer

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        if self.path == "/stream":  # three chunks, each flushed on its own
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                chunk = f"line {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        body = b"hello from the loopback"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpServer(ThreadingHTTPServer):
    """A real HTTP/1.1 server on 127.0.0.1 recording each request as (path, Host header)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HttpHandler)
        self.requests: list[tuple[str, str]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextlib.contextmanager
def http_server() -> Iterator[HttpServer]:
    server = HttpServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1: records each target, then relays bytes both ways.

    The target is recorded before the proxy answers 200, and the host's connect waits for
    that answer: once the plugin has replied, every tunnel it opened is in ``targets``.
    """

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = port(self.server)
        self.targets: list[str] = []

    def tunnel(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            _method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            self.targets.append(target)
            host, _, number = target.rpartition(":")
            try:
                upstream = socket.create_connection((host.strip("[]"), int(number)), timeout=5)
            except OSError:
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with upstream:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _relay(conn, upstream)


def _relay(a: socket.socket, b: socket.socket) -> None:
    import select

    peers = {a: b, b: a}
    while peers:
        ready, _, _ = select.select(list(peers), [], [], 10)
        if not ready:
            return
        for src in ready:
            data = src.recv(65536)
            if data:
                peers[src].sendall(data)
            else:  # one side finished: pass the end on, keep reading the other
                with contextlib.suppress(OSError):
                    peers[src].shutdown(socket.SHUT_WR)
                del peers[src]


@contextlib.contextmanager
def connect_proxy() -> Iterator[ConnectProxy]:
    proxy = ConnectProxy()
    with serving(proxy.server, proxy.tunnel):
        yield proxy


@contextlib.contextmanager
def tls_server(ca: LocalCA) -> Iterator[tuple[int, list[str]]]:
    """A TLS server for ``localhost`` that greets each client; yields its port and the SNI names it saw."""
    context = ca.server_context()
    names: list[str] = []
    context.sni_callback = lambda _sock, name, _ctx: names.append(str(name))  # type: ignore[assignment,func-returns-value]
    server = socket.create_server(("127.0.0.1", 0))

    def greet(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello over tls")

    with serving(server, greet):
        yield port(server), names


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): a connect to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return port(sock)


# -- the plugins -----------------------------------------------------------------------------


@contextlib.contextmanager
def egress(home: Path, *endpoints: str, plugin: str = PROBE, environ: Mapping[str, str] | None = None) -> Iterator[PluginManager]:
    """A manager over tests/egress (and the shipped echo) with ``plugin`` granted ``endpoints``."""
    with PluginManager([EGRESS], home=home, environ=environ, deadlines=DEADLINES) as manager:
        grant_network(manager, plugin, *endpoints)
        assert manager.handle(plugin).start()["sandbox"]["profile"] == "network"
        yield manager


def run(manager: PluginManager, *todo: list[Any]) -> list[dict[str, Any]]:
    """The probe's results for ``todo``, one per step, all run in its current process."""
    results = json.loads(manager.handle(PROBE).generate_response("", json.dumps(todo)))
    assert len(results) == len(todo), results
    return results


def failed(result: dict[str, Any], kind: str, code: int | None, words: str = "") -> bool:
    """True when the step failed with exception ``kind``, errno ``code`` and ``words`` in its message."""
    return not result["ok"] and (result["type"], result["errno"]) == (kind, code) and words in result["message"]


def refusal(endpoint: str) -> str:
    return f"the sandbox refused a connection to {endpoint} (not granted"


def direct_error(call: Callable[[], object]) -> tuple[str, int | None]:
    """The exception type and errno ``call`` raises here, outside any sandbox."""
    try:
        call()
    except OSError as exc:
        return type(exc).__name__, exc.errno
    raise AssertionError("the direct call was expected to fail")


# -- 1. a granted name is reachable, the usual ways ----------------------------------------------


@pytest.mark.timeout(30)
def test_a_granted_name_is_reachable_with_sockets_urllib_and_http_client(home: Path) -> None:
    with listener() as raw, http_server() as web:
        with egress(home, f"localhost:{port(raw)}", f"localhost:{web.port}") as manager:
            results = run(
                manager,
                ["connect", "localhost", port(raw), "by create_connection"],
                ["raw", "localhost", port(raw), "by socket().connect"],
                ["urllib", f"http://localhost:{web.port}/hello"],
                ["http_client", "localhost", web.port, "/client"],
            )
            assert [r["ok"] for r in results] == [True] * 4, results
            assert results[0]["value"] == results[1]["value"] == ["127.0.0.1", port(raw)]
            assert results[2]["value"] == results[3]["value"] == [200, "hello from the loopback"]
            assert accepted(raw) == [b"by create_connection", b"by socket().connect"]
            assert web.requests == [("/hello", f"localhost:{web.port}"), ("/client", f"localhost:{web.port}")]
            manager.handle(PROBE).network_use()  # its events are written off the connect's path: wait for them
            assert manager.events.counts(PROBE)["network_connected"] == 4


@pytest.mark.timeout(30)
def test_an_ipv6_literal_grant_reaches_that_address_and_no_name(home: Path) -> None:
    """``[::1]:P`` opens ::1 at P; ``localhost`` and 127.0.0.1 at P are refused (a listener waits there too)."""
    with contextlib.ExitStack() as stack:
        try:
            six = stack.enter_context(listener(socket.AF_INET6, ("::1", 0)))
            four = stack.enter_context(listener(address=("127.0.0.1", port(six))))
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback, or its port is taken on IPv4: {exc}")
        p = port(six)
        with egress(home, f"[::1]:{p}") as manager:
            literal, name, other = run(manager, ["connect", "::1", p, "v6"], ["connect", "localhost", p], ["connect", "127.0.0.1", p])
            assert literal["ok"] and literal["value"] == ["::1", p], literal
            assert failed(name, "PermissionError", errno.EACCES, refusal(f"localhost:{p}")), name
            assert failed(other, "PermissionError", errno.EACCES, refusal(f"127.0.0.1:{p}")), other
            assert accepted(six) == [b"v6"] and accepted(four) == []


# -- 2. everything else is refused, and nothing reaches a listener --------------------------------


INVALID = "the sandbox refused a connection to an invalid host name (not a host name or address a grant can name)"


@pytest.mark.timeout(30)
def test_only_the_granted_name_and_port_get_through(home: Path) -> None:
    """Attacked: another name for the same address (vm), the address itself before any lookup,
    another port of the granted name, odd numeric spellings libc reads as 127.0.0.1, kernel
    sockets (raw ``_socket``, a reloaded ``socket`` module), UDP and DNS of every kind."""
    with listener() as granted, listener() as other, udp_socket() as udp:
        p, u = port(granted), port(udp)
        with egress(home, f"localhost:{p}") as manager:
            attempts: list[tuple[list[Any], str, int | None, str]] = [
                (
                    ["connect", "127.0.0.1", p, "literal"],
                    "PermissionError",
                    errno.EACCES,
                    refusal(f"127.0.0.1:{p}"),
                ),  # first: nothing resolved yet
                (["connect", "vm", p, "other name"], "PermissionError", errno.EACCES, refusal(f"vm:{p}")),
                (["raw", "vm", p, "other name"], "PermissionError", errno.EACCES, refusal(f"vm:{p}")),
                (["connect", "localhost", port(other), "other port"], "PermissionError", errno.EACCES, refusal(f"localhost:{port(other)}")),
                (["connect", "2130706433", p], "PermissionError", errno.EACCES, INVALID),  # numbers libc reads as addresses
                (["connect", "0x7f.1", p], "PermissionError", errno.EACCES, INVALID),
                (["connect", "127.1", p], "PermissionError", errno.EACCES, INVALID),
                (["kernel", socket.AF_INET, socket.SOCK_STREAM], "PermissionError", errno.EPERM, ""),
                (["kernel", socket.AF_INET6, socket.SOCK_STREAM], "PermissionError", errno.EPERM, ""),
                (["reloaded", "127.0.0.1", p], "PermissionError", errno.EPERM, ""),
                (["udp", u], "PermissionError", errno.EACCES, "no UDP"),
                (["udp", u, True], "PermissionError", errno.EPERM, ""),
                (["getaddrinfo", "vm", p], "PermissionError", errno.EACCES, refusal(f"vm:{p}")),
                (["gethostbyname", "vm"], "PermissionError", errno.EACCES, refusal("vm")),
                (["dns", u, "vm"], "PermissionError", errno.EACCES, "no UDP"),
                (["dns", u, "vm", True], "PermissionError", errno.EPERM, ""),
            ]
            results = run(manager, *(step for step, *_ in attempts))
            for (step, kind, code, words), result in zip(attempts, results, strict=True):
                assert failed(result, kind, code, words), (step, result)
            lookup = run(manager, ["reloaded_lookup", "vm"])[0]  # libc's own resolver: no hosts file, no socket
            assert not lookup["ok"] and lookup["type"] == "gaierror", lookup
            assert accepted(granted) == [] and accepted(other) == [] and datagrams(udp) == []

            # The control, in the same process: the granted name works, and then its address
            # does too (the host handed it out for localhost) -- but vm still does not.
            control, literal, again = run(manager, ["connect", "localhost", p, "control"], ["connect", "127.0.0.1", p, "handed out"],
                                          ["connect", "vm", p, "other name"])  # fmt: skip
            assert control["ok"] and literal["ok"], (control, literal)
            assert failed(again, "PermissionError", errno.EACCES, refusal(f"vm:{p}")), again
            assert accepted(granted) == [b"control", b"handed out"]

            manager.handle(PROBE).stop()  # a new process: the host remembers addresses per process
            fresh = run(manager, ["connect", "127.0.0.1", p, "literal"])[0]
            assert failed(fresh, "PermissionError", errno.EACCES, refusal(f"127.0.0.1:{p}")), fresh
            assert accepted(granted) == [] and accepted(other) == []


# -- 4. everything normal keeps working --------------------------------------------------------------


@pytest.mark.timeout(30)
def test_options_timeouts_and_asyncio_behave_as_on_a_direct_socket(home: Path) -> None:
    with listener() as server:
        p = port(server)
        with egress(home, f"localhost:{p}") as manager:
            nodelay, timeouts, streams, nonblocking = run(manager, ["nodelay", "localhost", p], ["timeouts", "localhost", p],
                                                          ["streams", "localhost", p, "asyncio streams"],
                                                          ["nonblocking", "localhost", p, "sock_connect"])  # fmt: skip
            assert [r["ok"] for r in (nodelay, timeouts, streams, nonblocking)] == [True] * 4
            # TCP_NODELAY set before connect is read back from the kernel's socket after it.
            assert nodelay["value"] == {"before": 1, "kernel": 1, "default": 0, "type": socket.SOCK_STREAM, "proto": socket.IPPROTO_TCP}
            # The timeout (O_NONBLOCK underneath) is the plugin's, whatever the host's fd had.
            assert timeouts["value"] == {"create_connection": [2.5, False], "settimeout": [1.5, False], "blocking": [None, True]}
            assert streams["value"] == ["127.0.0.1", p]
            assert nonblocking["value"] == [0.0, False, ["127.0.0.1", p]]
            got = accepted(server)
            assert sorted(got) == sorted([b""] * 5 + [b"asyncio streams", b"sock_connect"]), got


@pytest.mark.timeout(30)
def test_async_httpx_gets_and_streams_through_the_broker(home: Path) -> None:
    """The HTTP stack of the shipped SDKs (httpx2, anyio) unchanged: a GET, a streamed reply, a refusal."""
    with http_server() as web:
        with egress(home, f"localhost:{web.port}", plugin="egress_httpx") as manager:
            said = json.loads(manager.handle("egress_httpx").generate_response("", json.dumps({"port": web.port})))
            assert said["get"] == [200, "hello from the loopback"]
            assert said["stream"] == ["line 0", "line 1", "line 2"]
            assert said["sync"] == [200, "hello from the loopback"]
            assert said["refused"][0] == "ConnectError" and refusal(f"vm:{web.port}") in said["refused"][1], said
            assert web.requests == [
                ("/hello", f"localhost:{web.port}"),
                ("/stream", f"localhost:{web.port}"),
                ("/hello", f"localhost:{web.port}"),
            ]


@pytest.mark.timeout(30)
def test_tls_over_a_brokered_connection_is_the_plugins_own(home: Path) -> None:
    """The host passes a plain TCP socket: the plugin's TLS, SNI and certificate check run on it."""
    ca = LocalCA()
    with tls_server(ca) as (p, names), egress(home, f"localhost:{p}") as manager:
        result = run(manager, ["tls", "localhost", p, ca.pem.decode()])[0]
        assert result["ok"] and result["value"][1] == "hello over tls", result
        assert result["value"][0] in ("TLSv1.2", "TLSv1.3") and names == ["localhost"]  # its SNI, its handshake


@pytest.mark.timeout(30)
def test_wrapping_an_unconnected_socket_then_connecting_works_as_the_ssl_docs_show(home: Path) -> None:
    ca = LocalCA()
    with tls_server(ca) as (p, names), egress(home, f"localhost:{p}") as manager:
        result = run(manager, ["tls_wrapped_first", "localhost", p, ca.pem.decode()])[0]
        assert result["ok"] and result["value"][1] == "hello over tls", result
        assert names == ["localhost"]


# -- 5. connection errors are the ones a direct connect raises --------------------------------------


@pytest.mark.timeout(30)
def test_connection_errors_arrive_as_a_direct_connect_raises_them(home: Path) -> None:
    closed = closed_port()
    with egress(home, f"localhost:{closed}", f"{NO_SUCH_HOST}:80") as manager:
        connect, connect_ex, unknown, lookup = run(manager, ["connect", "localhost", closed], ["connect_ex", "localhost", closed],
                                                   ["connect", NO_SUCH_HOST, 80], ["getaddrinfo", NO_SUCH_HOST, 80])  # fmt: skip
        assert failed(connect, *direct_error(lambda: socket.create_connection(("localhost", closed), timeout=5)))
        assert connect["type"] == "ConnectionRefusedError" and connect["errno"] == errno.ECONNREFUSED
        assert connect_ex == {"ok": True, "value": errno.ECONNREFUSED}
        kind, code = direct_error(lambda: socket.getaddrinfo(NO_SUCH_HOST, 80, 0, socket.SOCK_STREAM))
        assert kind == "gaierror" and failed(unknown, kind, code) and failed(lookup, kind, code), (unknown, lookup)
        manager.handle(PROBE).network_use()
        counts = manager.events.counts(PROBE)
        assert "network_refused" not in counts and "network_connected" not in counts  # failures, not refusals


@pytest.mark.timeout(30)
def test_a_service_name_the_resolver_rejects_is_a_gaierror_and_the_broker_lives_on(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    escaped: list[str] = []
    monkeypatch.setattr(
        threading, "excepthook", lambda args: escaped.append(f"{args.thread.name if args.thread else '?'}: {args.exc_value!r}")
    )
    with listener() as server:
        with egress(home, f"localhost:{port(server)}") as manager:
            lookup, after = run(manager, ["getaddrinfo", "localhost", "\u00b2"], ["connect", "localhost", port(server), "after"])
            for thread in threading.enumerate():
                if thread.name.startswith("sandchat-egress-"):
                    thread.join(2)
            assert escaped == []
            assert failed(lookup, *direct_error(lambda: socket.getaddrinfo("localhost", "\u00b2", 0, socket.SOCK_STREAM))), lookup
            assert after["ok"] and accepted(server) == [b"after"], after


@pytest.mark.timeout(30)
def test_lookups_honour_the_family_and_flags_asked(home: Path) -> None:
    with listener() as server:
        p = port(server)
        with egress(home, f"localhost:{p}") as manager:
            numeric, family = run(
                manager, ["getaddrinfo", "localhost", p, 0, socket.AI_NUMERICHOST], ["getaddrinfo", "127.0.0.1", p, socket.AF_INET6]
            )
            assert failed(
                numeric, *direct_error(lambda: socket.getaddrinfo("localhost", p, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST))
            ), numeric
            assert failed(family, *direct_error(lambda: socket.getaddrinfo("127.0.0.1", p, socket.AF_INET6, socket.SOCK_STREAM))), family


# -- 6. refusals are reported precisely ----------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_refusal_is_named_on_the_failed_call_and_in_the_health_log(home: Path) -> None:
    with listener() as server:
        p, closed = port(server), closed_port()
        with egress(home, f"localhost:{p}", f"localhost:{closed}") as manager:
            with pytest.raises(runner.PluginRaised) as raised:
                run(manager, ["raise", "vm", p, "x"])
            assert raised.value.refused == f"vm:{p}" and raised.value.remote_type == "PermissionError"
            fix = hint_for(manager, PROBE, raised.value)
            assert fix is not None and fix.network == (f"vm:{p}",)
            manager.handle(PROBE).network_use()
            refusals = [e for e in manager.events.events(PROBE) if e["event"] == "network_refused"]
            assert [e["endpoint"] for e in refusals] == [f"vm:{p}"]
            assert manager.events.counts(PROBE)["network_refused"] == 1
            # A later failure that is no refusal is not blamed on the earlier one.
            with pytest.raises(runner.PluginRaised) as later:
                run(manager, ["raise", "localhost", closed, "x"])
            assert later.value.remote_type == "ConnectionRefusedError" and later.value.refused == ""
            assert hint_for(manager, PROBE, later.value) is None
            assert accepted(server) == []


@pytest.mark.timeout(30)
def test_a_plugin_looping_on_refused_connects_writes_at_most_200_events(home: Path) -> None:
    with listener() as server:
        with egress(home, f"localhost:{port(server)}") as manager:
            assert run(manager, ["refused_many", "vm", port(server), 250])[0] == {"ok": True, "value": 250}
            manager.handle(PROBE).network_use()
            refusals = [e for e in manager.events.events(PROBE, limit=500) if e["event"] == "network_refused"]
            assert len(refusals) == manager.events.counts(PROBE)["network_refused"] == 200
            assert refusals[-1].get("more") == "not recorded" and not any("more" in e for e in refusals[:-1])
            assert accepted(server) == []


@pytest.mark.timeout(60)
def test_the_cli_names_the_refused_endpoint_and_health_counts_it(home: Path) -> None:
    (home / "plugins").mkdir()
    shutil.copy(EGRESS / f"{PROBE}_plugin.py", home / "plugins" / f"{PROBE}_plugin.py")
    with listener() as server:
        p = port(server)
        assert sandchat(home, "plugins", "grant", PROBE, "--network", f"localhost:{p}", "--yes").returncode == 0
        result = sandchat(home, "prompt", "-p", PROBE, json.dumps([["raise", "vm", p, "x"]]))
        assert result.returncode == 1 and result.stdout == ""
        hint = (
            f"sandchat: plugin '{PROBE}' tried to reach vm:{p}, which is not granted: run sandchat plugins grant {PROBE} --network vm:{p}"
        )
        lines = result.stderr.strip().splitlines()
        assert lines[-1] == hint and lines.count(hint) == 1, result.stderr
        health = sandchat(home, "plugins", "health", PROBE, "--json")
        report = json.loads(health.stdout)[0]
        assert report["refused_24h"] >= 1 and f"vm:{p}" in report["recent_refused"], report
        assert report["network"] == [f"localhost:{p}"]
        assert "egress-broker" in report["layers"]  # the host's own fact: it makes this plugin's connections
        assert accepted(server) == []


# -- 7. the user's proxy -------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_the_host_tunnels_granted_names_through_the_users_proxy(home: Path) -> None:
    """The proxy is told the granted name; the plugin never sees the proxy, and a refused name never reaches it."""
    closed = closed_port()
    with listener() as server, connect_proxy() as proxy:
        p = port(server)
        environ = {
            "HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}",
            "https_proxy": f"http://127.0.0.1:{proxy.port}",
            "ALL_PROXY": "http://127.0.0.1:1",
        }
        with egress(home, f"localhost:{p}", f"localhost:{closed}", environ=environ) as manager:
            refused, lookup, tunnelled, upstream_closed, env = run(manager, ["connect", "vm", p, "x"], ["getaddrinfo", "localhost", p],
                                                                   ["connect", "localhost", p, "through the proxy"],
                                                                   ["connect", "localhost", closed], ["env"])  # fmt: skip
            assert failed(refused, "PermissionError", errno.EACCES, refusal(f"vm:{p}")), refused
            assert lookup["ok"] and lookup["value"][0][1].startswith("198.18."), lookup  # a placeholder: the proxy resolves
            assert tunnelled["ok"] and tunnelled["value"] == ["127.0.0.1", proxy.port], tunnelled
            assert upstream_closed["type"] == "ConnectionRefusedError", upstream_closed  # the proxy's 502
            assert env == {"ok": True, "value": []}
            assert proxy.targets == [f"localhost:{p}", f"localhost:{closed}"]
            assert accepted(server) == [b"through the proxy"]


@pytest.mark.timeout(30)
def test_no_proxy_names_are_reached_directly(home: Path) -> None:
    with listener() as server, connect_proxy() as proxy:
        p = port(server)
        environ = {"HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}", "NO_PROXY": "example.com,localhost"}
        with egress(home, f"localhost:{p}", environ=environ) as manager:
            lookup, direct = run(manager, ["getaddrinfo", "localhost", p], ["connect", "localhost", p, "direct"])
            assert lookup["value"] == [[socket.AF_INET, "127.0.0.1", p]] and direct["value"] == ["127.0.0.1", p]
            assert proxy.targets == [] and accepted(server) == [b"direct"]
