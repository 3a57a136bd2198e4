"""Test certificate authorities for the fake servers' TLS mode, made with ``trustme``.

A :class:`LocalCA` is a throwaway root CA, created in memory. Its certificate goes to a PEM
file a client can trust (``SSL_CERT_FILE``); :meth:`LocalCA.server_context` issues a leaf
certificate for the given names and returns the server-side ``SSLContext`` to pass as
``FakeServer(tls=...)``::

    ca = LocalCA()
    ca.write_pem(tmp_path / "ca.pem")           # the client trusts this file
    with FakeOpenAIServer(tls=ca.server_context(), url_host="localhost") as server:
        server.base_url                           # https://localhost:PORT/v1

The default names are ``localhost`` (a DNS subjectAltName, matched when the URL says
``localhost``) and ``127.0.0.1`` (an IP-address subjectAltName, matched when the URL says
``127.0.0.1``); a client checks the URL's host against these, never the subject's CN.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

__all__ = ["DEFAULT_NAMES", "LocalCA"]

DEFAULT_NAMES = ("localhost", "127.0.0.1")


class LocalCA:
    """A root CA of its own (two LocalCAs never trust each other's certificates)."""

    def __init__(self, organization: str = "sandchat tests") -> None:
        self._ca = trustme.CA(organization_name=organization)

    @property
    def pem(self) -> bytes:
        """The CA certificate, PEM-encoded."""
        return self._ca.cert_pem.bytes()

    def write_pem(self, path: Path) -> Path:
        """Write the CA certificate (only: no key) to ``path``, for ``SSL_CERT_FILE``."""
        path.write_bytes(self.pem)
        return path

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A server ``SSLContext`` presenting a fresh leaf certificate for ``names`` (default: DEFAULT_NAMES)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._ca.issue_cert(*(names or DEFAULT_NAMES)).configure_cert(context)
        return context
