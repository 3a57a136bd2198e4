"""The chat log: every exchange in SQLite (``logs.db``), for ``sandchat logs`` and ``--continue``.

Full-text search (``sandchat logs -q``) uses an FTS5 index when this Python's SQLite
has FTS5, else a substring match (LIKE). The index is a separate table brought up to
date when a search runs, never when an exchange is written: a sandchat whose SQLite
lacks FTS5 can then still write the same file (triggers would fail its inserts), and
exchanges are only ever appended, so "every id above the highest indexed" is exactly
what is missing.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.sqlitefile import SqliteFile

__all__ = ["AmbiguousConversation", "ChatLog", "Exchange", "Summary", "has_fts5"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS exchanges (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    conversation TEXT NOT NULL,
    plugin TEXT NOT NULL,
    system TEXT NOT NULL,
    prompt TEXT NOT NULL,
    response TEXT NOT NULL,
    prompt_tokens INTEGER,
    response_tokens INTEGER,
    duration_s REAL,
    error TEXT,
    cancelled INTEGER NOT NULL DEFAULT 0,
    counting TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS exchanges_conversation ON exchanges (conversation, id);
"""


_FTS = """
CREATE VIRTUAL TABLE IF NOT EXISTS exchanges_fts USING fts5(prompt, response);
INSERT INTO exchanges_fts (rowid, prompt, response)
    SELECT id, prompt, response FROM exchanges
    WHERE id > coalesce((SELECT rowid FROM exchanges_fts ORDER BY rowid DESC LIMIT 1), 0);
"""


#: Columns added after the first release, for logs.db files written before them.
_ADDED_COLUMNS = (("counting", "TEXT NOT NULL DEFAULT ''"),)


@functools.cache
def has_fts5() -> bool:
    """Whether this Python's SQLite was built with FTS5 (most are; some distributions' are not)."""
    try:
        with closing(sqlite3.connect(":memory:")) as db:
            db.execute("CREATE VIRTUAL TABLE probe USING fts5(x)")
        return True
    except sqlite3.OperationalError:
        return False


def _filters(plugin: str | None, conversation: str | None) -> tuple[list[str], list[Any]]:
    where, args = [], []
    for column, value in (("plugin", plugin), ("conversation", conversation)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    return where, args


class AmbiguousConversation(LookupError):
    """A conversation id prefix that matches more than one conversation."""


@dataclass(frozen=True)
class Exchange:
    """One prompt and its response (or error), as logged."""

    conversation: str
    plugin: str
    system: str
    prompt: str
    response: str
    prompt_tokens: int | None = None
    response_tokens: int | None = None
    duration_s: float | None = None
    error: str | None = None
    cancelled: bool = False
    ts: float = 0.0
    counting: str = ""  # how the token counts were made: "exact: ...", "estimate: ...", or "" (unstated)

    @property
    def estimated(self) -> bool:
        return self.counting.lower().startswith("estimate")


@dataclass(frozen=True)
class Summary:
    """One logged conversation, for a list to reopen it from."""

    conversation: str
    first_prompt: str
    exchanges: int
    last_ts: float


class ChatLog:
    """Appends exchanges and reads them back; one short connection per operation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SqliteFile(path, _SCHEMA)
        self._upgraded = False

    def _upgrade(self, db: sqlite3.Connection) -> None:
        """Add the columns a logs.db from an older sandchat lacks (once per ChatLog)."""
        if self._upgraded:
            return
        have = {row[1] for row in db.execute("PRAGMA table_info(exchanges)")}
        for column, kind in _ADDED_COLUMNS:
            if column not in have:
                db.execute(f"ALTER TABLE exchanges ADD COLUMN {column} {kind}")
        self._upgraded = True

    def add(self, exchange: Exchange) -> None:
        row = asdict(exchange)
        row["ts"] = row["ts"] or time.time()
        row["cancelled"] = int(row["cancelled"])
        with self._file.connect() as db:
            self._upgrade(db)
            db.execute(f"INSERT INTO exchanges ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))

    def recent(self, limit: int = 10) -> list[Exchange]:
        """The newest ``limit`` exchanges, oldest first."""
        return self.find(limit)

    def find(
        self, limit: int = 10, *, plugin: str | None = None, text: str | None = None, conversation: str | None = None
    ) -> list[Exchange]:
        """The newest ``limit`` exchanges (0: all) matching every filter given, oldest first.

        ``text`` matches words of the prompt or the response: all of them, each as a word
        or the start of one (FTS5), or anywhere (without FTS5).
        """
        where, args = _filters(plugin, conversation)
        words = text.split() if text else []
        index = bool(words) and has_fts5()
        if index:
            where.append("id IN (SELECT rowid FROM exchanges_fts WHERE exchanges_fts MATCH ?)")
            args.append(" ".join('"' + word.replace('"', '""') + '"*' for word in words))  # quoted terms: no query syntax
        elif words:
            for word in words:
                where.append(r"(prompt LIKE ? ESCAPE '\' OR response LIKE ? ESCAPE '\')")
                pattern = "%" + word.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
                args += [pattern, pattern]
        tail = (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
        if limit:
            tail, args = tail + " LIMIT ?", [*args, limit]
        return list(reversed(self._select(tail, tuple(args), index=index)))

    def conversation_id(self, prefix: str) -> str | None:
        """The conversation whose id starts with ``prefix``; None when none does.

        Raises :class:`AmbiguousConversation` when several do.
        """
        if not prefix or not self.path.exists():
            return None
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT DISTINCT conversation FROM exchanges WHERE substr(conversation, 1, ?) = ? LIMIT 2", (len(prefix), prefix)
            ).fetchall()
        if len(rows) > 1:
            raise AmbiguousConversation(f"conversation id {prefix!r} matches more than one conversation; give more of it")
        return rows[0][0] if rows else None

    def per_plugin(self, since: float) -> dict[str, tuple[int, int]]:
        """Per plugin, exchanges logged since ``since`` and how many of them failed."""
        if not self.path.exists():
            return {}
        with self._file.connect() as db:
            rows = db.execute("SELECT plugin, COUNT(*), COUNT(error) FROM exchanges WHERE ts >= ? GROUP BY plugin", (since,)).fetchall()
        return {plugin: (total, failed) for plugin, total, failed in rows}

    def latest_conversation_id(self) -> str | None:
        """The id of the most recent conversation, if any exchange was logged."""
        if not self.path.exists():
            return None
        with self._file.connect() as db:
            row = db.execute("SELECT conversation FROM exchanges ORDER BY id DESC LIMIT 1").fetchone()
        return row[0] if row else None

    def conversations(self, limit: int = 50) -> list[Summary]:
        """The newest ``limit`` conversations, newest first: id, first prompt, exchange count, last time."""
        if not self.path.exists():
            return []
        with self._file.connect() as db:
            rows = db.execute(
                "SELECT conversation, (SELECT prompt FROM exchanges f WHERE f.conversation = e.conversation ORDER BY id LIMIT 1), "
                "COUNT(*), MAX(ts) FROM exchanges e GROUP BY conversation ORDER BY MAX(id) DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [Summary(conversation, first, count, last) for conversation, first, count, last in rows]

    def conversation(self, conversation: str) -> list[Exchange]:
        """Every exchange of ``conversation``, oldest first."""
        return self.find(0, conversation=conversation)

    def last_conversation(self) -> list[Exchange]:
        """Every exchange of the most recent conversation, oldest first."""
        rows = self._select("WHERE conversation = (SELECT conversation FROM exchanges ORDER BY id DESC LIMIT 1) ORDER BY id", ())
        return rows

    def _select(self, tail: str, args: tuple[Any, ...], *, index: bool = False) -> list[Exchange]:
        if not self.path.exists():
            return []
        fields = [f for f in Exchange.__dataclass_fields__]
        with self._file.connect() as db:
            self._upgrade(db)
            if index:
                db.executescript(_FTS)
            rows = db.execute(f"SELECT {', '.join(fields)} FROM exchanges {tail}", args).fetchall()
        return [Exchange(**{**dict(zip(fields, row, strict=True)), "cancelled": bool(row[fields.index("cancelled")])}) for row in rows]
