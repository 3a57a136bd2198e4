"""The text sanitiser's policy, class by class: ``clean_text`` and ``StreamCleaner``.

Each row is one class of character (or one emoji form) with its input and the exact
text that may reach a terminal; the stream tests check that any split of the input
into chunks cleans exactly as the whole does.
"""

from __future__ import annotations

import random
import unicodedata

import pytest

from runner.cleantext import MAX_MARKS, StreamCleaner, clean_text

pytestmark = pytest.mark.timeout(60)

OSC52 = "\x1b]52;c;SGVsbG8sIGNsaXBib2FyZA==\x07"  # "Hello, clipboard"
FAMILY = "👨\u200d👩\u200d👧"
SCOTLAND = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
ACUTE, GRAVE, DIAERESIS = "\u0301", "\u0300", "\u0308"

CASES = [
    # -- controls
    ("plain ASCII", "Hello, world.", "Hello, world."),
    ("tab kept", "a\tb", "a\tb"),
    ("newline kept", "a\nb", "a\nb"),
    ("CR removed", "a\r\nb\roverwrite", "a\nboverwrite"),
    ("backspace removed", "ab\x08\x08XY", "abXY"),
    ("BEL, NUL, VT, FF, CAN, SUB, DEL removed", "a\x07\x00\x0b\x0c\x18\x1a\x7fb", "ab"),
    ("C1 removed", "a\x80\x85\x8d\x9cb", "ab"),
    # -- escape sequences, payload included
    ("CSI clear screen", "x\x1b[2J\x1b[Hy", "xy"),
    ("CSI colours", "\x1b[1;31mred\x1b[0m", "red"),
    ("CSI with intermediates", "a\x1b[0 qb", "ab"),
    ("CSI unfinished at the end", "a\x1b[12;", "a"),
    ("8-bit CSI", "a\x9b31mb", "ab"),
    ("OSC 52 to BEL", f"copy{OSC52}done", "copydone"),
    ("OSC to ST", "a\x1b]0;title\x1b\\b", "ab"),
    ("OSC 8 hyperlink", "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\", "click"),
    ("8-bit OSC to 8-bit ST", "a\x9d0;title\x9cb", "ab"),
    ("OSC unterminated runs to the end", "a\x1b]52;c;SGVsbG8=b", "a"),
    ("OSC cut short by another ESC", "a\x1b]0;t\x1b[31mb", "ab"),
    ("DCS", "a\x1bP1$r0m\x1b\\b", "ab"),
    ("SOS, PM, APC", "a\x1bXsos\x1b\\b\x1b^pm\x1b\\c\x1b_apc\x1b\\d", "abcd"),
    ("two-character sequences", "a\x1b7b\x1bcc\x1b(Bd\x1b#8e\x1b=f", "abcdef"),
    ("lone ESC", "a\x1b", "a"),
    ("ESC ESC", "a\x1b\x1b[2Jb", "ab"),
    # -- format characters
    ("bidi override marked", "abc\u202eevil\u202c", "abc⟨U+202E⟩evil⟨U+202C⟩"),
    ("bidi embeddings marked", "\u202aa\u202bb\u202dc", "⟨U+202A⟩a⟨U+202B⟩b⟨U+202D⟩c"),
    ("bidi isolates marked", "\u2066a\u2067b\u2068c\u2069", "⟨U+2066⟩a⟨U+2067⟩b⟨U+2068⟩c⟨U+2069⟩"),
    ("bidi marks removed", "a\u200eb\u200fc\u061cd", "abcd"),
    ("zero-width characters removed", "a\u200bb\u200cc\u2060d\ufeffe", "abcde"),
    ("ZWJ between letters removed", "a\u200db", "ab"),
    ("soft hyphen and invisible operators removed", "co\u00adop\u2061\u2062\u2063\u2064", "coop"),
    ("other format characters removed", "a\u180e\u206a\ufff9b\ufffb\U0001d173c", "abc"),
    ("tag characters removed", "hi\U000e0049\U000e0047\U000e004e\U000e004f\U000e0052\U000e0045", "hi"),
    ("language tag and tag block removed", "a\U000e0001\U000e0000\U000e0010b", "ab"),
    # -- separators
    ("line separator", "a\u2028b", "a\nb"),
    ("paragraph separator", "a\u2029b", "a\nb"),
    # -- combining marks
    ("marks within the bound kept", "e" + ACUTE + GRAVE + DIAERESIS, "e" + ACUTE + GRAVE + DIAERESIS),
    ("mark flood cut to the bound", "Z" + ACUTE * 40 + "!", "Z" + ACUTE * MAX_MARKS + "!"),
    ("flood split by removed characters", "Z" + ACUTE * 3 + "\u200b\x1b[m" + ACUTE * 3, "Z" + ACUTE * MAX_MARKS),
    ("flood at the start", ACUTE * 9 + "a", ACUTE * MAX_MARKS + "a"),
    ("flood of variation selectors", "a" + "\ufe0f" * 9 + "\U000e0100" * 9, "a" + "\ufe0f" * MAX_MARKS),
    ("each base has its own count", ("a" + ACUTE * 4) * 3, ("a" + ACUTE * 4) * 3),
    # -- broken code points, private use, unassigned
    ("lone surrogate", "a\udc9bb", "a\ufffdb"),
    ("noncharacters", "a\ufdd0\ufffe\uffff\U0001ffff\U0010fffeb", "a\ufffd\ufffd\ufffd\ufffd\ufffdb"),
    ("private use kept", "\ue0b0 \U000f0000", "\ue0b0 \U000f0000"),
    ("unassigned kept", "a\u0378b", "a\u0378b"),
    # -- scripts
    ("accents, CJK, Greek", "héllo 日本語 Ελληνικά", "héllo 日本語 Ελληνικά"),
    ("Devanagari", "नमस्ते दुनिया", "नमस्ते दुनिया"),
    ("pointed Hebrew", "שָׁלוֹם", "שָׁלוֹם"),
    ("decomposed Vietnamese", unicodedata.normalize("NFD", "Tiếng Việt"), unicodedata.normalize("NFD", "Tiếng Việt")),
    # -- emoji
    ("family ZWJ sequence", FAMILY, FAMILY),
    ("profession with skin tone", "👩🏽\u200d💻", "👩🏽\u200d💻"),
    ("rainbow flag (VS16 before ZWJ)", "🏳\ufe0f\u200d🌈", "🏳\ufe0f\u200d🌈"),
    ("heart on fire", "❤\ufe0f\u200d🔥", "❤\ufe0f\u200d🔥"),
    ("ZWJ flood inside a sequence", "👨\u200d\u200d\u200d👩", "👨\u200d👩"),
    ("skin tones", "👍🏽👋🏿", "👍🏽👋🏿"),
    ("flags", "🇫🇷🇯🇵", "🇫🇷🇯🇵"),
    ("subdivision flag", SCOTLAND, SCOTLAND),
    ("subdivision flag with uppercase tags removed", "🏴\U000e0047\U000e0042\U000e007f", "🏴"),
    ("flag with too many tags removed", "🏴" + "\U000e0061" * 7 + "\U000e007f", "🏴"),
    ("keycaps", "1\ufe0f\u20e3#\ufe0f\u20e3", "1\ufe0f\u20e3#\ufe0f\u20e3"),
    ("text presentation selector", "\u263a\ufe0e", "\u263a\ufe0e"),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_clean_text(text: str, expected: str) -> None:
    assert clean_text(text) == expected


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_stream_cleaner_one_character_at_a_time(text: str, expected: str) -> None:
    cleaner = StreamCleaner()
    assert "".join(cleaner.feed(ch) for ch in text) + cleaner.flush() == expected


def test_one_line_mode_makes_every_line_break_a_space() -> None:
    assert clean_text("a\nb\u2028c\u2029d\r\ne", keep_newlines=False) == "a b c d e"
    cleaner = StreamCleaner(keep_newlines=False)
    assert cleaner.feed("a\n") + cleaner.feed("b\u2028") + cleaner.flush() == "a b "


def test_plain_ascii_is_returned_as_is() -> None:
    text = "The common case: a reply in plain ASCII. " * 50
    assert clean_text(text) is text  # the shortcut: nothing scanned twice, nothing copied


def test_every_format_character_has_a_rule() -> None:
    """Each category Cf character of this Python's Unicode is removed, marked or a context case."""
    context = {"\u200d", *map(chr, range(0xE0020, 0xE0080))}
    for cp in range(0x110000):
        ch = chr(cp)
        if unicodedata.category(ch) == "Cf" and ch not in context:
            assert clean_text("a" + ch + "b") in ("ab", f"a⟨U+{cp:04X}⟩b"), f"U+{cp:04X}"


def test_cleaning_is_idempotent() -> None:
    for _, text, _ in CASES:
        once = clean_text(text)
        assert clean_text(once) == once


def splits(text: str, rng: random.Random) -> list[str]:
    pieces, i = [], 0
    while i < len(text):
        size = rng.randint(0, 5)
        pieces.append(text[i : i + size])
        i += size
    return pieces


def streamed(pieces: list[str], **options: object) -> str:
    cleaner = StreamCleaner(**options)  # type: ignore[arg-type]
    return "".join(cleaner.feed(piece) for piece in pieces) + cleaner.flush()


@pytest.mark.parametrize("terminator", ["\x07", "\x1b\\", "\x9c"])
def test_osc52_split_at_every_boundary_is_removed_whole(terminator: str) -> None:
    text = f"before {OSC52[:-1]}{terminator} after"
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1, 3):
            assert streamed([text[:i], text[i:j], text[j:]]) == "before  after", (i, j)


def test_an_unterminated_osc_is_dropped_and_held_compactly() -> None:
    cleaner = StreamCleaner()
    assert cleaner.feed("keep \x1b]52;c;") == "keep "
    for _ in range(1000):
        assert cleaner.feed("QUJDREVG" * 100) == ""
        assert cleaner.held <= 3  # the payload is dropped as it comes, not stored
    assert cleaner.feed("\x07 shown") == " shown"
    assert cleaner.feed("\x1b]0;never ended") + cleaner.flush() == ""


def test_a_mark_flood_streamed_stays_bounded_and_small() -> None:
    cleaner = StreamCleaner(max_hold=16)
    out = cleaner.feed("Z")
    for _ in range(10_000):
        out += cleaner.feed(ACUTE)
        assert cleaner.held <= 16
    assert out + cleaner.flush() + cleaner.feed("!") + cleaner.flush() == "Z" + ACUTE * MAX_MARKS + "!"


def test_plain_text_is_not_held_back() -> None:
    cleaner = StreamCleaner()
    assert [cleaner.feed(piece) for piece in ("Hello", " wörld", "!\n")] == ["Hello", " wörld", "!\n"]
    assert cleaner.feed("👨") == ""  # an emoji may be joined by the next chunk's ZWJ
    assert cleaner.feed("\u200d👩") == "👨\u200d"
    assert cleaner.feed(" ok") == "👩 ok"


def test_max_hold_below_the_longest_tag_sequence_is_refused() -> None:
    with pytest.raises(ValueError):
        StreamCleaner(max_hold=8)


ALPHABET = [
    "a", "Z", " ", "\n", "\t", "\r", "é", "日", "\x1b", "[", "]", "5", "2", ";", "c", "\x07", "\\", "m", "(", "P",
    "\x9b", "\x9d", "\x9c", "\x00", ACUTE, DIAERESIS, "\ufe0f", "\u20e3", "\u200d", "\u200b", "\u202e", "\u2066",
    "\u2028", "👨", "👩", "🏴", "❤", "🇫", "\U0001f3fd", "\U000e0067", "\U000e0062", "\U000e007f", "\U000e0041",
    "\U0001d167", "\udc9b", "\ufffe",
]  # fmt: skip


@pytest.mark.parametrize("max_hold", [16, 64])
def test_any_split_of_any_text_streams_as_the_whole_cleans(max_hold: int) -> None:
    rng = random.Random(20240607 + max_hold)  # fixed: a failure is reproducible
    for _ in range(3000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
        if rng.random() < 0.3:  # a flood, longer than what the cleaner holds back
            text += rng.choice([ACUTE, "\u200d", "\U000e0041", "\ufe0f", "5"]) * rng.randint(10, 60) + rng.choice(ALPHABET)
        newlines = rng.random() < 0.8
        pieces = splits(text, rng)
        whole = clean_text(text, keep_newlines=newlines)
        assert streamed(pieces, keep_newlines=newlines, max_hold=max_hold) == whole, (text, pieces)
        assert clean_text(whole, keep_newlines=newlines) == whole, text
