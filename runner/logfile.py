"""A plugin's log file: stamped lines appended a block at a time, rotated to NAME.log.1 past 1 MiB.

The file is read on a terminal (``plugins logs``, ``tail -f``), so each of the plugin's
lines is cleaned as it is written, with the one sanitiser (runner/cleantext.py), each
line on its own: U+2028 and its like become spaces within the line, and the log's lines
stay the plugin's lines. No OSError escapes: a disk that fails (full, say) ends the
logging, and the capture goes on draining the pipe.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO

from runner.cleantext import clean_text
from runner.constants import LOG_PREFIX, LOG_TIME_FORMAT

__all__ = ["MAX_LOG", "LogFile", "stamp"]

MAX_LOG = 1 << 20  # a plugin's log file is rotated to NAME.log.1 past this size


def stamp(who: str) -> str:
    """The prefix of a log line written now by ``who`` (the plugin's name, or the host's label)."""
    return LOG_PREFIX.format(stamp=time.strftime(LOG_TIME_FORMAT), who=who)


class LogFile:
    """One plugin's log; used by one thread (its stderr capture). Nothing happens before :meth:`open`."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._size = 0

    def open(self) -> None:
        self._file = self._open()

    def write_lines(self, who: str, lines: list[str]) -> None:
        """Append the plugin's ``lines`` (raw text, one line each), cleaned and stamped, in one write."""
        if self._file is not None:
            prefix = stamp(who)
            cleaned = [clean_text(line, keep_newlines=False) for line in lines]
            self.write(prefix + ("\n" + prefix).join(cleaned) + "\n")

    def write(self, text: str) -> None:
        """Append whole lines of the host's own text in one write, rotating past 1 MiB as line by line would."""
        if self._file is None:
            return
        data = text.encode("utf-8", "replace")
        try:
            at = 0
            while self._size + len(data) - at > MAX_LOG:
                # the line that takes the file past the limit is its last
                cut = data.find(b"\n", at + max(0, MAX_LOG - self._size)) + 1 or len(data)
                self._file.write(data[at:cut])
                self._file.close()
                at = cut
                self._file = self._open()
                if self._file is None:
                    return
            if at < len(data):
                self._file.write(data[at:] if at else data)
                self._size += len(data) - at
            self._file.flush()
        except OSError:  # the disk is full, say: stop logging, but go on draining the pipe
            self.close()

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def _open(self) -> IO[bytes] | None:
        if self.path is None:
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size > MAX_LOG:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            log = open(self.path, "ab")
            self._size = log.seek(0, os.SEEK_END)
            return log
        except OSError:
            return None
