# /// plugin
# description = "Egress probe: network steps on request (connect, lookups, UDP, options), one JSON result each."
# ///
"""Runs a JSON list of steps ``[kind, args...]``; answers a JSON list, one result per step.

A result is ``{"ok": true, "value": ...}`` or ``{"ok": false, "type": "PermissionError",
"errno": 13, "message": "..."}``. Step ``raise`` lets its error propagate (the call fails).
Used granted (the network profile) by tests/test_egress.py.
"""
import _socket
import asyncio
import http.client
import importlib
import json
import os
import socket
import ssl
import urllib.request

from llm_utils import LLMClient


def _connect(host, port, payload="", timeout=5):
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload.encode())
        return sock.getpeername()[:2]


def _raw(host, port, payload=""):
    with socket.socket() as sock:
        sock.connect((host, port))
        sock.sendall(payload.encode())
        return sock.getpeername()[:2]


def _connect_ex(host, port):
    with socket.socket() as sock:
        return sock.connect_ex((host, port))


def _urllib(url):
    with urllib.request.urlopen(url, timeout=5) as reply:
        return [reply.status, reply.read().decode()]


def _http_client(host, port, path):
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return [reply.status, reply.read().decode()]
    finally:
        conn.close()


def _kernel(family, kind):
    _socket.socket(family, kind).close()  # the C type, not the adapted Python class


def _reloaded(host, port):
    saved = dict(socket.__dict__)
    fresh = importlib.reload(socket)  # the module as the standard library wrote it: no adapter
    try:
        with fresh.socket(fresh.AF_INET, fresh.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect((host, port))
            sock.sendall(b"past the adapter")
    finally:
        socket.__dict__.update(saved)  # the adapted module again, for the steps after this one


def _reloaded_lookup(host):
    saved = dict(socket.__dict__)
    fresh = importlib.reload(socket)
    try:
        return [info[4][0] for info in fresh.getaddrinfo(host, 53)]
    finally:
        socket.__dict__.update(saved)


def _udp(port, raw=False):
    kind = _socket.socket if raw else socket.socket
    with kind(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"datagram", ("127.0.0.1", port))


def _dns_query(name):
    """A DNS query for ``name`` (type A, recursion desired), as a resolver would send it."""
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + labels + b"\x00\x00\x01\x00\x01"


def _dns(port, name, raw=False):
    kind = _socket.socket if raw else socket.socket
    with kind(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(_dns_query(name), ("127.0.0.1", port))


def _nodelay(host, port):
    with socket.socket() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        before = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        sock.connect((host, port))
        kernel = _socket.socket.getsockopt(sock, socket.IPPROTO_TCP, socket.TCP_NODELAY)  # past the adapter
        kind = _socket.socket.getsockopt(sock, socket.SOL_SOCKET, socket.SO_TYPE)
        proto = _socket.socket.getsockopt(sock, socket.SOL_SOCKET, socket.SO_PROTOCOL)
    with socket.create_connection((host, port), timeout=5) as plain:
        default = _socket.socket.getsockopt(plain, socket.IPPROTO_TCP, socket.TCP_NODELAY)
    return {"before": before, "kernel": kernel, "default": default, "type": kind, "proto": proto}


def _timeouts(host, port):
    with socket.create_connection((host, port), timeout=2.5) as sock:
        created = [sock.gettimeout(), os.get_blocking(sock.fileno())]
    with socket.socket() as sock:
        sock.settimeout(1.5)
        sock.connect((host, port))
        set_before = [sock.gettimeout(), os.get_blocking(sock.fileno())]
    with socket.socket() as sock:
        sock.connect((host, port))
        blocking = [sock.gettimeout(), os.get_blocking(sock.fileno())]
    return {"create_connection": created, "settimeout": set_before, "blocking": blocking}


async def _streams(host, port, payload):
    _reader, writer = await asyncio.open_connection(host, port)
    writer.write(payload.encode())
    await writer.drain()
    peer = writer.get_extra_info("peername")[:2]
    writer.close()
    await writer.wait_closed()
    return peer


async def _nonblocking(host, port, payload):
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    with socket.socket(infos[0][0], socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, infos[0][4])
        await loop.sock_sendall(sock, payload.encode())
        return [sock.gettimeout(), os.get_blocking(sock.fileno()), sock.getpeername()[:2]]


def _tls(host, port, cadata):
    """TLS over a connection the host made: the certificate and SNI are the plugin's business."""
    context = ssl.create_default_context(cadata=cadata)
    with socket.create_connection((host, port), timeout=5) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        return [tls.version(), tls.recv(100).decode()]


def _tls_wrapped_first(host, port, cadata):
    """The ssl module's documented client: wrap an unconnected socket, then connect it."""
    context = ssl.create_default_context(cadata=cadata)
    with context.wrap_socket(socket.socket(socket.AF_INET), server_hostname=host) as tls:
        tls.settimeout(5)
        tls.connect((host, port))
        return [tls.version(), tls.recv(100).decode()]


def _refused_many(host, port, times):
    refused = 0
    for _ in range(times):
        try:
            socket.create_connection((host, port), timeout=5).close()
        except PermissionError:
            refused += 1
    return refused


def _lookup(host, port, family=0, flags=0):
    return [[int(info[0]), *info[4][:2]] for info in socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, flags)]


STEPS = {
    "connect": _connect,
    "raw": _raw,
    "connect_ex": _connect_ex,
    "urllib": _urllib,
    "http_client": _http_client,
    "kernel": _kernel,
    "reloaded": _reloaded,
    "reloaded_lookup": _reloaded_lookup,
    "udp": _udp,
    "dns": _dns,
    "getaddrinfo": _lookup,
    "gethostbyname": socket.gethostbyname,
    "nodelay": _nodelay,
    "timeouts": _timeouts,
    "streams": lambda *args: asyncio.run(_streams(*args)),
    "nonblocking": lambda *args: asyncio.run(_nonblocking(*args)),
    "tls": _tls,
    "tls_wrapped_first": _tls_wrapped_first,
    "refused_many": _refused_many,
    "env": lambda: sorted(key for key in os.environ if "proxy" in key.lower()),
}


def _run(kind, args):
    try:
        return {"ok": True, "value": STEPS[kind](*args)}
    except Exception as exc:  # OSError mostly; anything else is reported as it is, not hidden
        return {"ok": False, "type": type(exc).__name__, "errno": getattr(exc, "errno", None), "message": str(exc)}


class EgressProbe(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        results = []
        for kind, *args in json.loads(user_message):
            if kind == "raise":
                _connect(*args)  # the error is the call's: the host's record names the endpoint
            results.append(_run(kind, args))
        return json.dumps(results)

    def count_tokens(self, text):
        return len(text.split())
