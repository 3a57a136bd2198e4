# /// plugin
# description = "Attack (network profile): speak the egress channel's wire format directly, with hostile frames."
# ///
"""Finds its end of the host's network broker and writes frames of its own on it.

user_message: JSON {"attack": NAME, "port": the granted port, "payload": bytes to send
on a connection the adapter makes afterwards, "after": false to make none}. Answers JSON: how the fd was found (by
every method that works), what the host answered (``reply``, ``fds`` passed back,
``eof`` when the host closed the channel), what a normal connect did afterwards
(``after``), and attack-specific facts.
"""
import json
import os
import select
import socket
import struct
import sys

from llm_utils import LLMClient


def _from_argv(argv):
    return int(argv[argv.index("--egress") + 1]) if "--egress" in argv else None


def _from_cmdline():
    try:
        with open("/proc/self/cmdline", "rb") as f:
            return _from_argv([arg.decode() for arg in f.read().split(b"\0")])
    except OSError as exc:
        return f"{type(exc).__name__} {exc.errno}"


def _from_scan():
    found = []
    for fd in range(3, 256):
        try:
            copy = os.dup(fd)
        except OSError:
            continue
        try:
            probe = socket.socket(fileno=copy)
        except OSError:
            os.close(copy)  # not a socket
            continue
        with probe:
            if probe.family == socket.AF_UNIX and probe.type == socket.SOCK_STREAM:
                found.append(fd)
    return found


def _frame(body):
    return struct.pack(">I", len(body)) + body


def _request(**fields):
    return _frame(json.dumps(fields).encode())


def _answer(chan, seconds=5.0):
    """The host's next frame (and any fds with it), or eof, or nothing within ``seconds``."""
    poller = select.poll()
    poller.register(chan.fileno(), select.POLLIN)
    data, fds = b"", []
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        if not poller.poll(seconds * 1000):
            return {"silent": True, "fds": len(fds)}
        chunk, got, _flags, _addr = socket.recv_fds(chan, 65536, 4)
        fds += got
        if not chunk:
            return {"eof": True, "fds": len(fds)}
        data += chunk
    for fd in fds:
        os.close(fd)
    return {"reply": json.loads(data[4:]), "fds": len(fds)}


def _send_fd(chan, port):
    """A frame carrying an fd whose other end we keep: EOF on it means the host holds no copy."""
    mine, given = socket.socketpair()
    socket.send_fds(chan, [_request(op="resolve", host="localhost", port=port, family=0, flags=0)], [given.fileno()])
    given.close()
    answer = _answer(chan)
    poller = select.poll()
    poller.register(mine.fileno(), select.POLLIN)
    released = bool(poller.poll(5000)) and mine.recv(1) == b""
    return {**answer, "released": released}


def _flood(chan, port):
    """Requests without reading one answer: the host blocks writing, on this plugin's channel only."""
    chan.setblocking(False)
    sent = 0
    try:
        for _ in range(100000):
            chan.send(_request(op="resolve", host="localhost", port=port, family=0, flags=0))
            sent += 1
    except BlockingIOError:
        pass
    finally:
        chan.setblocking(True)
    return {"sent": sent}


ATTACKS = {
    "connect_literal": lambda chan, port: _request(op="connect", host="127.0.0.1", port=port, family=2, timeout=None),
    "connect_name": lambda chan, port: _request(op="connect", host="vm", port=port, family=2, timeout=None),
    "connect_decimal": lambda chan, port: _request(op="connect", host="2130706433", port=port, family=2, timeout=None),
    "connect_hex": lambda chan, port: _request(op="connect", host="0x7f.1", port=port, family=2, timeout=None),
    "connect_short": lambda chan, port: _request(op="connect", host="127.1", port=port, family=2, timeout=None),
    "resolve_decimal": lambda chan, port: _request(op="resolve", host="2130706433", port=port, family=0, flags=0),
    "resolve_ungranted": lambda chan, port: _request(op="resolve", host="vm", port=port, family=0, flags=0),
    "oversized": lambda chan, port: _frame(b'{"op":"resolve","host":"' + b"a" * 4000 + b'"}'),
    "huge_length": lambda chan, port: b"\xff\xff\xff\xff",
    "malformed": lambda chan, port: _frame(b'{"op": "connect", "host": '),
    "not_an_object": lambda chan, port: _frame(b'["connect", "127.0.0.1", 80]'),
    "extra_fields": lambda chan, port: _request(op="connect", host="127.0.0.1", port=port, family=2, timeout=None, via="localhost"),
    "bool_port": lambda chan, port: _request(op="connect", host="127.0.0.1", port=True, family=2, timeout=None),
    "service_digit": lambda chan, port: _request(op="resolve", host="vm", port="\u00b2", family=0, flags=0),
    "service_nul": lambda chan, port: _request(op="resolve", host="vm", port="http\u0000", family=0, flags=0),
}


class EgressWire(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        order = json.loads(user_message)
        fd = _from_argv(sys.argv)
        found = {"argv": fd, "cmdline": _from_cmdline(), "scan": _from_scan()}
        chan = socket.socket(fileno=os.dup(fd))  # the same channel; our own object, the adapter's untouched
        name, port = order["attack"], order["port"]
        if name == "scm_rights":
            result = _send_fd(chan, port)
        elif name == "flood":
            result = _flood(chan, port)
        else:
            try:
                chan.sendall(ATTACKS[name](chan, port))
                result = _answer(chan)
            except OSError as exc:  # the host stopped reading mid-frame and closed the channel
                result = {"sent": f"{type(exc).__name__} {exc.errno}", "eof": True, "fds": 0}
        if order.get("after", True):  # then a connect the ordinary way, through the adapter
            try:
                with socket.create_connection(("localhost", port), timeout=5) as sock:
                    sock.sendall(order["payload"].encode())
                result["after"] = "connected"
            except OSError as exc:
                result["after"] = f"{type(exc).__name__} {exc.errno}"
        chan.close()
        return json.dumps({"found": found, **result})

    def count_tokens(self, text):
        return len(text.split())
