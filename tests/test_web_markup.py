"""Plugin Markdown becomes HTML with nothing executable in it: raw HTML, script URLs, attribute tricks."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("nh3", reason="the [web] extra is not installed (pip install -e '.[web]')")
pytest.importorskip("markdown_it", reason="the [web] extra is not installed (pip install -e '.[web]')")

from app.web.markup import to_html  # noqa: E402

pytestmark = pytest.mark.timeout(30)

HOSTILE = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    "[x](javascript:window.__pwned=1)",
    "[x](JaVaScRiPt:window.__pwned=1)",
    "[x](&#106;avascript:window.__pwned=1)",
    "[x](java\tscript:window.__pwned=1)",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html,<script>window.__pwned=1</script>)",
    "<javascript:window.__pwned=1>",
    "[ref]\n\n[ref]: javascript:window.__pwned=1",
    "![a](javascript:window.__pwned=1)",
    '<a href="javascript:window.__pwned=1">raw link</a>',
    "<div onmouseover='window.__pwned=1'>raw block</div>",
    '```x" onmouseover="window.__pwned=1\ncode\n```',
    "<svg><script>window.__pwned=1</script></svg>",
    '<noscript><p title="</noscript><img src=x onerror=window.__pwned=1>">',  # mutation XSS
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__pwned=1>",
    '<iframe src="javascript:window.__pwned=1"></iframe>',
    "<!-- --><script>window.__pwned=1</script> -->",
    "[x](  javascript:window.__pwned=1  )",
    "<style>body{background:url(javascript:x)}</style>",
]

#: What could run or load anything: a tag other than the allowed ones, an event handler, a script URL.
_ALLOWED = {"p", "pre", "code", "em", "strong", "del", "ul", "ol", "li", "blockquote", "a", "br", "hr",
            "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td"}  # fmt: skip


def _problems(html: str) -> list[str]:
    """What in ``html``'s real tags (not escaped text) could run or load anything."""
    found = []
    for tag in re.findall(r"<\s*/?\s*([a-zA-Z][^>]*)>", html):
        name, _, rest = tag.partition(" ")
        if name.lower() not in _ALLOWED:
            found.append(f"tag <{name}>")
        for attr, value in re.findall(r'([a-zA-Z-]+)\s*=\s*("[^"]*"|\S+)', rest):
            value = value.strip('"')
            if attr.lower() not in ("href", "class", "rel", "start"):
                found.append(f"attribute {attr}")
            elif attr == "href" and not value.startswith(("http://", "https://", "mailto:")):
                found.append(f"href {value}")
            elif attr == "class" and not re.fullmatch(r"language-[a-z0-9+-]+", value):
                found.append(f"class {value}")
    return found


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_renders_to_nothing_executable(text: str) -> None:
    html = to_html(text)
    assert _problems(html) == [], html


def test_the_checker_sees_what_it_looks_for() -> None:
    assert _problems('<img src=x onerror="y">') == ["tag <img>", "attribute src", "attribute onerror"]
    assert _problems('<a href="javascript:x">') == ["href javascript:x"]
    assert _problems('<p>&lt;img src=x onerror="y"&gt;</p>') == []  # escaped text is text


def test_links_get_noopener_noreferrer_and_only_web_schemes() -> None:
    html = to_html("[ok](https://example.com/a?b=1) and <https://example.org> and [m](mailto:a@b.c) and [rel](/api/new)")
    assert html.count('rel="noopener noreferrer"') == 4
    assert 'href="https://example.com/a?b=1"' in html and 'href="https://example.org"' in html and 'href="mailto:a@b.c"' in html
    assert 'href="/api/new"' not in html  # relative links would point into this server


def test_markdown_still_renders() -> None:
    html = to_html("# Title\n\n**bold** and `code`\n\n```python\nprint('<b>')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html and "<code>code</code>" in html
    assert "<pre><code class=\"language-python\">print('&lt;b&gt;')\n</code></pre>" in html
    assert "<table>" in html and "<td>2</td>" in html


def test_terminal_controls_are_cleaned_first() -> None:
    assert "\x1b" not in to_html("evil\x1b[2Jtext") and "\u202e" not in to_html("a\u202eb")
