"""Network grants and proxy settings as data: ``HOST:PORT`` patterns, matched exactly.

A pattern names one port and one of: a host name (``api.anthropic.com``), a name with one
leading wildcard label (``*.example.com``: ``a.example.com``, never ``example.com`` nor
``a.b.example.com``), an IPv4 literal (``127.0.0.1``) or a bracketed IPv6 literal
(``[::1]``). Names compare case-insensitively, without a trailing dot. Nothing else is a
pattern: no port ranges, no bare ``*``, no CIDR blocks.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "Endpoint",
    "EndpointError",
    "Proxies",
    "Proxy",
    "host_key",
    "is_literal",
    "is_local_name",
    "parse_endpoint",
    "parse_proxy",
    "proxies_from",
    "spell",
]

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_NAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
_MAX_NAME = 253


class EndpointError(ValueError):
    """Raised when a network grant or request is not a valid ``HOST:PORT``."""


def host_key(host: str) -> str | None:
    """The canonical spelling of a host a plugin asked for, or None if it is not a host.

    IP literals in their compressed form (``::1``, never ``[::1]``); names lower-case
    without a trailing dot. Odd numeric spellings libc would accept (``2130706433``,
    ``0x7f.1``) are not literals here: they stay names, and no grant names them.
    """
    if not isinstance(host, str) or not 0 < len(host) <= _MAX_NAME + 2:
        return None
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if "%" in text:
        return None  # an IPv6 scope id: ipaddress keeps any text after '%', a grant never needs one
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text.lower()[:-1] if text.endswith(".") else text.lower()
    if len(name) > _MAX_NAME or not _NAME.fullmatch(name) or name.startswith("*"):
        return None
    # A top label of digits (2130706433, 0x7f.1, 127.1) is a number libc would read as an address.
    top = name.rsplit(".", 1)[-1]
    return None if top.isdigit() or top.startswith("0x") else name


@dataclass(frozen=True)
class Endpoint:
    """One granted ``HOST:PORT``: ``host`` is canonical, ``wildcard`` marks ``*.`` patterns."""

    host: str
    port: int
    wildcard: bool = False

    def __str__(self) -> str:
        return ("*." if self.wildcard else "") + spell(self.host, self.port)

    @property
    def is_literal(self) -> bool:
        """True for an IP address pattern, which only a connect to that address matches."""
        return is_literal(self.host)

    def matches(self, host: str, port: int) -> bool:
        """True when the canonical ``host`` (see :func:`host_key`) at ``port`` is this grant."""
        if port != self.port:
            return False
        if not self.wildcard:
            return host == self.host
        head, dot, rest = host.partition(".")
        return bool(dot) and bool(head) and rest == self.host


def parse_endpoint(text: str) -> Endpoint:
    """``api.example.com:443``, ``*.example.com:443``, ``127.0.0.1:8080``, ``[::1]:8080``."""
    if not isinstance(text, str) or ":" not in text:
        raise EndpointError(f"network entry {text!r} must be HOST:PORT")
    host, _, port_text = text.rpartition(":")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536 or len(port_text) > 5:
        raise EndpointError(f"network entry {text!r} needs a port from 1 to 65535")
    wildcard = host.startswith("*.")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise EndpointError(f"network entry {text!r}: write an IPv6 address in brackets, like [::1]:8080")
    key = host_key(host[2:] if wildcard else host)
    if key is None or (wildcard and is_literal(key)) or (host.startswith("[") and ":" not in key):
        raise EndpointError(
            f"network entry {text!r} must name a host (api.example.com), one wildcard label (*.example.com) or an IP address"
        )
    return Endpoint(key, int(port_text), wildcard)


def is_local_name(key: str) -> bool:
    """True for ``localhost`` and names under it (RFC 6761): the names that may mean loopback."""
    return key == "localhost" or key.endswith(".localhost")


def spell(host: str, port: int | None = None) -> str:
    """``host:port`` as grants are written (``[::1]:8080``); just the host when there is no port."""
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


def is_literal(key: str) -> bool:
    """True when the canonical ``key`` (see :func:`host_key`) is an IP address, not a name."""
    try:
        ipaddress.ip_address(key)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy the host tunnels through with CONNECT (``http://[user:pass@]host:port``)."""

    host: str
    port: int
    authorization: str = ""  # a Proxy-Authorization header value, when the URL had credentials

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Proxies:
    """The user's proxy settings, as the host honours them for a plugin's connections.

    ``https`` serves every port but 80, ``http`` serves port 80 (each falls back to the
    other); ``no_proxy`` names hosts reached directly (``example.com`` also covers its
    subdomains, ``*`` covers all).
    """

    https: Proxy | None = None
    http: Proxy | None = None
    no_proxy: tuple[str, ...] = ()

    def for_target(self, host: str, port: int) -> Proxy | None:
        """The proxy a connection to ``host:port`` goes through, or None for a direct one."""
        proxy = (self.http or self.https) if port == 80 else (self.https or self.http)
        if proxy is None or self._bypassed(host):
            return None
        return proxy

    def _bypassed(self, host: str) -> bool:
        for entry in self.no_proxy:
            if entry == "*" or host == entry or (not is_literal(entry) and host.endswith("." + entry)):
                return True
        return False


def parse_proxy(url: str) -> Proxy:
    """``http://proxy:3128`` or ``proxy:3128`` as a :class:`Proxy`; EndpointError otherwise."""
    import base64
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme != "http":
        raise EndpointError(f"proxy {url!r}: only http:// proxies are supported (the host tunnels with CONNECT)")
    try:
        port = parts.port or 80
    except ValueError:
        raise EndpointError(f"proxy {url!r} has a bad port") from None
    host = host_key(parts.hostname or "")
    if host is None:
        raise EndpointError(f"proxy {url!r} names no host")
    auth = ""
    if parts.username is not None:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = "Basic " + base64.b64encode(token).decode("ascii")
    return Proxy(host, port, auth)


def proxies_from(environ: Mapping[str, str]) -> Proxies:
    """The proxy settings in ``environ`` (lower-case names first, as curl reads them)."""

    def value(name: str) -> str:
        return (environ.get(name.lower()) or environ.get(name.upper()) or "").strip()

    https, http = value("https_proxy") or value("all_proxy"), value("http_proxy") or value("all_proxy")
    no_proxy = tuple(
        key for key in (host_key(item.strip().lstrip(".")) if item.strip() != "*" else "*" for item in value("no_proxy").split(",")) if key
    )
    return Proxies(parse_proxy(https) if https else None, parse_proxy(http) if http else None, no_proxy)
