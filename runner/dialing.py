"""The network broker's outbound TCP: a connect to an address already checked, or a tunnel through the user's proxy.

The broker (runner/egress.py) decides what a plugin may reach; these functions only
make the connection it allowed, bounded by ``timeout``, and close the socket on any
failure. The proxy's reply is hostile too: it is read up to 16 KiB, and anything but a
plain ``200`` with no bytes after its head refuses the tunnel.
"""

from __future__ import annotations

import errno
import socket

from runner.endpoints import Proxy, spell

__all__ = ["direct", "through_proxy"]

_PROXY_REPLY = 16 * 1024


def direct(family: int, address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to an IP literal (no lookup: the address is already checked)."""
    conn = socket.socket(family, socket.SOCK_STREAM)
    try:
        conn.settimeout(timeout)
        conn.connect((address, port))
        return conn
    except BaseException:
        conn.close()
        raise


def through_proxy(proxy: Proxy, host: str, port: int, timeout: float) -> socket.socket:
    """A connection to ``host:port`` tunnelled through ``proxy`` with HTTP CONNECT."""
    conn = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    try:
        target = spell(host, port)
        auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
        conn.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n".encode("ascii"))
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = conn.recv(4096)
            if not chunk or len(reply) > _PROXY_REPLY:
                raise OSError(errno.ECONNRESET, f"the proxy {proxy} closed the tunnel to {target}")
            reply += chunk
        head, _, rest = reply.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status.split(" ", 2)
        if len(parts) < 2 or parts[1] != "200" or rest:
            raise OSError(errno.ECONNREFUSED, f"the proxy {proxy} refused a tunnel to {target}: {status[:120]}")
        return conn
    except BaseException:
        conn.close()
        raise
