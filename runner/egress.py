"""The host's end of a plugin's network: grants checked by name, connections made here.

A network-profile child can create no socket of its own (seccomp refuses ``socket()`` and
``connect()``). Its only way out is this broker, on a private AF_UNIX stream pair: it asks
to resolve a name, and the host answers only for granted names, resolving them itself and
remembering which addresses it handed out for which name; it asks to connect to an
address, and the host connects only when that address and port belong to a granted name
(or are a granted IP literal), then passes the connected socket back with SCM_RIGHTS.
TLS, SNI and certificates stay the plugin's business: the host moves no byte of the
connection. The user's HTTP(S) proxy is honoured here, with CONNECT, so the grant still
applies to the name the plugin asked for. Every request is hostile input: size-capped,
type-checked, answered one at a time, and a malformed one ends the broker (the plugin's
connections then fail; the chat does not).
"""

from __future__ import annotations

import collections
import errno
import ipaddress
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner.dialing import direct, through_proxy
from runner.endpoints import Endpoint, Proxies, host_key, is_literal, is_local_name, spell
from runner.netwire import MAX_REQUEST, check_request, decode, encode

__all__ = ["Egress", "EgressPolicy", "EgressUse"]

#: Told about each connection made or refused: (event, details).
Emit = Callable[[str, dict[str, Any]], None]

_MAX_ADDRESSES = 64  # of one name's answer
_MAX_REMEMBERED = 4096  # addresses handed out, per process
_MAX_EVENTS = 200  # per process: a plugin looping on connect must not fill the health log
_RECENT = 5
_SYNTHETIC = ipaddress.ip_network("198.18.0.0/15")  # RFC 2544 test addresses, for proxied names
#: What a refusal of a host that is no host at all is recorded as: never a grant to propose.
INVALID_HOST = "an invalid host name"
#: Pacing, in tokens: each request costs one, a refused or failed one ten more; tokens
#: refill at _RATE a second up to _BURST. Answers are serial, so successful connects are
#: bounded by their target's round trip anyway; a flood of refusals (cheap to ask, each a
#: health-log event) is slowed to 500 a second, so a broker costs the host little CPU.
_RATE, _BURST, _FAILED_COST = 5000.0, 10000.0, 10.0


@dataclass(frozen=True)
class EgressPolicy:
    """What one plugin may reach: granted endpoints, the user's proxies, and time bounds."""

    endpoints: tuple[Endpoint, ...] = ()
    proxies: Proxies = Proxies()
    connect_timeout: float = 30.0  # the longest a connect may take, whatever the plugin asks

    def __post_init__(self) -> None:
        if not all(isinstance(e, Endpoint) for e in self.endpoints):
            raise TypeError("EgressPolicy.endpoints must be Endpoint values (runner.endpoints.parse_endpoint)")
        if not 0 < self.connect_timeout <= 600:
            raise ValueError(f"connect_timeout must be 0-600 seconds, got {self.connect_timeout!r}")


@dataclass(frozen=True)
class EgressUse:
    """What a plugin process did with the network so far: counts and the latest endpoints."""

    connected: int = 0
    refused: int = 0
    recent_connected: tuple[str, ...] = ()
    recent_refused: tuple[str, ...] = ()
    last_refused: str = ""  # "HOST:PORT" of the newest refusal
    last_refused_at: float = 0.0  # time.monotonic() of it


class _Refused(Exception):
    def __init__(self, endpoint: str, why: str = "") -> None:
        self.endpoint = endpoint
        self.why = why


class Egress:
    """One plugin process's broker: a socket pair and a thread answering the child's asks."""

    def __init__(self, name: str, policy: EgressPolicy, emit: Emit | None = None) -> None:
        self.name = name
        self.policy = policy
        self._emit = emit
        self._sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.child_fd = child.detach()  # inherited by the child; close_child_end() after the spawn
        self._handed: dict[str, set[str]] = {}  # address -> granted names it was handed out for
        self._synthetic: dict[str, str] = {}  # address -> name, for names reached through a proxy
        self._lock = threading.Lock()
        self._connected = self._refused = self._events = 0
        self._recent_ok: collections.deque[str] = collections.deque(maxlen=_RECENT)
        self._recent_refused: collections.deque[str] = collections.deque(maxlen=_RECENT)
        self._last_refused, self._last_refused_at = "", 0.0
        self._thread = threading.Thread(target=self._run, name=f"sandchat-egress-{name}", daemon=True)
        self._closed = self._started = False
        self._tokens, self._refilled = _BURST, time.monotonic()
        # Events reach the listener (the health log: a SQLite commit, milliseconds) from a
        # thread of their own, so no connect waits on a disk.
        self._events_out: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self._recorder: threading.Thread | None = None
        self._queued = self._written = 0
        self._drained = threading.Condition(self._lock)

    def start(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._started = True
        self._thread.start()

    def close_child_end(self) -> None:
        """Close the host's copy of the child's end (the child has its own once spawned)."""
        fd, self.child_fd = self.child_fd, -1
        if fd >= 0:
            socket.close(fd)

    def close(self) -> None:
        """End the broker at once; safe to call twice, from any thread.

        The thread closes its own socket on the way out: closing it here while the thread
        sits in recv() could let a reused fd number be read. A connect in progress ends
        on its own time bound, and its answer then has nowhere to go.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
        self.close_child_end()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the thread out of recv()
        except OSError:
            pass
        if not started:
            self._sock.close()
        with self._lock:
            recorder = self._recorder
            self._events_out.put(None)
        if recorder is not None and recorder is not threading.current_thread():
            recorder.join(5.0)  # what the plugin did is in the log before its process is gone

    def use(self) -> EgressUse:
        with self._lock:
            return EgressUse(
                self._connected,
                self._refused,
                tuple(self._recent_ok),
                tuple(self._recent_refused),
                self._last_refused,
                self._last_refused_at,
            )

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._sock.close()

    def _serve(self) -> None:
        buffered = b""
        while True:
            try:
                data = self._sock.recv(MAX_REQUEST + 4)  # recv, not recvmsg: fds the child sends are dropped
            except OSError:
                return
            if not data:
                return
            buffered += data
            while True:
                try:
                    message, used = decode(buffered, MAX_REQUEST)
                    if message is None:
                        break
                    buffered = buffered[used:]
                    self._pace()
                    self._answer(check_request(message))
                except Exception:  # noqa: BLE001 - WireError, OSError, or a case nobody foresaw:
                    return  # a child that breaks the format gets no more answers (and no traceback reaches the chat)
            if len(buffered) > MAX_REQUEST + 4:
                return

    def _pace(self, cost: float = 1.0) -> None:
        """Take ``cost`` tokens, first waiting for them when the child has asked too fast."""
        now = time.monotonic()
        self._tokens = min(_BURST, self._tokens + (now - self._refilled) * _RATE)
        self._refilled = now
        if self._tokens < cost:
            time.sleep((cost - self._tokens) / _RATE)  # back-pressure on a flood: the child waits, the host idles
            self._tokens, self._refilled = cost, time.monotonic()
        self._tokens -= cost

    def _answer(self, request: dict[str, Any]) -> None:
        try:
            if request["op"] == "resolve":
                self._sock.sendall(encode({"ok": True, "addrs": self._resolve(request)}))
                return
            conn = self._connect(request)
        except _Refused as refusal:
            self._note_refused(refusal.endpoint)
            failure: dict[str, Any] = {"refused": refusal.endpoint, **({"why": refusal.why} if refusal.why else {})}
        except socket.gaierror as exc:
            failure = {"gai": exc.errno or socket.EAI_FAIL, "message": exc.strerror or str(exc)}
        except OSError as exc:
            code = exc.errno if exc.errno else errno.ETIMEDOUT if isinstance(exc, TimeoutError) else errno.EIO
            failure = {"errno": code, "message": exc.strerror or str(exc) or errno.errorcode.get(code, "")}
        else:
            try:
                socket.send_fds(self._sock, [encode({"ok": True})], [conn.fileno()])
            finally:
                conn.close()
            return
        self._pace(_FAILED_COST)
        self._sock.sendall(encode({"ok": False, **failure}))

    # -- resolving and connecting ------------------------------------------------------------

    def _resolve(self, request: dict[str, Any]) -> list[list[Any]]:
        host, port, family = request["host"], request["port"], request["family"]
        key = host_key(host)
        port = _port_number(port) if port is not None else None
        if key is None:
            raise _Refused(INVALID_HOST, "not a host name or address a grant can name")  # never the plugin's text: it would become advice
        shown = spell(key, port)
        if family not in (0, socket.AF_INET, socket.AF_INET6):
            raise socket.gaierror(socket.EAI_FAMILY, "ai_family not supported")
        if is_literal(key):
            af = socket.AF_INET6 if ":" in key else socket.AF_INET
            if family not in (0, af):
                raise socket.gaierror(socket.EAI_ADDRFAMILY, "Address family for hostname not supported")
            return [[af, key, port or 0]]
        if request["flags"] & socket.AI_NUMERICHOST:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if not any(e.matches(key, port or e.port) for e in self.policy.endpoints if not e.is_literal):
            raise _Refused(shown)
        if port and self.policy.proxies.for_target(key, port) is not None:
            return [[socket.AF_INET, self._synthetic_address(key), port]]
        infos = [info for info in socket.getaddrinfo(key, port or 0, family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                 if is_local_name(key) or not _inward(str(info[4][0]))]  # fmt: skip
        if not infos:
            raise _Refused(shown, "it resolves only to loopback or link-local addresses")
        answer = []
        with self._lock:
            for af, _type, _proto, _canon, sockaddr in infos[:_MAX_ADDRESSES]:
                address = str(sockaddr[0])
                if len(self._handed) < _MAX_REMEMBERED or address in self._handed:
                    self._handed.setdefault(address, set()).add(key)
                answer.append([int(af), address, port or 0])
        return answer

    def _synthetic_address(self, name: str) -> str:
        with self._lock:
            for address, known in self._synthetic.items():
                if known == name:
                    return address
            if len(self._synthetic) >= _MAX_REMEMBERED:
                raise socket.gaierror(socket.EAI_AGAIN, "too many names resolved through the proxy")
            address = str(_SYNTHETIC[len(self._synthetic) + 1])
            self._synthetic[address] = name
            return address

    def _connect(self, request: dict[str, Any]) -> socket.socket:
        host, port, family = request["host"], request["port"], request["family"]
        key = host_key(host)
        if key is None:
            raise _Refused(INVALID_HOST, "not a host name or address a grant can name")
        if not is_literal(key):  # names are looked up first: a connect names an address
            raise _Refused(spell(key, port))
        name = self._target(key, port)
        timeout = min(request["timeout"] or self.policy.connect_timeout, self.policy.connect_timeout)
        proxied = key in self._synthetic
        proxy = self.policy.proxies.for_target(name, port)
        if proxied or proxy is not None:
            if proxy is None:  # a proxied name on a port no proxy serves
                raise OSError(errno.EHOSTUNREACH, "No route to host")
            conn = through_proxy(proxy, name if proxied else key, port, timeout)
        else:
            if (":" in key) != (family == socket.AF_INET6):
                raise socket.gaierror(socket.EAI_ADDRFAMILY, "Address family for hostname not supported")
            conn = direct(family, key, port, timeout)
        conn.settimeout(None)
        self._note_connected(spell(name, port))
        return conn

    def _target(self, address: str, port: int) -> str:
        """The granted name (or IP literal) that ``address:port`` stands for; _Refused if none."""
        endpoints = self.policy.endpoints
        if any(e.is_literal and e.matches(address, port) for e in endpoints):
            return address
        with self._lock:
            proxied = self._synthetic.get(address)
            names = [proxied] if proxied else sorted(self._handed.get(address, ()))
        for name in names:
            if any(e.matches(name, port) for e in endpoints if not e.is_literal):
                return name
        raise _Refused(spell(names[0] if names else address, port))

    # -- records -----------------------------------------------------------------------------

    def _note_connected(self, endpoint: str) -> None:
        with self._lock:
            self._connected += 1
            self._recent_ok.append(endpoint)
        self._record("connected", endpoint)

    def _note_refused(self, endpoint: str) -> None:
        with self._lock:
            self._refused += 1
            self._recent_refused.append(endpoint)
            self._last_refused, self._last_refused_at = endpoint, time.monotonic()
        self._record("refused", endpoint)

    def _record(self, outcome: str, endpoint: str) -> None:
        with self._lock:
            self._events += 1
            count = self._events
            if self._emit is None or count > _MAX_EVENTS or self._closed:
                return
            if self._recorder is None:
                self._recorder = threading.Thread(target=self._write_events, name=f"sandchat-egress-log-{self.name}", daemon=True)
                self._recorder.start()
            # Under the lock: close() puts the end marker under it too, so nothing follows that.
            self._queued += 1
            self._events_out.put(
                ("network_" + outcome, {"endpoint": endpoint, **({"more": "not recorded"} if count == _MAX_EVENTS else {})})
            )

    def _write_events(self) -> None:
        assert self._emit is not None
        while (item := self._events_out.get()) is not None:
            try:
                self._emit(*item)
            except Exception:  # noqa: BLE001 - a listener's failure must not end the broker
                pass
            with self._drained:
                self._written += 1
                self._drained.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` until every event so far has reached the listener."""
        with self._drained:
            return self._drained.wait_for(lambda: self._written >= self._queued or self._closed, timeout)


def _inward(address: str) -> bool:
    """True for loopback, link-local (169.254.169.254 included), unspecified and multicast.

    A granted name whose DNS its owner controls could point there: the user's own services
    and a cloud's metadata endpoint. Only ``localhost`` names (and IP literal grants) may.
    """
    ip = ipaddress.ip_address(address)
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast


def _port_number(port: int | str) -> int:
    if isinstance(port, int):
        return port
    if port.isascii() and port.isdigit() and int(port) < 65536:
        return int(port)
    try:
        return socket.getservbyname(port, "tcp")
    except (OSError, ValueError):  # ValueError: a NUL in the name
        raise socket.gaierror(socket.EAI_SERVICE, "Servname not supported for ai_socktype") from None
