"""Capture of a plugin's stderr: cleaned, labelled, kept as a bounded tail and logged to a file.

Plugin output is hostile input: control characters and ANSI escape sequences are
removed before anything is stored, so printing a tail can never drive the terminal.
"""

from __future__ import annotations

import collections
import re
import threading
import time
from pathlib import Path
from typing import IO

__all__ = ["StderrCapture", "clean_text", "last_line"]

_MAX_LINE = 4096
_TAIL_LINES = 40
_MAX_LOG = 1 << 20  # a plugin's log file is rotated to NAME.log.1 past this size
# CSI/OSC/other ESC sequences, then any remaining C0/C1 control except tab and newline.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str, *, keep_newlines: bool = True) -> str:
    """Strip escape sequences and control characters from text a plugin produced."""
    text = _CONTROLS.sub("", _ESCAPES.sub("", text))
    return text if keep_newlines else text.replace("\n", " ")


def last_line(tail: tuple[str, ...]) -> str:
    """' (stderr: LAST LINE)' for an error message, or '' when the tail is empty."""
    lines = [line for line in tail if line.strip()]
    return f" (stderr: {lines[-1].strip()[:200]})" if lines else ""


class StderrCapture:
    """Reads one plugin's stderr on a daemon thread until EOF."""

    def __init__(self, name: str, stream: IO[bytes], log_path: Path | None) -> None:
        self.name = name
        self._stream = stream
        self._log_path = log_path
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"stderr-{name}", daemon=True)
        self._thread.start()

    def tail(self, lines: int = 5) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._tail)[-lines:]

    def join(self, timeout: float) -> None:
        """Wait for EOF (every writer gone) up to ``timeout`` seconds."""
        self._thread.join(timeout)

    def _run(self) -> None:
        log = self._open_log()
        try:
            while True:
                raw = self._stream.readline(_MAX_LINE)
                if not raw:
                    return
                line = clean_text(raw.decode("utf-8", "replace").rstrip("\n"), keep_newlines=False)
                with self._lock:
                    self._tail.append(line)
                if log is not None:
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
                    log.write(f"{stamp} [{self.name}] {line}\n")
                    log.flush()
                    if log.tell() > _MAX_LOG:
                        log.close()
                        log = self._open_log()
        except (OSError, ValueError):
            return  # the pipe was closed under us during a kill
        finally:
            if log is not None:
                log.close()

    def _open_log(self) -> IO[str] | None:
        if self._log_path is None:
            return None
        try:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            if self._log_path.exists() and self._log_path.stat().st_size > _MAX_LOG:
                self._log_path.replace(self._log_path.with_name(self._log_path.name + ".1"))
            return open(self._log_path, "a", encoding="utf-8")
        except OSError:
            return None
