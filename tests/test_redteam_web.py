"""Red team of ``sandchat web``: each test is an attack on a real server and asserts that it failed.

Where an attack succeeds (a hole) the test is ``xfail(strict=True, reason="HOLE: ...")``:
it passes while the hole is open and fails once it is closed, so the marker goes then.
Raw requests go over a plain socket, so every byte of the request line and headers is
the test's; the markup attacks go through a real sandboxed plugin (tests/redteam_web)
and then a real headless Chromium.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.helpers import TESTS
from tests.webkit import WebServer, have_web_extra

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not have_web_extra(), reason="the [web] extra is not installed (pip install -e '.[web]')"),
]

REDTEAM_PLUGINS = TESTS / "redteam_web"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    home = tmp_path_factory.mktemp("redteam") / "home"
    with WebServer(home, "-p", "mirror", "--plugins-dir", str(REDTEAM_PLUGINS)) as running:
        yield running


def raw(port: int, request: bytes, *, timeout: float = 15) -> bytes:
    """Send ``request`` exactly as given; all the server answers until it closes (or the deadline)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        answer = b""
        try:  # a server that refuses mid-request may close on us: what it said until then is its answer
            sock.sendall(request)
            while piece := sock.recv(65536):
                answer += piece
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            pass
        return answer


def status_of(answer: bytes) -> int:
    line = answer.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else 0


def get(server: WebServer, target: str, headers: list[str], *, version: str = "HTTP/1.1") -> bytes:
    lines = [f"GET {target} {version}", *headers, "Connection: close", "", ""]
    return raw(server.port, "\r\n".join(lines).encode("latin-1"))


def cookie(server: WebServer) -> str:
    return f"Cookie: {server.cookie}"


# -- 1. the gate over raw HTTP ---------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}.evil.com",
        "evil.com",
        "a@127.0.0.1:{port}",
        "127.0.0.1.:{port}",
        "localhost.:{port}",
        "LOCALHOST:{port}",
        "127.0.0.1:0{port}",
        "127.1:{port}",
        "0x7f.0.0.1:{port}",
        "[::ffff:127.0.0.1]:{port}",
        "[0:0:0:0:0:0:0:1]:{port}",
        "localhost.evil.com:{port}",
    ],
)
def test_foreign_host_variants_are_refused(server: WebServer, host: str) -> None:
    answer = get(server, "/api/state", [f"Host: {host.format(port=server.port)}", cookie(server)])
    assert status_of(answer) in (400, 403), answer[:300]
    assert b'"messages"' not in answer


def test_uppercase_localhost_is_not_a_way_in_either(server: WebServer) -> None:
    # RFC 9110 host names are case-insensitive; refusing is the safe side (no data is served).
    answer = get(server, "/api/state", [f"Host: LocalHost:{server.port}", cookie(server)])
    assert status_of(answer) in (400, 403)


def test_missing_host_is_refused(server: WebServer) -> None:
    answer = get(server, "/api/state", [cookie(server)])
    assert status_of(answer) in (400, 403) and b'"messages"' not in answer


def test_http10_without_host_is_refused(server: WebServer) -> None:
    answer = get(server, "/api/state", [cookie(server)], version="HTTP/1.0")
    assert status_of(answer) in (400, 403) and b'"messages"' not in answer


@pytest.mark.parametrize("order", ["good-first", "bad-first"])
def test_duplicate_host_headers_are_refused(server: WebServer, order: str) -> None:
    good, bad = f"Host: 127.0.0.1:{server.port}", "Host: evil.com"
    hosts = [good, bad] if order == "good-first" else [bad, good]
    answer = get(server, "/api/state", [*hosts, cookie(server)])
    assert status_of(answer) in (400, 403) and b'"messages"' not in answer


def test_ipv6_loopback_host_is_accepted_only_with_the_cookie(server: WebServer) -> None:
    assert status_of(get(server, "/api/state", [f"Host: [::1]:{server.port}"])) == 403
    assert status_of(get(server, "/api/state", [f"Host: [::1]:{server.port}", cookie(server)])) == 200


@pytest.mark.parametrize("target", ["http://evil.com/api/state", "http://evil.com:{port}/api/state", "//evil.com/api/state"])
def test_absolute_form_target_does_not_bypass_host(server: WebServer, target: str) -> None:
    # absolute-form with a good Host header: whatever the server routes, it must not be to another authority
    answer = get(server, target.format(port=server.port), ["Host: evil.com", cookie(server)])
    assert status_of(answer) in (400, 403, 404) and b'"messages"' not in answer


def test_absolute_form_target_with_good_host_does_not_leak_elsewhere(server: WebServer) -> None:
    answer = get(server, "http://evil.com/api/state", [f"Host: 127.0.0.1:{server.port}", cookie(server)])
    # served by this server at most (the Host header is its own); never a redirect to evil.com
    assert b"evil.com" not in answer.split(b"\r\n\r\n", 1)[0].lower()


@pytest.mark.parametrize(
    "origin", ["null", "http://127.0.0.1:{other}", "http://localhost.evil.com", "http://localhost.evil.com:{port}",
               "http://127.0.0.1:{port}/", "http://127.0.0.1:{port}.evil.com", "HTTP://127.0.0.1:{port}"]
)  # fmt: skip
def test_foreign_origins_cannot_write(server: WebServer, origin: str) -> None:
    sent = origin.format(port=server.port, other=server.port + 1)
    status, _, _ = server.post("/api/system", {"text": "pwned-origin"}, Origin=sent)
    assert status == 403
    assert json.loads(server.request("GET", "/api/state")[2])["system"] != "pwned-origin"


def test_foreign_origin_cannot_read_either(server: WebServer) -> None:
    status, _, body = server.request("GET", "/api/state", headers={"Origin": "http://evil.com"})
    assert status == 403 and b'"messages"' not in body


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("text/plain", b'{"text": "pwned-simple"}'),
        ("application/x-www-form-urlencoded", b"text=pwned-simple"),
        ("multipart/form-data; boundary=X", b'--X\r\nContent-Disposition: form-data; name="text"\r\n\r\npwned-simple\r\n--X--\r\n'),
        ("application/json", b'{"text": "pwned-simple"}'),
    ],
)
def test_simple_cross_site_posts_without_origin_are_refused(server: WebServer, kind: str, body: bytes) -> None:
    status, _, _ = server.request("POST", "/api/system", headers={"Content-Type": kind}, body=body)
    assert status == 403
    status, _, _ = server.request("POST", "/api/system", headers={"Content-Type": kind, "Sec-Fetch-Site": "cross-site"}, body=body)
    assert status == 403
    assert json.loads(server.request("GET", "/api/state")[2])["system"] != "pwned-simple"


@pytest.mark.parametrize("path", ["/api/state", "/static/app.js", "/api/plugins", "//?token={token}", "/index.html"])
def test_the_token_in_the_query_of_other_paths_is_no_cookie(server: WebServer, path: str) -> None:
    target = path.format(token=server.token) if "{token}" in path else f"{path}?token={server.token}"
    status, headers, body = server.request("GET", target, cookie=False)
    assert status in (403, 404) and "set-cookie" not in headers and b'"messages"' not in body


def test_the_token_login_only_by_get(server: WebServer) -> None:
    for method in ("POST", "HEAD", "PUT"):
        status, headers, _ = server.request(method, f"/?token={server.token}", cookie=False, headers={"Origin": server.origin})
        assert "set-cookie" not in headers, method
        assert status in (403, 405), method


def test_a_duplicate_token_parameter_is_no_login(server: WebServer) -> None:
    status, headers, _ = server.request("GET", f"/?token={server.token}&token=x", cookie=False)
    assert status == 403 and "set-cookie" not in headers


def test_cookie_of_another_port_and_a_prefix_of_the_token_are_refused(server: WebServer) -> None:
    for value in (f"sandchat_{server.port}0={server.token}", f"sandchat_{server.port}={server.token[:-1]}",
                  f"sandchat_{server.port}={server.token}x", f"sandchat_{server.port}=", f" sandchat_{server.port}"):  # fmt: skip
        assert server.request("GET", "/api/state", cookie=False, headers={"Cookie": value})[0] == 403, value


def test_a_non_ascii_cookie_is_a_refusal_not_a_crash(server: WebServer) -> None:
    # hmac.compare_digest on str raises TypeError for non-ASCII: the gate compares bytes
    answer = get(server, "/api/state", [f"Host: 127.0.0.1:{server.port}", f"Cookie: sandchat_{server.port}=\xe9\xff"])
    assert status_of(answer) == 403
    answer = get(server, "/?token=%C3%A9%FF", [f"Host: 127.0.0.1:{server.port}"])
    assert status_of(answer) == 403


def test_the_token_never_leaves_in_a_referer_or_body(server: WebServer) -> None:
    status, headers, _ = server.request("GET", f"/?token={server.token}", cookie=False)
    assert status == 303 and headers["referrer-policy"] == "no-referrer" and headers["location"] == "/"
    for path in ("/", "/static/app.js", "/api/state", "/api/plugins", "/api/conversations", "/api/tokens", "/api/nope"):
        status, headers, body = server.request("GET", path)
        assert server.token.encode() not in body, path
        assert server.token not in json.dumps({k: v for k, v in headers.items() if k != "set-cookie"}), path
    for refused in (server.request("GET", "/api/state", cookie=False), server.request("GET", "/api/state", headers={"Host": "evil"})):
        assert server.token.encode() not in refused[2]


@pytest.mark.parametrize(
    "target",
    [
        "/static/..%2f..%2fapp/cli.py",
        "/static/%2e%2e/%2e%2e/app/cli.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static/..\\..\\app\\cli.py",
        "/static/..%5c..%5capp%5ccli.py",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "//etc/passwd",
        "/static/app.js/../../app/cli.py",
        "/static/app.js%00.py",
        "/static/",
        "/static",
        "/static/index.html",
        "/app/cli.py",
        "/static/app.js;../../app/cli.py",
        "/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_static_traversal_and_listing_reach_no_disk(server: WebServer, target: str) -> None:
    answer = get(server, target, [f"Host: 127.0.0.1:{server.port}", cookie(server)])
    body = answer.split(b"\r\n\r\n", 1)[-1]
    assert status_of(answer) in (400, 404, 405), answer[:300]
    assert b"import " not in body and b"root:" not in body and b"<li>" not in body and b"[project]" not in body


# -- 2. resource exhaustion -------------------------------------------------------------


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """A server of its own for the attacks that try to wear it down."""
    home = tmp_path_factory.mktemp("victim") / "home"
    with WebServer(home, "-p", "mirror", "--plugins-dir", str(REDTEAM_PLUGINS)) as running:
        yield running


def still_serves(web: WebServer) -> None:
    status, _, body = web.request("GET", "/api/state")
    assert status == 200 and b'"messages"' in body


@pytest.mark.timeout(60)
def test_slowloris_does_not_starve_a_real_client(victim: WebServer) -> None:
    held = []
    try:
        for _ in range(400):
            sock = socket.create_connection(("127.0.0.1", victim.port), timeout=5)
            sock.sendall(f"GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:{victim.port}\r\nX-a: ".encode())
            held.append(sock)
        for sock in held[::2]:
            sock.sendall(b"b\r\nX-c: d")  # trickle one more piece: the connections stay half-open
        still_serves(victim)
    finally:
        for sock in held:
            sock.close()
    still_serves(victim)


@pytest.mark.timeout(60)
def test_half_open_bodies_do_not_starve_a_real_client(victim: WebServer) -> None:
    held = []
    try:
        for _ in range(100):
            sock = socket.create_connection(("127.0.0.1", victim.port), timeout=5)
            head = (f"POST /api/system HTTP/1.1\r\nHost: 127.0.0.1:{victim.port}\r\nCookie: {victim.cookie}\r\n"
                    f"Origin: {victim.origin}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{")  # fmt: skip
            sock.sendall(head.encode())
            held.append(sock)
        still_serves(victim)
        status, _, _ = victim.post("/api/system", {"text": "still mine"})
        assert status == 200
    finally:
        for sock in held:
            sock.close()
    still_serves(victim)


@pytest.mark.parametrize("size", [40_000, 100_000, 1_000_000])
def test_oversized_headers_are_one_refusal(victim: WebServer, size: int) -> None:
    answer = get(victim, "/api/state", [f"Host: 127.0.0.1:{victim.port}", cookie(victim), "X-Big: " + "a" * size])
    assert 400 <= status_of(answer) < 500 or answer == b"", answer[:200]
    still_serves(victim)


def test_many_headers_are_one_refusal(victim: WebServer) -> None:
    answer = get(victim, "/api/state", [f"Host: 127.0.0.1:{victim.port}", cookie(victim), *(f"X-{i}: v" for i in range(5000))])
    assert 400 <= status_of(answer) < 500 or answer == b"", answer[:200]
    still_serves(victim)


def chunked(web: WebServer, path: str, total: int, *, kind: str = "application/json") -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\nCookie: {web.cookie}\r\nOrigin: {web.origin}\r\n"
            f"Content-Type: {kind}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()  # fmt: skip
    piece = b'{"text": "' + b"x" * 65536
    with socket.create_connection(("127.0.0.1", web.port), timeout=30) as sock:
        sock.sendall(head)
        sent = 0
        try:
            while sent < total:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
                piece = b"x" * 65536
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: what it said is still there to read
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


@pytest.mark.timeout(60)
def test_a_chunked_body_without_length_beyond_a_mebibyte_is_413(victim: WebServer) -> None:
    answer = chunked(victim, "/api/system", 8 << 20)
    assert status_of(answer) == 413, answer[:300]
    assert answer.split(b"\r\n\r\n", 1)[1].count(b"\n") == 1
    still_serves(victim)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", ["/api/stop", "/api/new", "/api/grant", "/api/chat"])
def test_a_chunked_flood_on_every_post_route_is_refused(victim: WebServer, path: str) -> None:
    answer = chunked(victim, path, 4 << 20)
    assert status_of(answer) in (400, 413), answer[:300]
    still_serves(victim)


@pytest.mark.timeout(60)
def test_a_lying_content_length_is_refused(victim: WebServer) -> None:
    for length in ("-1", "1e9", "0x10", "99999999999999999999", "1,1"):
        answer = raw(victim.port, (f"POST /api/system HTTP/1.1\r\nHost: 127.0.0.1:{victim.port}\r\nCookie: {victim.cookie}\r\n"
                                   f"Origin: {victim.origin}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
                                   "Connection: close\r\n\r\n{}").encode(), timeout=10)  # fmt: skip
        assert 400 <= status_of(answer) < 500, (length, answer[:200])
    still_serves(victim)


@pytest.mark.timeout(90)
def test_many_concurrent_chats_one_runs_the_rest_are_409(victim: WebServer) -> None:
    import concurrent.futures

    def ask(i: int) -> int:
        return victim.post("/api/chat", {"text": f"hello {i}"})[0]

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(ask, range(40)))
    assert set(statuses) <= {200, 409} and statuses.count(200) >= 1, statuses
    still_serves(victim)


@pytest.mark.parametrize(
    "body",
    [
        b'{"text": ' + b"9" * 100_000 + b"}",
        b'{"text": 1e99999}',
        b'{"text": -Infinity}',
        b'{"text": NaN}',
        b'{"id": ' + b"1" * 5000 + b', "yes": true}',
        b'{"text": "\\ud800"}',
        b'{"text": "a", "text": {"$ref": 1}}',
        b"\xef\xbb\xbf{}",
        b'{"text": "\xc3\x28"}',
        b"\x00" * 1000,
        b'{"text": "' + b"\\u0000" * 1000 + b'"}',
        b"{" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    ],
)
def test_hostile_json_is_a_4xx_line_and_the_server_goes_on(victim: WebServer, body: bytes) -> None:
    headers = {"Origin": victim.origin, "Content-Type": "application/json"}
    for path in ("/api/system", "/api/grant", "/api/open", "/api/switch"):
        status, _, answer = victim.request("POST", path, headers=headers, body=body)
        assert status < 500, (path, status, answer[:200])
        if status >= 400:
            assert answer.decode().count("\n") == 1 and "Traceback" not in answer.decode()
    still_serves(victim)
    victim.post("/api/system", {"text": ""})


def test_a_lone_surrogate_system_prompt_does_not_break_the_page(victim: WebServer) -> None:
    headers = {"Origin": victim.origin, "Content-Type": "application/json"}
    try:
        victim.request("POST", "/api/system", headers=headers, body=b'{"text": "x\\udc80y"}')
        still_serves(victim)  # the page's first request: a 500 here is a page that never loads
    finally:
        victim.post("/api/system", {"text": ""})


@pytest.mark.timeout(60)
def test_a_lone_surrogate_message_does_not_break_the_chat_or_the_page(victim: WebServer) -> None:
    headers = {"Origin": victim.origin, "Content-Type": "application/json"}
    status, _, answer = victim.request("POST", "/api/chat", headers=headers, body=b'{"text": "hi \\ud83d there"}')
    assert status < 500, answer[:300]
    still_serves(victim)
    status, _, body = victim.request("GET", "/api/conversations")
    assert status == 200, body[:300]
    assert victim.post("/api/new", {})[0] == 200
