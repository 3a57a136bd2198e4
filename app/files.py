"""sandchat's own small files: JSON state kept one way, and the stamp that says a file changed.

:class:`JsonFile` is how the grants, the keys and the switches are kept:

* **Read** whole. A file that does not exist (or whose folder does not) reads as
  ``None``: nothing stored yet. A path that cannot exist is reported when written.
* **Corrupt** means not JSON, not UTF-8, or not the shape its store expects: a
  ``SettingsError`` naming the file ("unreadable grants file (...); fix or delete
  it"), one line and exit status 2 on the command line, never a silent default.
  Any other error of the disk (permissions, a folder in its place) propagates.
* **Written** atomically: a private temporary file beside it (created 0600, whatever
  the umask), flushed to disk, then renamed over it. A reader sees the old content or
  the new, never half; the file is 0600 from its first write on.

:func:`file_stamp` is the one change detector for files sandchat does not write (the
plugin files): modification time and size, as discovery and the token cache compare them.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from app.settings import SettingsError

__all__ = ["JsonFile", "file_stamp"]


class JsonFile:
    """One JSON file of sandchat's state; ``what`` names it in errors ("grants", "keys")."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what

    def read(self) -> Any:
        """The parsed content; None when the file does not exist."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except UnicodeDecodeError as exc:
            raise self.corrupt(str(exc)) from None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise self.corrupt(str(exc)) from None

    def corrupt(self, why: str) -> SettingsError:
        """The error for a file that cannot be used as it is (its store calls this for a bad shape too)."""
        return SettingsError(f"{self.path}: unreadable {self.what} file ({why}); fix or delete it")

    def write(self, data: Any) -> None:
        """Replace the file with ``data`` as JSON, atomically, mode 0600."""
        import tempfile  # here: shutil and random, which every command that only reads would pay for

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")  # 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def file_stamp(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(mtime_ns, size)`` of the file now, ``(0, 0)`` when it cannot be stat()ed: a different stamp means "changed"."""
    try:
        stat = os.stat(path)
    except OSError:
        return (0, 0)
    return stat.st_mtime_ns, stat.st_size
