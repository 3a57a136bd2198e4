"""The browser chat in a real headless Chromium (Debian's), driven by Playwright, against a real ``sandchat web``.

Every plugin here is a real sandboxed subprocess (tests/webplugins): a slow streamer, an
echo of the history, a crasher, a hanger, a hostile one. Waits are on the page's own
elements (Playwright locators, with deadlines), never sleeps.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.chatlog import ChatLog
from tests.webkit import WebServer, chromium, have_chromium, have_web_extra

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.skipif(not have_web_extra(), reason="the [web] extra is not installed (pip install -e '.[web]')"),
    pytest.mark.skipif(not have_chromium(), reason="needs Debian's chromium (/usr/bin/chromium) and the playwright package"),
]

WAIT = 30_000  # ms: a plugin start on a loaded two-core machine, and then some


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebServer]:
    with WebServer(tmp_path / "home", "-p", "trickle", env={"SANDCHAT_DISABLE_PLUGINS": "offswitch"}) as running:
        yield running


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "profile") as context:
        yield context


def opened(browser: Any, web: WebServer) -> Any:
    page = browser.new_page()
    page.goto(web.url)
    page.locator("body[data-ready='1']").wait_for(timeout=WAIT)
    return page


def send(page: Any, text: str) -> None:
    page.fill("#message", text)
    page.click("#send")


def reply_done(page: Any) -> None:
    """Wait until the turn is over: Send is enabled again."""
    page.locator("#send:enabled").wait_for(timeout=WAIT)


def choose(page: Any, name: str) -> None:
    page.get_by_label("LLM Plugin").select_option(name)
    page.locator(".line.notice", has_text=f"Now chatting with {name!r}").wait_for(timeout=WAIT)


def option_texts(page: Any) -> dict[str, str]:
    select = page.get_by_label("LLM Plugin")
    return {option.get_attribute("value"): option.text_content() for option in select.locator("option").all()}


def test_the_llm_plugin_dropdown_lists_every_plugin_with_its_state(browser: Any, web: WebServer) -> None:
    page = opened(browser, web)
    select = page.get_by_label("LLM Plugin")  # the <label for> names the <select>
    assert select.evaluate("element => element.tagName") == "SELECT"
    select.locator("option", has_text="broken — failed: ").wait_for(state="attached", timeout=WAIT)
    select.locator("option", has_text="recall — ready").wait_for(state="attached", timeout=WAIT)
    select.locator("option", has_text="hostile — not ready: ").wait_for(state="attached", timeout=WAIT)
    options = option_texts(page)
    assert {"trickle", "recall", "crasher", "hanger", "hostile", "broken", "offswitch", "echo"} <= set(options)
    assert options["trickle"] == "trickle — ready" and select.input_value() == "trickle"
    assert options["offswitch"] == "offswitch — disabled"
    assert "SyntaxError" in options["broken"]
    assert "<img src=x onerror=window.__pwned=1>" in options["hostile"]  # the plugin's words, as text


def test_a_reply_streams_in_pieces_and_stop_keeps_the_partial_text(browser: Any, web: WebServer) -> None:
    page = opened(browser, web)
    send(page, "count for me")
    reply = page.locator(".msg.assistant .text").last
    page.locator(".msg.assistant .text", has_text="piece1 ").wait_for(timeout=WAIT)
    early = reply.text_content()
    page.locator(".msg.assistant .text", has_text="piece4 ").wait_for(timeout=WAIT)
    later = reply.text_content()
    assert early != later and later.startswith(early.rstrip()) and "piece39" not in later  # seen while it grew
    page.click("#stop")
    page.locator(".line.mark", has_text="⏹ [cancelled]").wait_for(timeout=WAIT)
    reply_done(page)
    kept = reply.text_content().strip()
    assert kept.startswith("piece0 piece1 piece2 piece3 piece4") and "piece39" not in kept
    messages = json.loads(web.request("GET", "/api/state")[2])["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[1]["text"].strip() == kept
    logged = ChatLog(web.home / "logs.db").recent(1)[0]
    assert logged.cancelled and logged.response.strip() == kept and logged.error is None
    assert page.locator(".line.failure").count() == 0  # a Stop is not a failure


def test_switching_plugin_keeps_the_conversation_and_the_new_plugin_sees_it(browser: Any, web: WebServer) -> None:
    page = opened(browser, web)
    choose(page, "echo")
    send(page, "first words")
    page.locator(".msg.assistant .text", has_text="echo: first words").wait_for(timeout=WAIT)
    reply_done(page)
    choose(page, "recall")
    send(page, "second words")
    page.locator(".msg.assistant .text", has_text="recall saw").wait_for(timeout=WAIT)
    reply_done(page)
    assert page.locator(".msg.assistant .text").last.text_content().strip() == "recall saw first words | echo: first words | second words"
    assert page.locator(".msg.user").count() == 2  # the earlier exchange is still on the page


def test_a_crashing_or_hanging_plugin_costs_one_line_and_the_page_goes_on(browser: Any, web: WebServer) -> None:
    page = opened(browser, web)
    choose(page, "crasher")
    send(page, "boom")
    reply_done(page)
    failures = page.locator(".line.failure")
    assert failures.count() == 1 and "plugin 'crasher'" in failures.first.text_content()
    choose(page, "hanger")
    send(page, "anyone there?")
    reply_done(page)  # its first_chunk deadline (3 s in the test's config.toml) ends it
    assert failures.count() == 2 and "plugin 'hanger'" in failures.last.text_content()
    choose(page, "recall")
    send(page, "still here?")
    page.locator(".msg.assistant .text", has_text="recall saw still here?").wait_for(timeout=WAIT)
    reply_done(page)
    assert failures.count() == 2  # one line each, and nothing else broke
    assert page.locator(".msg.assistant").count() == 1  # the failed replies left no empty bubble


HOSTILE_TAGS = "#messages script, #messages img, #messages iframe, #messages svg, #messages [onerror], #messages [onmouseover]"


def _assert_inert(page: Any) -> None:
    links = page.locator("#messages a").all()
    assert links, "the safe link should have been kept"
    for link in links:
        href = link.get_attribute("href")
        assert href is None or href.startswith(("http://", "https://", "mailto:")), href
        assert link.get_attribute("rel") == "noopener noreferrer"
        if href is None:
            link.click()  # a dangerous href was removed: clicking it runs nothing
        link.hover()
    for block in page.locator("#messages .text p, #messages .text pre").all():
        block.hover()
    assert page.locator(HOSTILE_TAGS).count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"


def test_a_hostile_plugin_executes_nothing_in_the_page(browser: Any, web: WebServer) -> None:
    page = opened(browser, web)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.get_by_label("LLM Plugin").locator("option", has_text="hostile").wait_for(state="attached", timeout=WAIT)
    choose(page, "hostile")
    send(page, "show me")
    page.locator(".msg.assistant .text", has_text="stays a link").wait_for(timeout=WAIT)
    reply_done(page)
    text = page.locator(".msg.assistant .text").last.text_content()
    assert "<script>window.__pwned=1</script>" in text  # shown as the text it is
    assert page.locator("#messages a", has_text="safe").get_attribute("href") == "https://example.com/"
    _assert_inert(page)
    page.reload()  # the conversation comes back from the server, and from logs.db when reopened
    page.locator("body[data-ready='1']").wait_for(timeout=WAIT)
    page.locator("#conversations button").first.click()
    page.locator(".line.notice", has_text="Reopened a conversation").wait_for(timeout=WAIT)
    _assert_inert(page)
    assert errors == []


class _Evil(BaseHTTPRequestHandler):
    """Another site on another port: its page tries to drive the chat from the user's browser."""

    target = ""

    def do_GET(self) -> None:
        body = (
            f"<!doctype html><script>fetch('{self.target}/api/system', {{method: 'POST', credentials: 'include', mode: 'no-cors',"
            "headers: {'Content-Type': 'text/plain'}, body: JSON.stringify({text: 'pwned'})})"
            ".finally(() => { document.title = 'sent'; });</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_requests_without_the_token_or_from_another_site_or_name_are_refused(tmp_path: Path, web: WebServer) -> None:
    with chromium(tmp_path / "rebind") as browser:
        page = browser.new_page()
        response = page.goto(f"http://127.0.0.1:{web.port}/")  # no token: nothing but one line
        assert response.status == 403 and "token" in page.locator("body").text_content()
        page.goto(web.url)
        page.locator("body[data-ready='1']").wait_for(timeout=WAIT)  # now it has the cookie

        _Evil.target = f"http://127.0.0.1:{web.port}"
        evil = ThreadingHTTPServer(("127.0.0.1", 0), _Evil)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        try:
            other = browser.new_page()
            other.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
            other.wait_for_function("() => document.title === 'sent'", timeout=WAIT)  # the evil page has no CSP: eval is fine there
        finally:
            evil.shutdown()
            evil.server_close()
        assert json.loads(web.request("GET", "/api/state")[2])["system"] == ""  # the cross-site write changed nothing

    # A DNS-rebinding page: its own name resolves to 127.0.0.1, so the browser sends Host: evil.test:PORT.
    with chromium(tmp_path / "rebinding", "--host-resolver-rules=MAP evil.test 127.0.0.1") as rebinding:
        page = rebinding.new_page()
        response = page.goto(f"http://evil.test:{web.port}/?token={web.token}")  # even with the token
        assert response.status == 403 and "Host" in page.locator("body").text_content()


def test_granting_from_the_page_shows_exactly_what_is_granted(browser: Any, web: WebServer) -> None:
    page = opened(browser, web)
    choose(page, "needsnet")
    send(page, "connect")
    dialog = page.locator("dialog#grant")
    dialog.wait_for(timeout=WAIT)
    assert page.locator("#grant-what li").all_text_contents() == ["network: 127.0.0.1:9"]
    assert page.locator("#grant-file").text_content() == "needsnet"
    page.click("#grant-yes")
    page.locator(".line.notice", has_text="Granted 'needsnet' 127.0.0.1:9").wait_for(timeout=WAIT)
    reply_done(page)
    grants = json.loads((web.home / "grants.json").read_text())
    assert "127.0.0.1:9" in json.dumps(grants)


def test_a_screenshot_of_a_real_session_for_the_readme(browser: Any, web: WebServer, tmp_path: Path) -> None:
    """The README's docs/web.png is a copy of this screenshot (the test never writes into the tree)."""
    page = opened(browser, web)
    page.get_by_label("LLM Plugin").locator("option", has_text="broken — failed").wait_for(state="attached", timeout=WAIT)
    page.fill("#system", "Answer briefly.")
    page.click("#system-form button")
    choose(page, "echo")
    send(page, "Show me **Markdown** with code:\n\n```python\nprint('hello from a sandbox')\n```")
    page.locator(".msg.assistant pre .copy").wait_for(timeout=WAIT)
    reply_done(page)
    choose(page, "crasher")
    send(page, "and now crash")
    reply_done(page)
    page.click("#health-button")
    page.locator("#health", has_text="NAME").wait_for(timeout=WAIT)
    page.locator("#tokens", has_text="context window").wait_for(timeout=WAIT)
    shot = tmp_path / "web.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
