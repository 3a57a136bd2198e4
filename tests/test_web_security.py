"""The browser chat's gate, over real HTTP to a real ``sandchat web``: token, cookie, Host, Origin, headers, bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.webkit import WebServer, have_web_extra

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not have_web_extra(), reason="the [web] extra is not installed (pip install -e '.[web]')"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    with WebServer(tmp_path_factory.mktemp("web") / "home", "-p", "recall") as running:
        yield running


def test_the_token_is_traded_for_a_strict_cookie_and_leaves_the_address(server: WebServer) -> None:
    status, headers, _ = server.request("GET", f"/?token={server.token}", cookie=False)
    assert status == 303 and headers["location"] == "/"
    assert headers["set-cookie"] == f"sandchat_{server.port}={server.token}; HttpOnly; SameSite=Strict; Path=/"
    status, headers, body = server.request("GET", "/")
    assert status == 200 and b"LLM Plugin" in body


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/plugins", "/api/state", "/api/health"])
def test_no_cookie_no_page(server: WebServer, path: str) -> None:
    status, headers, body = server.request("GET", path, cookie=False)
    assert status == 403
    assert body.decode().count("\n") == 1 and "token" in body.decode()  # one line, saying what to do


def test_a_wrong_token_or_cookie_is_refused(server: WebServer) -> None:
    assert server.request("GET", "/?token=" + "x" * len(server.token), cookie=False)[0] == 403
    assert server.request("GET", "/api/plugins", cookie=False, headers={"Cookie": f"sandchat_{server.port}=wrong"})[0] == 403
    other_port = f"sandchat_{server.port + 1}={server.token}"  # the right secret under another server's name
    assert server.request("GET", "/api/plugins", cookie=False, headers={"Cookie": other_port})[0] == 403


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1:{port}.evil.example",
        "127.0.0.1",  # no port: not the served authority
        "127.0.0.1:1",
        "localhost.evil.example:{port}",
        "",
    ],
)
def test_a_foreign_host_is_refused_even_with_the_cookie(server: WebServer, host: str) -> None:
    status, _, body = server.request("GET", "/api/plugins", headers={"Host": host.format(port=server.port)})
    assert status in (400, 403), body  # uvicorn itself rejects an empty Host; the gate refuses the rest
    assert b"recall" not in body


def test_the_other_loopback_names_are_accepted(server: WebServer) -> None:
    for host in (f"localhost:{server.port}", f"[::1]:{server.port}"):
        assert server.request("GET", "/api/state", headers={"Host": host})[0] == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1:{port}"])
def test_a_write_from_another_origin_is_refused(server: WebServer, origin: str) -> None:
    status, _, _ = server.post("/api/system", {"text": "pwned"}, Origin=origin.format(port=server.port))
    assert status == 403
    assert json.loads(server.request("GET", "/api/state")[2])["system"] != "pwned"


def test_a_write_without_origin_is_refused_and_a_form_post_too(server: WebServer) -> None:
    status, _, _ = server.request("POST", "/api/new", headers={"Content-Type": "application/json"}, body=b"{}")
    assert status == 403
    status, _, _ = server.request("POST", "/api/system", headers={"Content-Type": "text/plain"}, body=b'{"text": "pwned"}')
    assert status == 403
    status, _, _ = server.request(
        "POST", "/api/system", headers={"Origin": server.origin, "Content-Type": "text/plain"}, body=b'{"text": "pwned"}'
    )
    assert status == 415  # the right origin still sends JSON only
    assert json.loads(server.request("GET", "/api/state")[2])["system"] != "pwned"


def test_a_cross_site_fetch_is_refused(server: WebServer) -> None:
    assert server.request("GET", "/api/state", headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert server.request("GET", "/api/state", headers={"Sec-Fetch-Site": "same-origin"})[0] == 200


def test_every_response_has_the_strict_headers_and_no_cors(server: WebServer) -> None:
    for status_wanted, response in ((200, server.request("GET", "/")), (403, server.request("GET", "/", cookie=False))):
        status, headers, _ = response
        assert status == status_wanted
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp
        assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
        assert not [name for name in headers if name.startswith("access-control-")]
    preflight = server.request("OPTIONS", "/api/chat", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert preflight[0] == 403 and "access-control-allow-origin" not in preflight[1]


@pytest.mark.parametrize("path", ["/static/../app/cli.py", "/static/%2e%2e/app/cli.py", "/static/app.py", "/static/../../pyproject.toml"])
def test_no_path_reaches_the_disk(server: WebServer, path: str) -> None:
    status, _, body = server.request("GET", path)
    assert status == 404 and b"import" not in body


def test_a_body_over_a_mebibyte_is_refused(server: WebServer) -> None:
    status, _, body = server.post("/api/system", {"text": "x" * (1 << 20)})
    assert status == 413 and body.decode().count("\n") == 1


@pytest.mark.parametrize("body", [b"{", b"[" * 100_000 + b"]" * 100_000, b'"a string"', b"\xff\xfe", b'{"text": 5}'])
def test_bad_json_is_one_line_of_400_never_a_traceback(server: WebServer, body: bytes) -> None:
    headers = {"Origin": server.origin, "Content-Type": "application/json"}
    status, _, answer = server.request("POST", "/api/system", headers=headers, body=body)
    assert status == 400
    assert answer.decode().count("\n") == 1 and "Traceback" not in answer.decode()


def test_an_unknown_grant_id_is_refused(server: WebServer) -> None:
    status, _, body = server.post("/api/grant", {"id": "made-up", "yes": True})
    assert status == 404 and b"no such grant offer" in body


def test_ctrl_c_stops_the_server_and_its_plugins(tmp_path: Path) -> None:
    web = WebServer(tmp_path / "home", "-p", "recall")
    status, _, body = web.post("/api/chat", {"text": "hello"})
    assert status == 200 and b"recall saw hello" in body
    assert web.stop() == 130
    errors = web.stderr()
    assert errors.strip().splitlines()[-1] == "sandchat: interrupted", errors
