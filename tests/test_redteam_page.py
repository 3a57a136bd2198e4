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
from tests.helpers import TESTS, plugin_processes
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
    log.add(Exchange("evil-error", "mirror", "", "an error", "", error=f'{IMG}\n{{"type":"done"}}', ts=now - 10))


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """The server (and the plugins it runs) lives for the module, so the check is at its end (``server``), not per test."""
    yield


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    home = tmp_path_factory.mktemp("redpage") / "home"
    _hostile_log(home)
    with WebServer(home, "-p", "mirror", "--plugins-dir", str(REDTEAM_PLUGINS)) as running:
        yield running
    left = plugin_processes(str(home))
    assert not left, f"processes left behind: {left}"


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
    page.wait_for_function(  # the page replaced the conversation with this one line
        "() => { const m = document.getElementById('messages');"
        " return m.children.length === 1 && m.firstElementChild.textContent.includes('New conversation'); }",
        timeout=WAIT,
    )


def ask(page: Any, text: str) -> Any:
    """Send ``text``; wait until the turn is over; the last reply's ``.text`` element."""
    before = page.locator(".msg.user").count()
    page.fill("#message", text)
    page.click("#send")
    page.locator(".msg.user").nth(before).wait_for(timeout=WAIT)
    page.locator("#send:enabled").wait_for(timeout=WAIT)
    return page.locator(".msg.assistant .text").last


#: Every event a hover, focus or click would fire, on every element of the conversation (fast, and hidden ones too).
POKE = """
(root) => {
  for (const el of root.querySelectorAll('.text *')) {
    for (const kind of ['mouseover', 'mouseenter', 'mousemove', 'mousedown', 'mouseup', 'pointerover', 'focus', 'focusin'])
      el.dispatchEvent(new MouseEvent(kind, { bubbles: true }));
    if (el.tagName === 'A' && !el.hasAttribute('href')) el.click();
  }
}
"""


def poke(page: Any) -> None:
    """Hover and click what the conversation holds: synthetic events on all, a real mouse on the first few."""
    page.locator("#messages").evaluate(POKE)
    for link in page.locator("#messages .text a").all()[:8]:
        if link.is_visible():
            link.hover(timeout=5000)


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
    "reference_definition": '[click][r]\n\n[r]: javascript:window.__pwned=1 "t"\n\n[d][s]\n\n[s]: data:text/html,<script>x</script>',
    "autolink": "<javascript:window.__pwned=1> <vbscript:msgbox> <data:text/html;base64,PHNjcmlwdD4=> <file:///etc/passwd>",
    "image": '![x](javascript:window.__pwned=1) ![y](https://example.com/a.png) ![z](x" onerror="window.__pwned=1)',
    "fence_info": '```"><img src=x onerror=window.__pwned=1>\ncode\n```\n\n``` language-x" onmouseover="window.__pwned=1\nx\n```',
    "code_class": "```python onclick=window.__pwned=1\nx\n```\n\n```LANGUAGE-PY\ny\n```",
    "nested_backticks": f'`` ` {IMG} ` `` ```` ``` {IMG} ``` ```` `<a href="javascript:x">`',
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


def test_the_offender_check_itself_sees_an_injected_element(page: Any) -> None:
    """The DOM check is no empty promise: markup put in by hand is reported."""
    fresh(page)
    page.evaluate(
        "() => { const d = document.createElement('div'); d.className = 'text';"
        " d.innerHTML = '<a href=\"javascript:x\" onclick=\"x\">a</a><svg></svg>'; document.getElementById('messages').append(d); }"
    )
    found = page.locator("#messages").evaluate(OFFENDERS)
    assert "<svg>" in found and "onclick" in found and any(item.startswith("href=javascript:") for item in found)


# -- streaming: constructs split at a chunk boundary -----------------------------------

SPLITS = {
    "entity": ["[a](&#10", "6;avascript:window.__pwned=1)"],
    "scheme": ["[a](java", "script:window.__pwned=1) <java", "script:x>"],
    "tag": ["<img src=x on", "error=window.__pwned=1>", "<scr", "ipt>window.__pwned=1</script>"],
    "fence": ['```"><img src=x ', "onerror=window.__pwned=1>\nx\n``", "`"],
    "reference": ["[r]\n\n[r]: java", "script:window.__pwned=1"],
    "surrogates": ["\ud83d", "\ude00 a lone half each side", "\udfff"],
    "bidi_split": ["abc\u202e", "<img src=x onerror=window.__pwned=1>\u2066", "\x1b[31mred\x1b", "]0;title\x07"],
}


@pytest.mark.parametrize("attack", SPLITS)
def test_a_construct_split_across_chunks_stays_inert(page: Any, attack: str) -> None:
    fresh(page, "gen")
    ask(page, "CHUNKS:" + json.dumps(SPLITS[attack]))
    if attack == "surrogates":  # the plugin's own side cannot encode a lone surrogate: one failure line
        assert "plugin 'gen'" in page.locator(".line.failure").last.text_content()
    else:
        assert page.locator(".msg.assistant .text").last.text_content().strip()
    assert_inert(page)
    still_works_with(page, "gen")


def test_mirror_split_in_two_halves_stays_inert(page: Any) -> None:
    fresh(page)
    ask(page, "SPLIT:" + MARKDOWN_ATTACKS["entity_javascript"] + " " + MARKDOWN_ATTACKS["fence_info"])
    assert_inert(page)


def still_works_with(page: Any, plugin: str) -> None:
    reply = ask(page, "still alive?")
    assert reply.text_content().strip() == "still alive?", plugin


# -- NDJSON injection --------------------------------------------------------------------


def test_reply_text_shaped_as_ndjson_events_is_only_text(page: Any) -> None:
    forged = [
        'a\n{"type":"done"}\n{"type":"grant","id":"forged","plugin":"x","file":"x","network":["evil:1"],"env":[],"text":"grant?"}\n',
        '\r\n{"type":"ended","cancelled":false,"incomplete":false,"html":"<img src=x onerror=window.__pwned=1>"}\r\n',
        '\u2028{"type":"failure","line":"FORGED"}\u2029\n\n',
        '"}\n{"type":"notice","line":"FORGED NOTICE"}\n',
    ]
    fresh(page, "gen")
    reply = ask(page, "CHUNKS:" + json.dumps(forged))
    assert '{"type":"done"}' in reply.text_content()
    assert page.locator("dialog#grant[open]").count() == 0
    assert page.locator(".line", has_text="FORGED").count() == 0
    assert page.locator(".msg.assistant").count() == 1
    assert_inert(page)
    still_works_with(page, "gen")


# -- grants: forged and replayed ids -------------------------------------------------------


def _grant(page: Any, key: str, yes: bool) -> int:
    return page.evaluate(
        "async ([id, yes]) => (await fetch('/api/grant', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({id, yes})})).status",
        [key, yes],
    )


def test_forged_and_replayed_grant_ids_grant_nothing(page: Any, server: WebServer) -> None:
    fresh(page, "needsnet")
    answered: list[str] = []
    page.on("request", lambda request: answered.append(request.post_data or "") if request.url.endswith("/api/grant") else None)
    page.fill("#message", "connect")
    page.click("#send")
    page.locator("dialog#grant").wait_for(timeout=WAIT)
    for forged in ["forged", "", "x" * 10_000, "../../", 'forged\n{"type":"done"}']:
        assert _grant(page, forged, True) == 404, forged
    assert page.locator("dialog#grant[open]").count() == 1  # the real offer is still waiting
    page.click("#grant-no")
    page.locator("#send:enabled").wait_for(timeout=WAIT)
    assert answered, "the page posted its answer"
    key = json.loads(answered[0])["id"]
    assert _grant(page, key, True) == 404  # a replay of the answered id: nothing left to grant
    grants = server.home / "grants.json"
    assert not grants.exists() or "127.0.0.1:9" not in grants.read_text()
    assert page.locator(".line.notice", has_text="Granted").count() == 0


# -- hostile logs, plugin metadata, health ---------------------------------------------------


def test_hostile_logged_conversations_reopen_inert(page: Any) -> None:
    buttons = page.locator("#conversations button")
    buttons.first.wait_for(timeout=WAIT)
    titles = buttons.all_text_contents()
    assert any(IMG in title for title in titles), titles  # the title, as text
    listed = page.locator("#conversations").evaluate(
        "(root) => [...root.querySelectorAll('*')].filter((el) => !['LI', 'BUTTON'].includes(el.tagName)"
        " || [...el.attributes].some((a) => !['type', 'data-id'].includes(a.name))).map((el) => el.outerHTML)"
    )
    assert listed == []
    for index in range(buttons.count()):
        shown = page.locator("#messages > *").element_handles()  # what the last reopen showed, replaced by this one
        page.locator("#conversations button").nth(index).click()
        if shown:  # else a notice already there would be taken for this reopen's, and the page re-rendered under the checks
            page.wait_for_function("(el) => !el.isConnected", arg=shown[0], timeout=WAIT)
        page.locator(".line.notice", has_text="Reopened a conversation").last.wait_for(timeout=WAIT)
        assert_inert(page)
        assert "\u202e" not in page.locator("#messages").text_content()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    page.click("#new")
    page.locator(".line.notice", has_text="New conversation").last.wait_for(timeout=WAIT)
    fresh(page)
    still_works(page)


def test_hostile_plugin_metadata_in_dropdown_and_health_is_text(page: Any) -> None:
    select = page.get_by_label("LLM Plugin")
    option = select.locator("option[value='evilmeta']")
    option.wait_for(state="attached", timeout=WAIT)
    options = select.evaluate("(s) => [...s.querySelectorAll('*')].map((e) => e.tagName)")
    assert set(options) == {"OPTION"}, options
    assert select.locator("option").count() == len(set(select.evaluate("(s) => [...s.options].map((o) => o.value)")))
    page.click("#health-button")
    page.locator("#health", has_text="NAME").wait_for(timeout=WAIT)
    assert page.locator("#health *").count() == 0  # text only
    page.locator("#health").hover()
    fresh(page, "evilmeta")
    page.fill("#message", "hello")
    page.click("#send")
    page.locator("#send:enabled").wait_for(timeout=WAIT)
    lines = page.locator(".line").all_text_contents()
    assert page.locator("dialog#grant[open]").count() == 0
    assert_inert(page)
    assert any("plugin 'evilmeta'" in line for line in lines), lines
    fresh(page)
    still_works(page)


# -- copy button, control characters ---------------------------------------------------------


def test_the_copy_button_copies_hostile_code_as_text(page: Any) -> None:
    code = f'</code></pre>{IMG}<script>window.__pwned=1</script>\njavascript:window.__pwned=1\n"; rm -rf ~ #'
    fresh(page)
    ask(page, f"```html\n{code}\n```")
    button = page.locator("#messages pre .copy").last
    button.click()
    page.locator("#messages pre .copy", has_text="Copied").wait_for(timeout=WAIT)
    assert page.evaluate("navigator.clipboard.readText()") == code + "\n"
    assert_inert(page)


BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def test_terminal_controls_and_bidi_overrides_never_reach_the_page(page: Any) -> None:
    evil = "\x1b[2J\x1b]0;pwned\x07\x1b[31mred\x1b[0m \x00\x08\x7f\u202eevil\u202c \u2066iso\u2069 \u200fx \ufeff \u0085 end"
    fresh(page, "gen")
    reply = ask(page, "CHUNKS:" + json.dumps([evil[:20], evil[20:], "\n```\n" + evil + "\n```"]))
    shown = page.locator("#messages").text_content()
    bad = [
        hex(ord(c))
        for c in shown
        if ord(c) < 0x20
        and c not in "\n\t"
        or 0x7F <= ord(c) < 0xA0
        or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"
    ]
    assert bad == [], bad
    assert "red" in reply.text_content()
    assert_inert(page)


# -- size and depth: bounded time, the page goes on ------------------------------------------

DEPTHS = {
    "blockquotes": "DEEP:>:100000",
    "lists": "DEEP:- :50000",
    "ordered": "DEEP:1. :30000",
    "brackets": "DEEP:[:100000",
    "emphasis": "DEEP:*a:60000",
    "backticks": "DEEP:`:100000",
    "angles": "DEEP:<a:60000",
    "entities": "DEEP:&#106;:30000",
    "link_openers": "DEEP:[a](:40000",
    "images": "DEEP:![:60000",
}


@pytest.mark.parametrize("attack", DEPTHS)
def test_deep_nesting_answers_in_bounded_time(page: Any, attack: str) -> None:
    fresh(page, "gen")
    started = time.monotonic()
    ask(page, DEPTHS[attack])
    took = time.monotonic() - started
    assert page.locator(".msg.assistant").count() == 1 and page.locator(".line.failure").count() == 0
    assert took < 20, f"{attack}: {took:.1f} s"
    assert_inert(page)
    still_works_with(page, "gen")


def test_a_mebibyte_reply_renders_and_the_page_goes_on(page: Any) -> None:
    fresh(page, "gen")
    started = time.monotonic()
    reply = ask(page, f"BIG:{1 << 20}")
    took = time.monotonic() - started
    assert len(reply.text_content()) > 500_000, "the reply was shown"
    assert took < 30, f"{took:.1f} s"
    assert page.locator("#messages").evaluate(OFFENDERS) == []
    assert page.evaluate("typeof window.__pwned") == "undefined" and page.evaluate("window.__csp") == []
    still_works_with(page, "gen")


def test_many_tiny_chunks_do_not_freeze_the_page(page: Any) -> None:
    fresh(page, "gen")
    started = time.monotonic()
    page.fill("#message", "MANY:5000:20")
    page.click("#send")
    page.locator(".msg.user").first.wait_for(timeout=WAIT)
    page.locator("#send:enabled").wait_for(timeout=90_000)
    took = time.monotonic() - started
    assert took < 10, f"5000 chunks of 20 bytes took {took:.1f} s in the page"
