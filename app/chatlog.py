"""The chat log: every exchange in SQLite (``logs.db``), for ``sandchat logs`` and ``--continue``."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.sqlitefile import SqliteFile

__all__ = ["ChatLog", "Exchange"]

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
    cancelled INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS exchanges_conversation ON exchanges (conversation, id);
"""


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


class ChatLog:
    """Appends exchanges and reads them back; one short connection per operation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SqliteFile(path, _SCHEMA)

    def add(self, exchange: Exchange) -> None:
        row = asdict(exchange)
        row["ts"] = row["ts"] or time.time()
        row["cancelled"] = int(row["cancelled"])
        with self._file.connect() as db:
            db.execute(f"INSERT INTO exchanges ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))

    def recent(self, limit: int = 10) -> list[Exchange]:
        """The newest ``limit`` exchanges, oldest first."""
        return list(reversed(self._select("ORDER BY id DESC LIMIT ?", (limit,))))

    def last_conversation(self) -> list[Exchange]:
        """Every exchange of the most recent conversation, oldest first."""
        rows = self._select("WHERE conversation = (SELECT conversation FROM exchanges ORDER BY id DESC LIMIT 1) ORDER BY id", ())
        return rows

    def _select(self, tail: str, args: tuple[Any, ...]) -> list[Exchange]:
        if not self.path.exists():
            return []
        fields = [f for f in Exchange.__dataclass_fields__]
        with self._file.connect() as db:
            rows = db.execute(f"SELECT {', '.join(fields)} FROM exchanges {tail}", args).fetchall()
        return [Exchange(**{**dict(zip(fields, row)), "cancelled": bool(row[fields.index("cancelled")])}) for row in rows]
