"""Plugin-derived text reaches the terminal only cleaned: the exact bytes of the real CLI.

Every command that shows something a plugin produced is run as a user runs it, with
``tests/hostile/hostile_plugin.py`` (hostile metadata, hello, sandbox report, replies,
errors, stderr) or hostile file names, and its stdout and stderr are checked byte by
byte: no ESC, no C1 control (a raw 0x9b byte is not even UTF-8), no other control but
tab and newline, no bidi control, no zero-width or tag character, no line separator,
no more than MAX_MARKS combining marks in a row; and the payloads are gone, not shown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pytest

from runner.cleantext import MAX_MARKS
from tests.helpers import sandchat_bytes

pytestmark = pytest.mark.timeout(60)

HOSTILE_DIR = Path(__file__).resolve().parent / "hostile"
HOSTILE = HOSTILE_DIR / "hostile_plugin.py"
PAYLOAD = "SGFja2VkQ2xpcA"  # the OSC 52 base64 ("HackedClip"): removed with its sequence
MARKER = "⟨U+202E⟩"  # a bidi override, shown for what it is
EVIL = "\x1b]52;c;SGFja2VkQ2xpcA==\x07\x1b[2J\u202eevil\u202c\u2066iso\u2069\u200b\U000e0041\u2028"  # hostile_plugin.EVIL
FAMILY = "👨\u200d👩\u200d👧"
SCOTLAND = "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
_FORBIDDEN = {
    *map(chr, [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]),
    *"\u061c\u200b\u200c\u200d\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2060\u2066\u2067\u2068\u2069\ufeff",
    *map(chr, range(0xE0000, 0xE0080)),
}


def run(home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``sandchat ARGS`` with its output as bytes: text mode would hide a CR or a bad byte."""
    return sandchat_bytes(home, *args, timeout=55)


def safe_text(data: bytes, *, emoji: tuple[str, ...] = ()) -> str:
    """``data`` decoded, after asserting a terminal can show it without being driven by it.

    The ``emoji`` sequences (whose joiners and tags are legitimate) are taken out first.
    """
    assert b"\x1b" not in data and b"\x07" not in data
    text = data.decode("utf-8")  # strict: a lone C1 byte such as 0x9b (8-bit CSI) fails here
    rest = text
    for sequence in emoji:
        rest = rest.replace(sequence, "")
    found = sorted({f"U+{ord(ch):04X}" for ch in rest if ch in _FORBIDDEN})
    assert not found, found
    marks = 0
    for ch in text:
        marks = marks + 1 if unicodedata.category(ch)[0] == "M" else 0
        assert marks <= MAX_MARKS, text
    assert PAYLOAD not in text
    return text


def both(result: subprocess.CompletedProcess[bytes]) -> tuple[str, str]:
    return safe_text(result.stdout), safe_text(result.stderr)


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(HOSTILE, folder / HOSTILE.name)
    return folder


def test_hostile_description_in_plugins_list(home: Path, hostile_dir: Path) -> None:
    result = run(home, "--plugins-dir", str(hostile_dir), "plugins", "list")
    assert result.returncode == 0, result.stderr
    out, _ = both(result)
    row = next(line for line in out.splitlines() if line.startswith("hostile "))
    assert "untrusted  -             Hostile  clip  clear ⟨U+20…" in row  # the rest is cut at 80 columns


def test_hostile_description_in_plugins_check(home: Path) -> None:
    result = run(home, "plugins", "check", str(HOSTILE))
    out, _ = both(result)
    assert "description: Hostile  clip  clear ⟨U+202E⟩evil" in out
    loads = next(line for line in out.splitlines() if line.startswith("loads in the sandbox"))
    assert " pass " in loads and "class Hostile" in loads and MARKER in loads
    assert "fake" not in loads and "42" not in loads  # the report came from trusted code before the plugin ran


def test_hostile_description_in_plugins_install(home: Path) -> None:
    result = run(home, "plugins", "install", str(HOSTILE))
    assert result.returncode == 0, result.stdout + result.stderr
    out, _ = both(result)
    assert "description: Hostile  clip  clear ⟨U+202E⟩evil" in out and "installed 'hostile'" in out
    listed, _ = both(run(home, "plugins", "list"))
    assert "Hostile  clip  clear" in listed


def test_hostile_file_names_in_plugins_list_all(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"clip\x1b]52;c;{PAYLOAD}==\x07\x1b[2J_plugin.py").write_text("x = 1\n")
    with open(os.path.join(os.fsencode(folder), b"raw\x9b2J\xff\xfe.py"), "wb") as f:  # not UTF-8
        f.write(b"x = 1\n")
    (folder / "flip\u202eyp.txt\u2066_plugin.py").write_text("x = 1\n")
    result = run(home, "--plugins-dir", str(folder), "plugins", "list", "--all")
    assert result.returncode == 0, result.stderr
    out, _ = both(result)
    skipped = out.split("skipped files:", 1)[1]
    assert "clip_plugin.py" in skipped  # the sequences are gone; the rest of the name stays
    assert "raw\ufffd2J\ufffd\ufffd.py" in skipped  # undecodable bytes shown as U+FFFD
    assert "flip⟨U+202E⟩yp.txt⟨U+2066⟩_plugin.py" in skipped


def test_hostile_reply_streamed_by_prompt(home: Path, hostile_dir: Path) -> None:
    result = run(home, "--plugins-dir", str(hostile_dir), "prompt", "-p", "hostile", "hi")
    assert result.returncode == 0, result.stderr
    out, err = safe_text(result.stdout, emoji=(FAMILY, SCOTLAND)), safe_text(result.stderr)
    assert err == ""
    assert out.startswith("before  after csi done bidi ⟨U+202E⟩gnp.exe⟨U+202C⟩ ⟨U+2066⟩x⟨U+2069⟩ ")
    assert " zw abcdef tag sep\nline\npara zalgo Z\u0301\u0308\u0301\u0308 emoji " in out
    assert out.endswith(f" emoji {FAMILY} 🇫🇷 {SCOTLAND} 👍🏽 1\ufe0f\u20e3 end\n")


def test_hostile_error_text_of_tokens(home: Path, hostile_dir: Path) -> None:
    result = run(home, "--plugins-dir", str(hostile_dir), "tokens", "-p", "hostile", "raise")
    assert result.returncode == 1
    out, err = both(result)
    assert out == ""
    assert err.startswith("sandchat: plugin 'hostile' raised ValueError: bad ⟨U+202E⟩evil⟨U+202C⟩⟨U+2066⟩iso⟨U+2069⟩ input")
    assert err.count("\n") == 1


def test_hostile_hello_and_report_in_plugins_health(home: Path, hostile_dir: Path) -> None:
    run(home, "--plugins-dir", str(hostile_dir), "tokens", "-p", "hostile", "raise")  # hostile stderr in the log
    result = run(home, "--plugins-dir", str(hostile_dir), "plugins", "health", "hostile")
    assert result.returncode == 0, result.stdout + result.stderr
    out, _ = both(result)
    lines = out.splitlines()
    assert lines[1].split()[:2] == ["hostile", "ready"] and "untrusted" in lines[1]
    assert any(line.startswith("  hostile: class Hostile") and MARKER in line for line in lines)
    assert "fake" not in out and "gone" not in out  # its poisoned report never reached the host
    assert all(len(line) <= 80 for line in lines)
    as_json = run(home, "--plugins-dir", str(hostile_dir), "plugins", "health", "--json", "hostile")
    assert as_json.stdout.isascii() and b"\x1b" not in as_json.stdout  # JSON escapes them: values stay faithful
    report = json.loads(as_json.stdout)[0]
    assert not [layer for layer in report["layers"] if "fake" in layer] and not [m for m in report["missing_layers"] if "gone" in m]
    assert report["profile"] == "untrusted"
    assert report["class"] == "Hostile" + EVIL and report["doc"].startswith("Hostile doc \x1b]52;c;")
    logs, _ = both(run(home, "--plugins-dir", str(hostile_dir), "plugins", "logs", "hostile"))
    assert "stderr " in logs and MARKER in logs


def test_hostile_description_in_the_chat_plugins_command(home: Path, hostile_dir: Path) -> None:
    import io

    from app.chat import ChatSession
    from app.manager import PluginManager
    from app.render import Output
    from app.slash import run_command

    stdout = io.StringIO()
    with PluginManager([hostile_dir], home=home) as manager:
        session = ChatSession(manager, Output(stdout, io.StringIO(), color=False), "hostile", max_tokens=100, temperature=0.0)
        assert run_command(session, None, "/plugins")  # type: ignore[arg-type]  # /plugins uses no UI
    out = safe_text(stdout.getvalue().encode("utf-8", "surrogatepass"))
    assert "* hostile" in out and "⟨U+202E⟩evil" in out
