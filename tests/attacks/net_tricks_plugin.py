"""Attack (network profile): reach what the grant does not name through socket corners.

Found by an outside review: TCP Fast Open (``sendto(MSG_FASTOPEN)``) connected and sent
without Landlock's connect check; ``listen()`` without ``bind()`` autobound a port anyone
on the machine could reach; a ``socketpair(AF_UNIX, SOCK_DGRAM)`` could ``sendto()`` any
pathname datagram socket (``/dev/log``, journald).

user_message: JSON {"attacks": [names], "port": an ungranted port with a listener,
"unix_dgram": a pathname datagram socket}. One line per attack: BLOCKED or LEAKED.
"""
import json
import importlib
import socket

from llm_utils import LLMClient

# Past the runner's socket layer (which refuses these in Python first): straight to the kernel.
socket = importlib.reload(socket)

MSG_FASTOPEN = 0x20000000
TCP_FASTOPEN_CONNECT = 30


def _fast_open(order):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.sendto(b"exfiltrated", MSG_FASTOPEN, ("127.0.0.1", order["port"]))
    return "sent with TCP Fast Open"


def _fast_open_connect(order):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
        sock.connect(("127.0.0.1", order["port"]))
        sock.sendall(b"exfiltrated")
    return "sent through TCP_FASTOPEN_CONNECT"


def _listen(order):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.listen(1)
    return f"listening on {sock.getsockname()}"


def _bind(order):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return f"bound {sock.getsockname()}"


def _dgram_pair(order):
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    left.sendto(b"exfiltrated", order["unix_dgram"])
    return "sent to the pathname socket"


def _unix_dgram(order):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.sendto(b"exfiltrated", order["unix_dgram"])
    return "sent to the pathname socket"


def _stream_pair_sendto(order):
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left.sendto(b"exfiltrated", order["unix_dgram"])
    return "sent to the pathname socket"


def _udp_sendto(order):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"exfiltrated", ("127.0.0.1", order["port"]))
    return "sent a datagram"


def _bind_to_device(order):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")  # pick an egress around a VPN
    return "bound to a device"


def _netlink(order):
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()
    return "opened a netlink socket"


ATTACKS = {
    "sendto MSG_FASTOPEN": _fast_open,
    "TCP_FASTOPEN_CONNECT": _fast_open_connect,
    "listen without bind": _listen,
    "bind": _bind,
    "socketpair AF_UNIX SOCK_DGRAM + sendto path": _dgram_pair,
    "socket AF_UNIX SOCK_DGRAM + sendto path": _unix_dgram,
    "socketpair AF_UNIX SOCK_STREAM + sendto path": _stream_pair_sendto,
    "UDP sendto an address": _udp_sendto,
    "netlink socket": _netlink,
    "SO_BINDTODEVICE": _bind_to_device,
}


class NetTricks(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        order = json.loads(user_message)
        lines = []
        for name in order["attacks"]:
            try:
                result = ATTACKS[name](order)
            except OSError as exc:
                lines.append(f"BLOCKED: {name}: {type(exc).__name__} {exc.errno} {exc.strerror}")
            else:
                lines.append(f"LEAKED: {name}: {result}")
        return "\n".join(lines)

    def count_tokens(self, text):
        return len(text.split())
