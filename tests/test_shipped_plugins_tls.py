"""The shipped network plugins over real TLS: sandboxed, verifying a test CA's certificates.

Each plugin runs as test_shipped_plugins_sandboxed.py runs it: started by a PluginManager
over the shipped folder, in the network profile, with a user grant of the fake server's
port. Here the fake server speaks HTTPS (tests/fakeapi in TLS mode) with a certificate
from a throwaway CA made by ``trustme`` (tests/fakeapi/tls.py), and the host environment
the manager sees sets ``SSL_CERT_FILE`` to that CA's PEM: the manager passes the variable
to network plugins and adds the file to the sandbox's readable paths. The plugin's own
HTTP stack (httpx2, inside the anthropic SDK for Claude) does the handshake and checks
the certificate; nothing in the plugin is patched or mocked.

The URL names ``localhost``: the certificate carries it as a DNS subjectAltName (and
127.0.0.1 as an IP one), the plugin resolves it through the sandbox's /etc/hosts and
sends it as SNI, which the server records with each handshake.

Found by these tests and fixed: the openai_compatible plugin builds its client with
``trust_env=False`` (no proxies, no .netrc), and httpx reads SSL_CERT_FILE/SSL_CERT_DIR
only with trust_env on, so it rejected a private CA that SSL_CERT_FILE named. It now
builds its TLS context from those variables itself. Claude's SDK keeps trust_env on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import runner
from app.grants import file_sha256
from app.manager import SHIPPED_DIR, PluginManager
from tests.fakeapi import FakeAnthropicServer, FakeOpenAIServer, FakeServer, Handshake
from tests.fakeapi.canned import CHAT_PATH, HISTORY, MESSAGES_PATH, REPLY
from tests.fakeapi.tls import LocalCA
from tests.test_shipped_plugins_sandboxed import CLAUDE_ENV, KEY, OPENAI_ENV, make_manager, one_line

pytestmark = pytest.mark.timeout(60)

ATTEMPTS = 3  # both plugins' max_attempts: a failed connection is tried three times in all
WAIT = 10.0  # seconds to wait for the server to finish recording a handshake


# -- helpers -----------------------------------------------------------------------------


@contextmanager
def sandboxed(
    home: Path, name: str, server: FakeServer, environ: dict[str, str], env: tuple[str, ...]
) -> Iterator[tuple[PluginManager, runner.Plugin]]:
    """A manager over the shipped plugins seeing ``environ`` as the host environment, and its
    plugin ``name``, granted ``server``'s port and the variables ``env`` (as a user would)."""
    with make_manager(home, environ) as manager:
        sha = file_sha256(SHIPPED_DIR / f"{name}_plugin.py")
        manager.grants.grant(name, sha, network=(f"{server.url_host}:{server.port}",), env=env)
        yield manager, manager.handle(name)


def assert_sandboxed_with_ca(plugin: runner.Plugin, server: FakeServer, ca_file: Path) -> None:
    """The manager handed SSL_CERT_FILE to the sandboxed plugin, let it read that file, and
    opened only the server's port; the started child reports the network profile's layers."""
    assert plugin.config.env["SSL_CERT_FILE"] == str(ca_file)
    assert str(ca_file) in plugin.config.sandbox.read_paths
    assert [str(e) for e in plugin.config.sandbox.endpoints] == [f"{server.url_host}:{server.port}"]
    hello = plugin.start()
    assert hello["sandbox"]["profile"] == "network"
    assert {"landlock-fs", "landlock-net", "seccomp"} <= set(hello["sandbox"]["layers"])


def one_handshake(server: FakeServer, server_name: str | None = "localhost") -> Handshake:
    """The server's one and only handshake so far, checked to be a completed TLS handshake.

    No waiting needed: the server records a handshake before it reads the request on that
    connection, so a reply the client got implies the record exists.
    """
    (handshake,) = server.handshakes
    assert handshake.ok, handshake
    assert handshake.version in ("TLSv1.2", "TLSv1.3") and handshake.cipher, handshake
    assert handshake.server_name == server_name  # SNI: sent for a name, not for an IP address
    assert server.connection_count == 1
    return handshake


def failed_handshakes(server: FakeServer, n: int, reason: str) -> list[Handshake]:
    """Wait for ``n`` handshakes, check they are all and only failures for ``reason``."""
    handshakes = server.wait_for_handshakes(n, timeout=WAIT)
    assert len(handshakes) == n, handshakes
    assert all(not h.ok and h.error == reason and h.version is None for h in handshakes), handshakes
    assert server.requests == []  # not one byte of HTTP went over a connection the client refused
    return handshakes


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def ca() -> LocalCA:
    return LocalCA("sandchat tests: trusted")


@pytest.fixture
def rogue_ca() -> LocalCA:
    return LocalCA("sandchat tests: NOT trusted")


@pytest.fixture
def ca_file(tmp_path: Path, ca: LocalCA) -> Path:
    """The trusted CA's certificate, outside every folder the sandbox may read by default."""
    return ca.write_pem(tmp_path / "test-ca.pem")


def claude_environ(server: FakeServer, ca_file: Path) -> dict[str, str]:
    return {"ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": KEY, "SSL_CERT_FILE": str(ca_file)}


def openai_environ(server: FakeServer, ca_file: Path) -> dict[str, str]:
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": KEY, "SSL_CERT_FILE": str(ca_file)}


# -- Claude (anthropic SDK) --------------------------------------------------------------


@pytest.mark.parametrize(("url_host", "sni"), [("localhost", "localhost"), ("127.0.0.1", None)])
def test_claude_answers_over_tls(home: Path, ca: LocalCA, ca_file: Path, url_host: str, sni: str | None) -> None:
    with FakeAnthropicServer(reply=REPLY, api_key=KEY, tls=ca.server_context(), url_host=url_host) as server:
        assert server.base_url.startswith(f"https://{url_host}:")
        with sandboxed(home, "claude", server, claude_environ(server, ca_file), CLAUDE_ENV) as (_, claude):
            assert_sandboxed_with_ca(claude, server, ca_file)
            assert claude.generate_chat("Address the user by name.", HISTORY, max_tokens=64) == REPLY
        one_handshake(server, server_name=sni)
        request = server.requests_to(MESSAGES_PATH)[-1]
        assert request.body["messages"] == HISTORY and "stream" not in request.body
        assert request.headers["authorization"] == f"Bearer {KEY}"


def test_claude_streams_over_tls(home: Path, ca: LocalCA, ca_file: Path) -> None:
    with FakeAnthropicServer(reply=REPLY, api_key=KEY, tls=ca.server_context(), url_host="localhost") as server:
        with sandboxed(home, "claude", server, claude_environ(server, ca_file), CLAUDE_ENV) as (_, claude):
            chunks = list(claude.stream_response("Be brief.", "Hello?", max_tokens=77))
            assert "".join(chunks) == REPLY and len(chunks) > 1  # SSE events, decrypted piece by piece
        one_handshake(server)
        request = server.requests_to(MESSAGES_PATH)[-1]
        assert request.body["stream"] is True and request.body["system"] == "Be brief."


def test_claude_rejects_a_certificate_from_another_ca(home: Path, ca: LocalCA, rogue_ca: LocalCA, ca_file: Path) -> None:
    with FakeAnthropicServer(reply=REPLY, api_key=KEY, tls=rogue_ca.server_context(), url_host="localhost") as server:
        with sandboxed(home, "claude", server, claude_environ(server, ca_file), CLAUDE_ENV) as (_, claude):
            claude.start()
            pid = claude.pid
            with pytest.raises(runner.PluginRaised) as exc:
                "".join(claude.stream_response("", "hi", 16))
            message = one_line(exc, "claude")
            assert f"Anthropic API: cannot connect to {server.base_url} after {ATTEMPTS} attempts: " in message
            assert "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate" in message
            failed_handshakes(server, ATTEMPTS, "TLSV1_ALERT_UNKNOWN_CA")  # the client's alert: it did not know the CA

            # Same server, same port, same plugin process: now a certificate from the trusted CA.
            server.set_tls(ca.server_context())
            assert claude.generate_response("", "hi", 16) == REPLY
            assert claude.pid == pid  # the failure did not cost the plugin its process
        assert [h.ok for h in server.handshakes] == [False] * ATTEMPTS + [True]
        assert len(server.requests_to(MESSAGES_PATH)) == 1


def test_claude_rejects_a_certificate_for_another_name(home: Path, ca: LocalCA, ca_file: Path) -> None:
    # The trusted CA, but a certificate for another host: the name check, not the chain, fails.
    with FakeAnthropicServer(reply=REPLY, api_key=KEY, tls=ca.server_context("api.example.test"), url_host="localhost") as server:
        with sandboxed(home, "claude", server, claude_environ(server, ca_file), CLAUDE_ENV) as (_, claude):
            with pytest.raises(runner.PluginRaised) as exc:
                claude.generate_response("", "hi", 16)
            message = one_line(exc, "claude")
            assert "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch" in message
            assert "'localhost'" in message
            failed_handshakes(server, ATTEMPTS, "SSLV3_ALERT_BAD_CERTIFICATE")


# -- OpenAI-compatible (its own httpx2 client) -------------------------------------------


def test_openai_answers_over_tls(home: Path, ca: LocalCA, ca_file: Path) -> None:
    with FakeOpenAIServer(reply=REPLY, api_key=KEY, tls=ca.server_context(), url_host="localhost") as server:
        with sandboxed(home, "openai_compatible", server, openai_environ(server, ca_file), OPENAI_ENV) as (_, openai):
            assert_sandboxed_with_ca(openai, server, ca_file)
            answer = openai.generate_chat("Address the user by name.", HISTORY, max_tokens=64)
            assert answer == REPLY
        one_handshake(server)
        request = server.requests_to(CHAT_PATH)[-1]
        assert request.body["messages"][1:] == HISTORY and "stream" not in request.body


def test_openai_streams_over_tls(home: Path, ca: LocalCA, ca_file: Path) -> None:
    with FakeOpenAIServer(reply=REPLY, api_key=KEY, tls=ca.server_context(), url_host="localhost") as server:
        with sandboxed(home, "openai_compatible", server, openai_environ(server, ca_file), OPENAI_ENV) as (_, openai):
            chunks = list(openai.stream_response("Be brief.", "Hello?", max_tokens=77))
            assert "".join(chunks) == REPLY and len(chunks) > 1
        one_handshake(server)
        assert server.requests_to(CHAT_PATH)[-1].body["stream"] is True


def test_openai_rejects_a_certificate_from_another_ca(home: Path, rogue_ca: LocalCA, ca_file: Path) -> None:
    with FakeOpenAIServer(reply=REPLY, api_key=KEY, tls=rogue_ca.server_context(), url_host="localhost") as server:
        with sandboxed(home, "openai_compatible", server, openai_environ(server, ca_file), OPENAI_ENV) as (manager, openai):
            with pytest.raises(runner.PluginRaised) as exc:
                openai.generate_response("", "hi", 16)
            message = one_line(exc, "openai_compatible")
            label = f"OpenAI-compatible server localhost:{server.port}"
            assert f"{label}: cannot connect to {server.base_url} after {ATTEMPTS} attempts: " in message
            assert "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed" in message
            failed_handshakes(server, ATTEMPTS, "TLSV1_ALERT_UNKNOWN_CA")

            assert openai.running and openai.count_tokens("hello world") == 2  # the plugin still answers
            assert manager.handle("echo").generate_response("", "still here", 16) == "echo: still here"
