"""Red team of the browser chat's page: hostile plugin text and logs in a real headless Chromium.

Each test is an attack and asserts that it failed: nothing runs (``window.__pwned`` stays
undefined, no Content-Security-Policy violation is reported, which would mean the
sanitiser let something through that only the CSP stopped), no active element or
dangerous link reaches the conversation's DOM, and the page goes on working. Where an
attack succeeds (a hole) the test is ``xfail(strict=True, reason="HOLE: ...")``.

The replies come from real sandboxed plugins in tests/redteam_web: ``mirror`` (the
user's message back) and ``gen`` (exact chunks, big or deep replies).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.chatlog import ChatLog, Exchange
from tests.helpers import TESTS
from tests.webkit import WebServer, chromium, have_chromium, have_web_extra

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not have_web_extra(), reason="the [web] extra is not installed (pip install -e '.[web]')"),
    pytest.mark.skipif(not have_chromium(), reason="needs Debian's chromium (/usr/bin/chromium) and the playwright package"),
]

REDTEAM_PLUGINS = TESTS / "redteam_web"
WAIT = 30_000  # ms
IMG = "<img src=x onerror=window.__pwned=1>"

#: Run in the page before its own script: CSP violations and navigations away are recorded.
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""

#: Offenders in an element's subtree: active or foreign elements, on* / style attributes, dangerous URLs.
OFFENDERS = """
(root) => {
  const bad = [];
  const tags = 'script,iframe,frame,frameset,object,embed,form,input,textarea,select,svg,math,style,link,base,meta,img,'
    + 'video,audio,source,track,picture,template,noscript,dialog,details,marquee,applet,portal,xmp,noembed,plaintext';
  for (const el of root.querySelectorAll(tags)) bad.push('<' + el.tagName.toLowerCase() + '>');
  for (const el of root.querySelectorAll('*')) {
    if (el.tagName === 'BUTTON' && el.className === 'copy') continue;
    if (el.tagName === 'BUTTON') bad.push('<button>');
    for (const attr of el.attributes) {
      const name = attr.name.toLowerCase();
      const value = attr.value.replace(/[\\u0000-\\u0020]/g, '').toLowerCase();
      if (name.startsWith('on') || name === 'style' || name === 'srcdoc' || name === 'formaction') bad.push(name);
      if (/^(javascript|data|vbscript|file):/.test(value)) bad.push(name + '=' + value.slice(0, 40));
      if (['href', 'src', 'action', 'xlink:href', 'background', 'poster'].includes(name) && !/^(https?:|mailto:)/.test(value))
        bad.push(name + '=' + value.slice(0, 40));
    }
  }
  return bad;
}
"""


def _hostile_log(home: Path) -> None:
    """logs.db as a hostile plugin (or a tampered file) left it: titles and replies that are markup."""
    home.mkdir(parents=True, exist_ok=True)
    log = ChatLog(home / "logs.db")
    now = time.time()
    log.add(Exchange("evil-title", "mirror", f"{IMG}</textarea>", f'{IMG}"><script>window.__pwned=1</script>\u202e',
                     f"[x](javascript:window.__pwned=1) {IMG}\n\n<svg onload=window.__pwned=1>", ts=now - 100))  # fmt: skip
    log.add(Exchange("evil-plugin", f"{IMG}", "", "plugin name is markup", "fine", ts=now - 50))
    log.add(Exchange("evil-error", "mirror", "", "an error", "", error=f"{IMG}\n{{\"type\":\"done\"}}", ts=now - 10))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    home = tmp_path_factory.mktemp("redpage") / "home"
    _hostile_log(home)
    with WebServer(home, "-p", "mirror", "--plugins-dir", str(REDTEAM_PLUGINS)) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("redpage-profile")) as context:
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        context.add_init_script(WATCH)
        yield context


@pytest.fixture
def page(browser: Any, server: WebServer) -> Iterator[Any]:
    opened = browser.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(server.url)
    opened.locator("body[data-ready='1']").wait_for(timeout=WAIT)
    opened.errors = errors
    yield opened
    opened.close()


def fresh(page: Any, plugin: str = "mirror") -> None:
    """A new conversation with ``plugin``, so each attack starts from an empty page."""
    page.locator("#send:enabled").wait_for(timeout=WAIT)
    if page.get_by_label("LLM Plugin").input_value() != plugin:
        page.get_by_label("LLM Plugin").select_option(plugin)
        page.locator(".line.notice", has_text=f"Now chatting with {plugin!r}").wait_for(timeout=WAIT)
    page.click("#new")
    page.locator(".line.notice", has_text="New conversation").wait_for(timeout=WAIT)


def ask(page: Any, text: str) -> Any:
    """Send ``text``; wait until the turn is over; the last reply's ``.text`` element."""
    before = page.locator(".msg.user").count()
    page.fill("#message", text)
    page.click("#send")
    page.locator(".msg.user").nth(before).wait_for(timeout=WAIT)
    page.locator("#send:enabled").wait_for(timeout=WAIT)
    return page.locator(".msg.assistant .text").last


def poke(page: Any) -> None:
    """Hover and click whatever the conversation holds (links without a safe href only)."""
    for element in page.locator("#messages .text *").all()[:200]:
        try:
            element.hover(timeout=2000)
        except Exception:  # noqa: BLE001 - an element out of view or detached is no attack
            pass
    for link in page.locator("#messages a").all()[:50]:
        if link.get_attribute("href") is None:
            link.click(timeout=2000)


def assert_inert(page: Any, root: str = "#messages") -> None:
    poke(page)
    offenders = page.locator(root).evaluate(OFFENDERS)
    assert offenders == [], offenders
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("window.__csp") == [], "the sanitiser let through something only the CSP stopped"
    assert page.evaluate("location.pathname") == "/"  # no navigation away
    assert page.errors == []


def still_works(page: Any) -> None:
    reply = ask(page, "still alive?")
    assert reply.text_content().strip() == "still alive?"


# -- Markdown / HTML mXSS through the reply ----------------------------------------------

MARKDOWN_ATTACKS = {
    "raw_html": f"<script>window.__pwned=1</script>{IMG}<svg onload=window.__pwned=1><iframe srcdoc='x'></iframe>",
    "entity_javascript": "[a](&#106;avascript:window.__pwned=1) [b](&#x6A;avascript&colon;window.__pwned=1)",
    "tab_in_scheme": "[a](jav&#x09;ascript:window.__pwned=1) [b](java\tscript:window.__pwned=1) [c](&#14;javascript:alert(1))",
    "reference_definition": "[click][r]\n\n[r]: javascript:window.__pwned=1 \"t\"\n\n[d][s]\n\n[s]: data:text/html,<script>x</script>",
    "autolink": "<javascript:window.__pwned=1> <vbscript:msgbox> <data:text/html;base64,PHNjcmlwdD4=> <file:///etc/passwd>",
    "image": "![x](javascript:window.__pwned=1) ![y](https://example.com/a.png) ![z](x\" onerror=\"window.__pwned=1)",
    "fence_info": f'```"><img src=x onerror=window.__pwned=1>\ncode\n```\n\n``` language-x" onmouseover="window.__pwned=1\nx\n```',
    "code_class": '```python onclick=window.__pwned=1\nx\n```\n\n```LANGUAGE-PY\ny\n```',
    "nested_backticks": f"`` ` {IMG} ` `` ```` ``` {IMG} ``` ```` `<a href=\"javascript:x\">`",
    "table_html": f"| a | b |\n|---|---|\n| {IMG} | <a href=javascript:x>x</a> |\n| `|` | [c](javascript:x) |",
    "link_title": '[a](https://example.com/ "x\\" onmouseover=\\"window.__pwned=1") [b](<https://e.com/"onclick="x>)',
    "relative_links": "[api](/api/new) [p](//evil.example/) [q](?token=x) [h](#x)",
    "html_comment": "<!-- --><img src=x onerror=window.__pwned=1><!-- -->",
    "mixed_entities": "&lt;img src=x onerror=window.__pwned=1&gt; &amp;lt;script&amp;gt; &#60;svg onload=x&#62;",
}


@pytest.mark.parametrize("attack", MARKDOWN_ATTACKS)
def test_hostile_markdown_renders_inert(page: Any, attack: str) -> None:
    fresh(page)
    reply = ask(page, MARKDOWN_ATTACKS[attack])
    assert reply.text_content().strip(), "the reply was shown"
    assert_inert(page)
