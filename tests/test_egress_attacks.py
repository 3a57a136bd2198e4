"""Hostile plugins against the network broker itself, and the network attacks under a name grant.

``egress_wire`` (``tests/egress/``) finds its end of the broker's channel (``--egress FD``
in its argv; ``/proc/self/cmdline`` is closed to it, a scan of its fds finds the same
socket) and writes frames of its own: connect requests the grant does not cover, numeric
spellings libc would read as 127.0.0.1, frames too big, broken or with extra fields, a
file descriptor, a flood. Each test asserts what the host answered, that no listener saw
a contact the grant does not allow, that no exception escaped a host thread, and that the
host is unharmed: the echo plugin in the same manager answers and the canaries hold.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from app import PluginManager
from tests.attackkit import (
    ATTACKS,
    Host,
    accepted,
    assert_host_healthy,
    attack,
    datagrams,
    errnos,
    grant_network,
    listener,
    port,
    udp_socket,
)
from tests.test_attacks_syscalls import NETWORK_CLASSES
from tests.test_egress import DEADLINES, egress

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")

WIRE = "egress_wire"

#: Frames the host answers with a refusal, naming what was asked; the broker goes on.
REFUSED = {
    "connect_literal": "127.0.0.1",  # an address no lookup in this process handed out
    "connect_name": "vm",  # a connect names an address, never a name
    "connect_decimal": None,  # numbers libc would read as addresses: no host at all, shown as such
    "connect_hex": None,
    "connect_short": None,
    "resolve_decimal": None,
    "resolve_ungranted": "vm",
}
#: Frames that break the format: the host stops answering this process (docs/security.md 2.5).
BREAKING = ["oversized", "huge_length", "malformed", "not_an_object", "extra_fields", "bool_port"]


def wire(manager: PluginManager, name: str, p: int, after: bool = True) -> dict[str, Any]:
    said = json.loads(
        manager.handle(WIRE).generate_response("", json.dumps({"attack": name, "port": p, "payload": "after", "after": after}))
    )
    found = said.pop("found")
    assert found["argv"] is not None and found["scan"] == [found["argv"]], found  # the one AF_UNIX stream it holds
    assert found["cmdline"] == f"PermissionError {errno.EACCES}", found  # Landlock: no /proc
    return said


def escaped_exceptions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Exceptions that end a host thread from now on (the broker's thread is joined before reading)."""
    escaped: list[str] = []
    monkeypatch.setattr(
        threading, "excepthook", lambda args: escaped.append(f"{args.thread.name if args.thread else '?'}: {args.exc_value!r}")
    )
    return escaped


def broker_threads_done(seconds: float = 5) -> bool:
    threads = [t for t in threading.enumerate() if t.name.startswith("sandchat-egress-")]
    for thread in threads:
        thread.join(seconds)
    return not any(t.is_alive() for t in threads)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_request_for_what_is_not_granted_is_refused_on_the_wire(home: Path, host: Host, name: str) -> None:
    with listener() as server:
        p = port(server)
        with egress(home, f"localhost:{p}", plugin=WIRE) as manager:
            said = wire(manager, name, p)
            refused = f"{REFUSED[name]}:{p}" if REFUSED[name] else "an invalid host name"
            assert said["reply"]["ok"] is False and said["reply"]["refused"] == refused and said["fds"] == 0, said
            assert said["after"] == "connected"  # the broker answers on
            assert accepted(server) == [b"after"]  # the honest connect, and nothing before it
            manager.handle(WIRE).network_use()  # its events are written off the connect's path: wait for them
            assert [e["endpoint"] for e in manager.events.events(WIRE) if e["event"] == "network_refused"] == [refused]
            assert_host_healthy(manager, host)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", [*BREAKING, "service_digit"])
def test_a_malformed_frame_ends_the_broker_and_nothing_else(home: Path, host: Host, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Oversized, unparsable, not an object, extra fields, wrong types, service names the
    resolver chokes on: the host closes this plugin's channel; its later connects fail."""
    escaped = escaped_exceptions(monkeypatch)
    with listener() as server:
        p = port(server)
        with egress(home, f"localhost:{p}", plugin=WIRE) as manager:
            said = wire(manager, name, p)
            assert said.get("eof") is True and said["fds"] == 0, said
            assert said["after"].split()[0] in ("BrokenPipeError", "ConnectionResetError", "ConnectionAbortedError"), said
            assert accepted(server) == []
            assert broker_threads_done() and escaped == []
            assert_host_healthy(manager, host)
            manager.handle(WIRE).stop()  # a new process gets a new broker
            assert wire(manager, "connect_name", p)["after"] == "connected" and accepted(server) == [b"after"]


@pytest.mark.timeout(30)
def test_a_file_descriptor_sent_to_the_host_is_dropped(home: Path, host: Host) -> None:
    """SCM_RIGHTS on the channel: the host reads with recv(), so the kernel closes what was sent.
    Another network plugin runs beside it: its broker's channel is not among the fds in reach."""
    with listener() as server:
        p = port(server)
        with egress(home, f"localhost:{p}") as manager:  # egress_probe, started: a second broker in this host
            grant_network(manager, WIRE, f"localhost:{p}")
            said = wire(manager, "scm_rights", p)  # wire(): one AF_UNIX stream in reach, its own
            assert said["reply"] == {"ok": True, "addrs": [[socket.AF_INET, "127.0.0.1", p]]} and said["fds"] == 0, said
            assert said["released"] is True  # the other end saw EOF: no copy of the fd lives in the host
            assert said["after"] == "connected" and accepted(server) == [b"after"]
            assert_host_healthy(manager, host)


@pytest.mark.timeout(30)
def test_a_plugin_flooding_the_channel_blocks_only_its_own_broker(home: Path, host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests without reading an answer: the host's broker thread blocks writing, the chat does not."""
    escaped = escaped_exceptions(monkeypatch)
    with listener() as server:
        p = port(server)
        with egress(home, f"localhost:{p}", plugin=WIRE) as manager:
            said = wire(manager, "flood", p, after=False)
            assert said["sent"] > 10, said  # it got that far before the channel filled up
            assert_host_healthy(manager, host)
            manager.handle(WIRE).stop()  # the child's death unblocks the host's write
            assert broker_threads_done() and escaped == []
            assert accepted(server) == []


# -- the attack plugins of tests/attacks/, granted a name --------------------------------------------


@pytest.mark.timeout(60)
def test_network_attacks_stay_refused_under_a_name_grant(home: Path, host: Host, tmp_path: Path) -> None:
    """tests/test_attacks*.py grant 127.0.0.1:P; here the grant is ``localhost:P``. The
    address without a lookup, other names and ports, UDP and unix sockets, and every socket
    corner (Fast Open, listen, bind, datagram pairs, netlink, MPTCP, SCTP, raw) fail."""
    with listener() as granted, listener() as other, udp_socket() as udp:
        p = port(granted)
        with PluginManager([ATTACKS], home=home, deadlines=DEADLINES) as manager:
            for name in ("net_probe", "net_tricks", "odd_sockets"):
                grant_network(manager, name, f"localhost:{p}")
                assert manager.handle(name).start()["sandbox"]["profile"] == "network"
            probes = [["tcp", "127.0.0.1", p], ["tcp", "vm", p], ["tcp", "localhost", port(other)], ["udp", "localhost", port(udp)],
                      ["unix", str(tmp_path / "none.sock")], ["abstract", "sandchat-egress-test"]]  # fmt: skip
            lines = attack(manager, "net_probe", json.dumps(probes))
            assert errnos(lines) == [errno.EACCES] * 4 + [errno.EPERM] * 2, lines
            order = {"attacks": NETWORK_CLASSES, "port": p, "unix_dgram": str(tmp_path / "none.sock")}
            assert errnos(attack(manager, "net_tricks", json.dumps(order))) == [errno.EPERM] * len(NETWORK_CLASSES)
            assert errnos(attack(manager, "odd_sockets", str(p))) == [errno.EPERM] * 6
            assert accepted(granted) == [] and accepted(other) == [] and datagrams(udp) == []
            control = manager.handle("net_probe").generate_response("", json.dumps([["tcp", "localhost", p]]))
            assert control.startswith("SENT: tcp") and accepted(granted) == [b"hello from net_probe"]
            assert_host_healthy(manager, host)


@pytest.mark.timeout(30)
def test_a_service_name_with_a_nul_is_an_unknown_service_and_the_broker_answers_on(
    home: Path, host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """getservbyname() raises ValueError on a NUL: answered as the resolver would (EAI_SERVICE)."""
    escaped = escaped_exceptions(monkeypatch)
    with listener() as server:
        p = port(server)
        with egress(home, f"localhost:{p}", plugin=WIRE) as manager:
            said = wire(manager, "service_nul", p)
            assert said["reply"] == {"ok": False, "gai": socket.EAI_SERVICE, "message": "Servname not supported for ai_socktype"}, said
            assert said["after"] == "connected" and accepted(server) == [b"after"] and escaped == []
            assert_host_healthy(manager, host)
