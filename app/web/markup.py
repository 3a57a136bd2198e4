"""Plugin Markdown to HTML that is safe to put in the page: rendered without raw HTML, then sanitised by allow-list.

Two independent layers, so that a flaw in one is not a hole: markdown-it-py renders
CommonMark with raw HTML turned off (``<script>`` in a reply comes out as text) and its
own link check (no ``javascript:``, ``vbscript:``, ``file:``, most ``data:``); then nh3
(the ammonia sanitiser) keeps only the tags and attributes listed here, links only to
``http``, ``https`` and ``mailto`` (no relative ones: they would point into this server) and gives every link ``rel="noopener noreferrer"``.
A code fence's info string may name a language (``class="language-python"``) and
nothing else. The text has been through ``runner.clean_text`` first: no control
characters, no bidirectional overrides.
"""

from __future__ import annotations

import functools
import re

import nh3
from markdown_it import MarkdownIt

import runner

__all__ = ["to_html"]

_TAGS = {
    "p", "pre", "code", "em", "strong", "del", "ul", "ol", "li", "blockquote", "a", "br", "hr",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES: dict[str, set[str]] = {"*": set(), "a": {"href"}, "code": {"class"}, "ol": {"start"}}  # "*": no title, no lang
_SCHEMES = {"http", "https", "mailto"}
_LANGUAGE = re.compile(r"language-[a-z0-9+-]{1,30}")


@functools.cache
def _renderer() -> MarkdownIt:
    # commonmark with tables; html off: raw HTML in the text is escaped, never passed on
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table").enable("strikethrough")


def _attribute(tag: str, name: str, value: str) -> str | None:
    """Keep a code block's ``language-NAME`` class (lower-case letters, digits, + and -); drop any other class."""
    if tag == "code" and name == "class":
        return value if _LANGUAGE.fullmatch(value) else None
    if tag == "ol" and name == "start":
        return value if value.isdigit() and len(value) < 10 else None
    return value


@functools.cache
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=_TAGS,
        clean_content_tags={"script", "style"},
        attributes=_ATTRIBUTES,
        attribute_filter=_attribute,
        url_schemes=_SCHEMES,
        url_relative="deny",  # a relative link would point into this server (its API)
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def to_html(text: str) -> str:
    """``text`` (Markdown from a plugin) as sanitised HTML."""
    return _cleaner().clean(_renderer().render(runner.clean_text(text)))
