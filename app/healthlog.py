"""The health event log: plugin starts, crashes, deadline hits, restarts and quarantines in SQLite.

One row per event in ``health.db`` under the data directory, kept across sandchat runs
so ``plugins health`` can say what happened over the last 24 hours. Writes are rare
(lifecycle events only, never per call), so each opens its own connection: any thread
may record.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from app.sqlitefile import SqliteFile

__all__ = ["HealthLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    plugin TEXT NOT NULL,
    event TEXT NOT NULL,
    exit_code INTEGER,
    signal INTEGER,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_plugin_ts ON events (plugin, ts);
"""
_KEEP_SECONDS = 30 * 24 * 3600
_DAY = 24 * 3600


class HealthLog:
    """Appends lifecycle events and answers "what happened to this plugin lately?"."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = SqliteFile(path, _SCHEMA, on_first_open="DELETE FROM events WHERE ts < ?", args=(time.time() - _KEEP_SECONDS,))

    def record(self, name: str, event: str, details: dict[str, Any] | None = None) -> None:
        details = dict(details or {})
        exit_code, signal = details.pop("exit_code", None), details.pop("signal", None)
        try:
            with self._file.connect() as db:
                db.execute(
                    "INSERT INTO events (ts, plugin, event, exit_code, signal, detail) VALUES (?, ?, ?, ?, ?, ?)",
                    (time.time(), name, event, exit_code, signal, json.dumps(details, default=str)),
                )
        except (sqlite3.Error, OSError):
            pass  # the log is a diagnostic aid: a locked, broken or unwritable file must not break a chat

    def counts(self, name: str, since: float | None = None) -> dict[str, int]:
        """Events of ``plugin`` per kind since ``since`` (default: the last 24 hours)."""
        since = time.time() - _DAY if since is None else since
        try:
            with self._file.connect() as db:
                rows = db.execute(
                    "SELECT event, COUNT(*) FROM events WHERE plugin = ? AND ts >= ? GROUP BY event", (name, since)
                ).fetchall()
        except (sqlite3.Error, OSError):
            return {}
        return {event: count for event, count in rows}

    def events(self, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest events, newest last."""
        query = "SELECT ts, plugin, event, exit_code, signal, detail FROM events"
        args: tuple[Any, ...] = ()
        if name is not None:
            query, args = query + " WHERE plugin = ?", (name,)
        try:
            with self._file.connect() as db:
                rows = db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        except (sqlite3.Error, OSError):
            return []
        keys = ("ts", "plugin", "event", "exit_code", "signal")
        return [{**dict(zip(keys, row[:5], strict=True)), **json.loads(row[5])} for row in reversed(rows)]
