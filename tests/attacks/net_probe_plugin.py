# /// plugin
# description = "Network probe for the grant tests: TCP, UDP and unix sockets on request."
# ///
"""Network probe: runs a JSON list of [kind, target...] steps; one BLOCKED/SENT line each.

Steps: ["tcp", host, port], ["udp", host, port], ["unix", path], ["abstract", name].
Used both granted (the network profile) and ungranted (untrusted).
"""
import json
import socket

from llm_utils import LLMClient


def _tcp(host, port):
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"hello from net_probe")


def _udp(host, port):
    # connect + send: sendto() with an address is refused by the filter; a connected UDP
    # socket still reaches any port (Landlock has no UDP rules), the residual risk.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        sock.send(b"hello from net_probe")


def _unix(address):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(address)


class NetProbe(LLMClient):
    def generate_response(self, system, user_message, max_tokens=4096, temperature=0.8):
        lines = []
        for kind, *target in json.loads(user_message):
            action = {"tcp": lambda: _tcp(*target), "udp": lambda: _udp(*target),
                      "unix": lambda: _unix(target[0]), "abstract": lambda: _unix("\0" + target[0])}[kind]
            try:
                action()
            except OSError as exc:
                lines.append(f"BLOCKED: {kind} {target}: {type(exc).__name__} {exc.errno} {exc.strerror}")
            else:
                lines.append(f"SENT: {kind} {target}")
        return "\n".join(lines)

    def count_tokens(self, text):
        return len(text.split())
