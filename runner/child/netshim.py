"""The child's socket layer in the network profile: lookups and connects asked of the host.

Installed by ``runner/child/entry.py`` after the sandbox is on and before ``site`` or any
plugin code runs; standard library only. The kernel refuses the child every ``socket()``
and ``connect()``; this module adapts Python's ``socket`` module so that code written
for a normal network keeps working:

- ``socket.socket(AF_INET/AF_INET6, SOCK_STREAM)`` holds a placeholder (one end of a
  socket pair) until it connects; options set on it are kept and applied to the real
  socket, and its timeout or non-blocking mode carries over.
- ``connect()``/``connect_ex()`` ask the host (``runner/egress.py``), which connects if
  the grant allows and sends the connected TCP socket back; it replaces the placeholder
  under the same fd, so the plugin's object *is* the connection (TLS is the plugin's).
- ``getaddrinfo``/``gethostbyname``/``gethostbyname_ex`` ask the host, which answers for
  granted names only. No UDP: a datagram socket is refused here with a clear error.

Every socket user in the standard library and the usual HTTP stacks goes through these
(``socket.create_connection``, ``http.client``, ``urllib``, ``ssl``, asyncio, anyio,
httpx). A C extension that calls the kernel itself gets EPERM from seccomp.
"""

import _socket
import errno
import os
import socket
import threading

from runner import netwire
from runner.sandbox import allowlist

_INET = (socket.AF_INET, socket.AF_INET6)
_TYPE_MASK = ~(socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
_NO_UDP = "the sandbox allows no UDP (sandchat's network profile connects TCP only, through the host)"
_ONLY_TCP = "the sandbox allows only TCP connections here, made through the host"


class _Broker:
    """The child's end of the egress channel; one question at a time, from any thread."""

    def __init__(self, fd: int) -> None:
        self._channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
        self._lock = threading.Lock()
        self._buffered = b""
        # Placeholders by fd, with the inode that proves the fd is still one: ssl's
        # wrap_socket() re-wraps the same fd in a new object, and a closed fd's number
        # is reused. Bounded by the fd limit (an entry per fd number).
        self.placeholders: dict = {}

    def ask(self, request: dict) -> tuple:
        """Send ``request``; return (reply, fd or None)."""
        with self._lock:
            self._channel.sendall(netwire.encode(request))
            fds: list = []
            while True:
                message, used = netwire.decode(self._buffered, netwire.MAX_REPLY)
                if message is not None:
                    self._buffered = self._buffered[used:]
                    return message, (fds[0] if fds else None)
                data, got, _flags, _addr = socket.recv_fds(self._channel, netwire.MAX_REPLY, 1)
                if not data:
                    raise ConnectionAbortedError(errno.ECONNABORTED, "the host closed the sandbox's network channel")
                fds += got
                self._buffered += data


def _raise_for(reply: dict) -> None:
    if "refused" in reply:
        why = str(reply.get("why") or "not granted to this plugin")
        raise PermissionError(errno.EACCES, f"the sandbox refused a connection to {reply['refused']} ({why})")
    if "gai" in reply:
        raise socket.gaierror(int(reply["gai"]), str(reply.get("message", "")))
    code = int(reply.get("errno") or errno.EIO)
    raise OSError(code, str(reply.get("message") or os.strerror(code)))


_broker: "_Broker | None" = None  # set once by install(), before any plugin code runs
_real_init = socket.socket.__init__
_real_setsockopt = socket.socket.setsockopt
_real_getsockopt = socket.socket.getsockopt
_real_getpeername = socket.socket.getpeername


def install(fd: int) -> None:
    """Route this process's name lookups and TCP connects through the host on ``fd``."""
    global _broker
    _broker = _Broker(fd)
    methods = {"__init__": _init, "connect": _connect, "connect_ex": _connect_ex, "setsockopt": _setsockopt,
               "getsockopt": _getsockopt, "getpeername": _getpeername}  # fmt: skip
    for name, method in methods.items():  # on the class: ssl.SSLSocket and every subclass inherit them
        setattr(socket.socket, name, method)
    lookups = {"getaddrinfo": _getaddrinfo, "gethostbyname": _gethostbyname, "gethostbyname_ex": _gethostbyname_ex,
               "gethostbyaddr": _gethostbyaddr}  # fmt: skip
    for name, function in lookups.items():  # create_connection and asyncio look these up at call time
        setattr(socket, name, function)


def _ask(request: dict) -> tuple:
    assert _broker is not None
    return _broker.ask(request)


def _options(sock) -> "list | None":
    """The options kept for ``sock`` while it is a placeholder; None once it is a connection."""
    assert _broker is not None
    entry = _broker.placeholders.get(sock.fileno())
    if entry is None:
        return None
    try:
        return entry[1] if os.fstat(sock.fileno()).st_ino == entry[0] else None
    except OSError:
        return None


# -- names ---------------------------------------------------------------------------------


def _getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    kind = type & _TYPE_MASK
    if kind == socket.SOCK_DGRAM or proto == socket.IPPROTO_UDP:
        raise PermissionError(errno.EACCES, _NO_UDP)
    if kind not in (0, socket.SOCK_STREAM) or proto not in (0, socket.IPPROTO_TCP):
        raise PermissionError(errno.EACCES, _ONLY_TCP)
    if host is None:
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    elif isinstance(host, (bytes, bytearray)):
        host = bytes(host).decode("ascii", "replace")
    elif not host.isascii():
        host = host.encode("idna").decode("ascii")
    if isinstance(port, (bytes, bytearray)):
        port = bytes(port).decode("ascii", "replace")
    if isinstance(port, str) and not (port.isascii() and port.isprintable()):
        raise socket.gaierror(socket.EAI_SERVICE, "Servname not supported for ai_socktype")  # as glibc says
    literal = _literal_info(host, port, family)
    if literal is not None:
        return literal  # an address needs no lookup, and the host checks it at connect
    if flags & socket.AI_NUMERICHOST:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    reply, _ = _ask({"op": "resolve", "host": str(host), "port": port, "family": int(family), "flags": int(flags)})
    if not reply.get("ok"):
        _raise_for(reply)
    out = []
    for af, address, number in reply["addrs"]:
        sockaddr = (address, number, 0, 0) if af == socket.AF_INET6 else (address, number)
        out.append((socket.AddressFamily(af), socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
    return out


def _literal_info(host: str, port, family: int) -> "list | None":
    """getaddrinfo's answer for an IP literal and a numeric port, or None (ask the host)."""
    if port is not None and type(port) is not int:
        if not (isinstance(port, str) and port.isascii() and port.isdigit()):
            return None  # a service name: the host looks it up
        port = int(port)
    port = port or 0
    for af in (socket.AF_INET, socket.AF_INET6):
        if family not in (0, af):
            continue
        try:
            _socket.inet_pton(af, host)
        except (OSError, ValueError):
            continue
        if not 0 <= port < 65536:
            raise OverflowError("getsockaddrarg: port must be 0-65535.")
        sockaddr = (host, port, 0, 0) if af == socket.AF_INET6 else (host, port)
        return [(socket.AddressFamily(af), socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)]
    return None


def _gethostbyname(host):
    return _getaddrinfo(host, None, socket.AF_INET)[0][4][0]


def _gethostbyname_ex(host):
    return host, [], [info[4][0] for info in _getaddrinfo(host, None, socket.AF_INET)]


def _gethostbyaddr(address):
    raise socket.herror(1, "Unknown host (the sandbox does no reverse lookups)")


# -- sockets -------------------------------------------------------------------------------


def _init(self, family=-1, type=-1, proto=-1, fileno=None):
    if fileno is not None or (socket.AF_INET if family == -1 else family) not in _INET:
        return _real_init(self, family, type, proto, fileno)
    family = socket.AF_INET if family == -1 else family
    kind = socket.SOCK_STREAM if type == -1 else type
    if kind & _TYPE_MASK == socket.SOCK_DGRAM:
        raise PermissionError(errno.EACCES, _NO_UDP)
    if kind & _TYPE_MASK != socket.SOCK_STREAM or proto not in (-1, 0, socket.IPPROTO_TCP):
        raise PermissionError(errno.EACCES, _ONLY_TCP)
    mine, other = _socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    other.close()  # the placeholder reads EOF and fails writes until it is connected
    _real_init(self, family, kind, 0 if proto == -1 else proto, mine.detach())
    assert _broker is not None
    _broker.placeholders[self.fileno()] = (os.fstat(self.fileno()).st_ino, [])


def _connect(self, address):
    if self.family not in _INET:
        return _socket.socket.connect(self, address)
    _connect_through_host(self, address)


def _connect_ex(self, address):
    if self.family not in _INET:
        return _socket.socket.connect_ex(self, address)
    try:
        _connect_through_host(self, address)
        return 0
    except OSError as exc:
        if exc.errno is None:
            raise
        return exc.errno


def _connect_through_host(sock, address) -> None:
    options = _options(sock)
    if options is None:
        raise OSError(errno.EISCONN, os.strerror(errno.EISCONN))
    if not isinstance(address, tuple) or len(address) < 2:
        raise TypeError(f"{'AF_INET6' if sock.family == socket.AF_INET6 else 'AF_INET'} address must be a tuple (host, port)")
    host, port = address[0], address[1]
    if type(port) is not int or not 0 <= port < 65536:
        raise OverflowError("connect(): port must be 0-65535.")
    try:
        _socket.inet_pton(sock.family, host)  # a literal needs no lookup
    except (OSError, TypeError, ValueError):
        host = _getaddrinfo(host, port, sock.family, socket.SOCK_STREAM)[0][4][0]
    timeout = sock.gettimeout()
    reply, fd = _ask({"op": "connect", "host": host, "port": port, "family": int(sock.family), "timeout": timeout or None})
    if not reply.get("ok") or fd is None:
        if fd is not None:
            os.close(fd)
        _raise_for(reply)
    try:
        os.dup2(fd, sock.fileno(), inheritable=False)  # the placeholder's fd now is the connection
    finally:
        os.close(fd)
    _broker.placeholders.pop(sock.fileno(), None)  # type: ignore[union-attr]
    sock.settimeout(timeout)  # O_NONBLOCK as the plugin had it: the fd's flags came from the host
    for level, option, value in options:
        _real_setsockopt(sock, level, option, *value)


def _setsockopt(self, level, option, *value):
    options = _options(self)
    if options is None:
        return _real_setsockopt(self, level, option, *value)
    if option not in allowlist.SOCKET_OPTIONS.get(level, {}):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))  # what the kernel would say after connect
    options.append((level, option, value))


def _getsockopt(self, level, option, *rest):
    options = _options(self)
    if options is not None and not rest:
        for known_level, known, value in reversed(options):
            if (known_level, known) == (level, option) and isinstance(value[0], int):
                return value[0]
    return _real_getsockopt(self, level, option, *rest)


def _getpeername(self):
    if self.family in _INET and _options(self) is not None:
        raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN))  # ssl.wrap_socket asks: not yet connected
    return _real_getpeername(self)
