"""sandchat's small SQLite files: open one with its schema, one short connection per use.

Both logs (``health.db`` and ``logs.db``) are written rarely and from any thread, so
each operation opens its own connection rather than sharing one across threads.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

__all__ = ["SqliteFile"]


class SqliteFile:
    """A SQLite file whose schema (and clean-up) runs on first use."""

    def __init__(self, path: Path, schema: str, *, on_first_open: str = "", args: tuple[object, ...] = ()) -> None:
        self.path = path
        self._schema = schema
        self._first = (on_first_open, args)
        self._ready = False

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection inside a transaction; committed on success, always closed."""
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=5.0)
        try:
            with db:
                if not self._ready:
                    db.executescript(self._schema)
                    if self._first[0]:
                        db.execute(*self._first)
                    self._ready = True
                yield db
        finally:
            db.close()
