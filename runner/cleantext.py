"""Terminal-safe text: the one sanitiser for every string a plugin produced.

Metadata, class names and docstrings, error text, stderr and replies all go through
:func:`clean_text` (whole strings) or a :class:`StreamCleaner` (a reply arriving in
chunks) before a person sees them. The policy, one line per class of character:

======================================  ===============================================
tab                                     kept
newline                                 kept; a space with ``keep_newlines=False``
CR, BS, BEL, other C0 controls, DEL     removed
C1 controls (U+0080-U+009F)             removed
escape sequences: CSI, OSC (to BEL or   removed whole, payload included (an OSC 52
ST), DCS/SOS/PM/APC (to ST), two-char   clipboard write goes with its base64); one left
ESC sequences, a lone ESC, and the      unfinished is removed to the end of the text
8-bit C1 forms of all of them
U+2028, U+2029 (line, paragraph sep.)   a newline (a space with ``keep_newlines=False``)
bidi embeddings, overrides, isolates    replaced by a visible marker, e.g. ``⟨U+202E⟩``
(U+202A-U+202E, U+2066-U+2069)
bidi marks LRM, RLM, ALM                removed
zero-width space and non-joiner, word   removed
joiner, invisible operators, BOM, soft
hyphen, every other format character
ZERO WIDTH JOINER                       kept right after an emoji (or emoji + U+FE0F),
                                        once; removed anywhere else
tag characters (U+E0000-U+E007F)        kept only in an emoji tag sequence (U+1F3F4, 2-6
                                        tag letters or digits, CANCEL TAG); else removed
combining marks (Mn, Mc, Me, variation  at most :data:`MAX_MARKS` per base character;
selectors included)                     the rest removed
lone surrogates, noncharacters          U+FFFD
private use, unassigned                 kept
======================================  ===============================================

Why mark some and drop others: once removed, an override no longer reorders anything,
but the text then reads differently from what any bidi-aware viewer (an editor, a web
page) shows for the same bytes, and a legitimate reply practically never contains one,
so the marker says "this text was built to be displayed out of order". The other format
characters are invisible, common in honest text pasted from the web (BOM, ZWSP, soft
hyphens), and meaningless in a terminal: marking them would litter normal replies, and
removing them leaves nothing hidden. Tag characters are removed rather than marked for
the same reason (what they smuggle is gone once they are).

Emoji survive: ZWJ sequences (family, profession, rainbow flag), skin tones, keycaps
(``1`` U+FE0F U+20E3: two marks), flags (regional indicator pairs are ordinary
symbols) and subdivision flags. "Emoji" for the ZWJ rule is a generous approximation
of Extended_Pictographic (:data:`_PICTOGRAPHIC`): a joiner kept between two symbols
that are not quite emoji is invisible and harmless. Four marks per base are enough
for Vietnamese, pointed and cantillated Hebrew, Arabic, Indic and most Tibetan
stacks; "Zalgo" text uses tens.

Steps, each on the output of the one before: escape sequences; single characters
(context-free: controls, format characters, separators, broken code points); then
the context rules, in order: tag sequences, joiners, combining marks. Anything removed
earlier is transparent to the later rules (a mark flood cannot be split by a ZWSP or
an escape sequence to restart its count). Plain ASCII without controls returns at
once; only non-ASCII text pays for the Unicode rules (and imports ``unicodedata``).

:class:`StreamCleaner` holds back what the next chunk could change: an unfinished
escape sequence (kept short: its payload is dropped as it comes), and the last base
character with the marks, joiners and tags after it. The joined output of any split
equals ``clean_text`` of the joined input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["MAX_MARKS", "StreamCleaner", "clean_lines", "clean_text"]

#: Combining marks kept on one base character; the rest of a run is removed.
MAX_MARKS = 4

_ZWJ = "\u200d"
_FLAG = "\U0001f3f4"  # WAVING BLACK FLAG: the only base of a valid emoji tag sequence
_FLAG_WINDOW = 8  # the longest valid tag sequence: flag, six tags, cancel tag


def _char_class(ranges: Iterable[tuple[int, int]]) -> str:
    """The inside of a regex character class for inclusive code point ranges."""
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


def _ranges(codepoints: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for cp in sorted(codepoints):
        if out and out[-1][1] == cp - 1:
            out[-1] = (out[-1][0], cp)
        else:
            out.append((cp, cp))
    return out


# -- escape sequences --------------------------------------------------------------------------

# CSI (its final byte optional: an unfinished one goes too); control strings up to BEL or
# ST (a trailing ESC at the very end is taken as the start of ST, so a stream can tell
# "unfinished" from "finished"); any other ESC with its intermediates and final byte.
_ESCAPE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c|\x1b\Z)?"
    r"|\x1b[ -/]*[0-~]?"
)
_INTRODUCER = re.compile(r"[\x1b\x90\x98\x9b\x9d\x9e\x9f]")
# The forms of an _ESCAPE match that more input could extend, with what a compact
# stand-in needs: the introducer, and whether intermediates (or a trailing ESC) came.
_PENDING = re.compile(
    r"(?P<csi>\x1b\[|\x9b)[0-?]*(?P<csi_mid>[ -/])?[ -/]*"
    r"|(?P<string>\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?P<esc>\x1b)?"
    r"|\x1b(?P<esc_mid>[ -/])?[ -/]*"
)


def _stand_in(pending: re.Match[str]) -> str:
    """A few characters that any further input completes exactly as it would ``pending``.

    The payload of a control string and the parameters of a CSI are removed whatever
    follows, so only the introducer and the parser's position are kept: memory stays
    bounded however long an unterminated OSC goes on.
    """
    if pending["csi"]:
        return pending["csi"] + (" " if pending["csi_mid"] else "")
    if pending["string"]:
        return pending["string"] + (pending["esc"] or "")
    return "\x1b" + (" " if pending["esc_mid"] else "")


# -- single characters ----------------------------------------------------------------------------

_BIDI_MARKED = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_DROPPED = [
    *range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0),  # C0 but tab and newline, DEL, C1
    0x00AD, *range(0x0600, 0x0606), 0x061C, 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x180E,
    0x200B, 0x200C, 0x200E, 0x200F, *range(0x2060, 0x2066), *range(0x206A, 0x2070),
    0xFEFF, *range(0xFFF9, 0xFFFC), 0x110BD, 0x110CD, *range(0x13430, 0x13440),
    *range(0x1BCA0, 0x1BCA4), *range(0x1D173, 0x1D17B), *range(0xE0000, 0xE0020),
]  # fmt: skip
_BROKEN = [*range(0xD800, 0xE000), *range(0xFDD0, 0xFDF0), *(p + c for p in range(0, 0x110000, 0x10000) for c in (0xFFFE, 0xFFFF))]
# ``re`` tests a class's astral ranges one by one for every character: the astral table
# entries from here on (the planes' noncharacters, the tag block) share one range.
_COARSE = 0x2FFFE
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

#: Extended_Pictographic, generously: the ranges where emoji live.
_PICTOGRAPHIC = [
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122),
    (0x2139, 0x2139), (0x2194, 0x21AA), (0x231A, 0x23FF), (0x24C2, 0x24C2), (0x25AA, 0x25FE),
    (0x2600, 0x27BF), (0x2934, 0x2935), (0x2B05, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D),
    (0x3297, 0x3297), (0x3299, 0x3299), (0x1F000, 0x1FAFF), (0x1FC00, 0x1FFFD),
]  # fmt: skip
_NOT_BASE = frozenset(("Mn", "Mc", "Me", "Cf"))  # marks, and the joiners and tags left by then


class _Unicode:
    """The rules for non-ASCII text, built on the first text that needs them (ASCII never does)."""

    def __init__(self) -> None:
        from unicodedata import category

        self.category = category
        table: dict[int, str | None] = dict.fromkeys(_DROPPED)
        table.update({cp: f"⟨U+{cp:04X}⟩" for cp in _BIDI_MARKED})
        table.update(dict.fromkeys(_BROKEN, "\ufffd"))
        table.update({0x2028: "\n", 0x2029: "\n"})
        self.table = table
        below = _char_class(_ranges(cp for cp in table if cp < _COARSE))
        self.mapped = re.compile(f"[{below}\\U{_COARSE:08x}-\\U0010ffff]+")
        pict = _char_class(_PICTOGRAPHIC)
        self.pict = re.compile(f"[{pict}]")
        self.has_tag = re.compile("[\\U000e0020-\\U000e007f]")
        self.tags = re.compile(f"({_FLAG}[\\U000e0030-\\U000e0039\\U000e0061-\\U000e007a]{{2,6}}\\U000e007f)|[\\U000e0020-\\U000e007f]+")
        # A joiner is kept after an emoji or emoji + VS16, so one in a row: the joiner comes
        # first in the pattern (a fast literal scan), the lookbehinds include it.
        self.stray_zwj = re.compile(f"\u200d(?<![{pict}]\u200d)(?<![{pict}]\ufe0f\u200d)")
        # Only a run of MAX_MARKS + 1 non-ASCII characters can hold too many marks on one base;
        # then, in the text's category string (two letters a character), marks with the
        # joiners and tags among them (Cf: the only format characters left by then).
        self.long_run = re.compile(f"[^\\x00-\\x7f]{{{MAX_MARKS + 1},}}")
        self.cluster = re.compile(f"(?:M[a-z]|Cf){{{MAX_MARKS + 1},}}")

    def characters(self, text: str) -> str:
        return self.mapped.sub(lambda run: run.group().translate(self.table), text)

    def context(self, text: str) -> str:
        """Tag sequences, then joiners, then combining marks, on escape- and control-free text."""
        if self.has_tag.search(text):
            text = self.tags.sub(lambda m: m.group(1) or "", text)
        if _ZWJ in text:
            text = self.stray_zwj.sub("", text)
        return self.limit_marks(text) if self.long_run.search(text) else text

    def limit_marks(self, text: str) -> str:
        """At most MAX_MARKS marks per base; joiners and kept tags are no base."""
        categories = "".join(map(self.category, text))  # in C: far cheaper than a loop
        dropped: set[int] = set()
        for cluster in self.cluster.finditer(categories):  # tokens of two letters: always aligned
            marks = 0
            for i in range(cluster.start() // 2, cluster.end() // 2):
                if categories[2 * i] == "M":
                    marks += 1
                    if marks > MAX_MARKS:
                        dropped.add(i)
        return "".join(ch for i, ch in enumerate(text) if i not in dropped) if dropped else text

    def is_plain(self, ch: str) -> bool:
        """A base character that no rule removes: text before it never depends on text after it."""
        return ch < "\x80" or self.category(ch) not in _NOT_BASE


_rules: _Unicode | None = None


def _unicode() -> _Unicode:
    global _rules
    if _rules is None:
        _rules = _Unicode()
    return _rules


def _characters(text: str) -> str:
    """Escape sequences removed, then every context-free character rule applied."""
    if _INTRODUCER.search(text):  # one small class scans faster than _ESCAPE's alternatives
        text = _ESCAPE.sub("", text)
    return _ASCII_CONTROL.sub("", text) if text.isascii() else _unicode().characters(text)


def _context(text: str) -> str:
    return text if text.isascii() else _unicode().context(text)


def clean_text(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` (which a plugin produced) made safe to show: see the module docstring."""
    if not text.isascii() or _ASCII_CONTROL.search(text):
        text = _context(_characters(text))
    return text if keep_newlines else text.replace("\n", " ")


def clean_lines(lines: Iterable[str]) -> tuple[str, ...]:
    """Lines a plugin wrote (a stderr tail), each cleaned on its own as one line: a separator in one becomes a space."""
    return tuple(clean_text(line, keep_newlines=False) for line in lines)


# -- streams -------------------------------------------------------------------------------------


def _cut(text: str) -> int:
    """Where ``text`` (after the character rules) splits without changing its cleaning.

    At the end, when the last character is plain and no emoji (nothing after it can
    then join it); else before the last plain character, which is held back with the
    marks, joiners and tags after it until the next plain character shows they ended.
    """
    last = text[-1]
    if last < "\x80":
        return len(text)
    rules = _unicode()
    if rules.is_plain(last) and not rules.pict.match(last):
        return len(text)
    for i in range(len(text) - 1, -1, -1):
        if rules.is_plain(text[i]):
            return i
    return 0


class StreamCleaner:
    """Cleans a reply chunk by chunk: ``feed(chunk)`` returns what is safe to show now.

    ``flush()`` returns the rest at the end of the reply; an unfinished escape sequence
    is then dropped, as :func:`clean_text` drops it at the end of a text. The cleaner can
    be reused for another reply after ``flush()``. ``max_hold`` bounds the characters held
    back after the last base (a flood of marks is reduced when it passes the bound).
    """

    def __init__(self, *, keep_newlines: bool = True, max_hold: int = 64) -> None:
        if max_hold < 2 * _FLAG_WINDOW:
            raise ValueError(f"max_hold must be at least {2 * _FLAG_WINDOW}")
        self.keep_newlines = keep_newlines
        self.max_hold = max_hold
        self._escape = ""  # an unfinished escape sequence (its compact stand-in)
        self._held = ""  # after the character rules: the last base and what follows it

    @property
    def held(self) -> int:
        """How many characters are held back for the next chunk (bounded, whatever comes)."""
        return len(self._escape) + len(self._held)

    def feed(self, chunk: str) -> str:
        text, self._escape = self._escape + chunk, ""
        if _INTRODUCER.search(text):
            text = self._hold_escape(text)
        return self._emit(self._held + _characters(text))

    def flush(self) -> str:
        out, self._held, self._escape = self._held, "", ""
        return self._newlines(_context(out))

    def _hold_escape(self, text: str) -> str:
        """``text`` without an unfinished escape sequence at its end, which is kept for later."""
        *_, last = (None, *_ESCAPE.finditer(text))
        if last is not None and last.end() == len(text):
            pending = _PENDING.fullmatch(last.group())
            if pending is not None:
                self._escape = _stand_in(pending)
                return text[: last.start()]
        return text

    def _emit(self, text: str) -> str:
        if not text:
            return ""
        cut = _cut(text)
        self._held = text[cut:]
        if len(self._held) > self.max_hold:
            # Exact: the held text starts with its base (or the reply's start) and is longer
            # than any tag sequence, so cleaning it decides nothing the next chunk could change.
            self._held = _context(self._held)
        return self._newlines(_context(text[:cut]))

    def _newlines(self, text: str) -> str:
        return text if self.keep_newlines else text.replace("\n", " ")
