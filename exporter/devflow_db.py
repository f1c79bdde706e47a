"""The DevFlow server's SQLite schema and event shapes (FACTS.md "Database").

Used by the simulator, the benchmark's database builder and the tests, so that
all of them write exactly what the real server writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

# The event types the server emits; anything else folds into "other" in labels.
EVENT_TYPES = (
    "file:created", "file:changed", "file:deleted", "dir:created", "dir:deleted",
    "git:commit", "git:merge", "git:branch_created", "git:branch_updated", "git:branch_deleted",
    "git:monitor_started", "git:monitor_stopped",
    "test:started", "test:passed", "test:failed", "ai:suggestion", "ai:completion",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS migrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, applied_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    data TEXT NOT NULL,
    sync_id TEXT,
    sync_status TEXT DEFAULT 'pending' CHECK (sync_status IN ('pending', 'synced', 'failed')),
    device_id TEXT,
    user_id TEXT,
    created_at INTEGER DEFAULT (strftime('%s', 'now')),
    updated_at INTEGER DEFAULT (strftime('%s', 'now')));
CREATE INDEX IF NOT EXISTS idx_events_type ON events(type);
CREATE INDEX IF NOT EXISTS idx_events_timestamp ON events(timestamp);
CREATE INDEX IF NOT EXISTS idx_events_sync_status ON events(sync_status);
CREATE TABLE IF NOT EXISTS activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id INTEGER REFERENCES events(id) ON DELETE CASCADE,
    stage TEXT, action TEXT, details TEXT, timestamp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, value REAL NOT NULL,
    tags TEXT, timestamp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS stage_transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, from_stage TEXT, to_stage TEXT NOT NULL,
    confidence REAL, timestamp INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS file_monitor_cache (
    path TEXT PRIMARY KEY, hash TEXT, size INTEGER, modified_at INTEGER);
"""

TABLES = ("events", "activities", "metrics", "stage_transitions", "file_monitor_cache", "migrations")


def connect_writer(path: str | Path, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection configured like the server's: WAL journal, foreign keys on."""
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def connect_readonly(path: str | Path, *, timeout: float = 5.0, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection that cannot change the file (immutable: not even -wal/-shm beside it)."""
    uri = f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")
    return sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)


def integrity_errors(conn: sqlite3.Connection, *, quick: bool = False, limit: int = 5) -> list[str]:
    """Problems `PRAGMA integrity_check` (or quick_check) reports; empty when the database is sound."""
    pragma = "quick_check" if quick else "integrity_check"
    rows = [row[0] for row in conn.execute(f"PRAGMA {pragma}({int(limit)})")]
    return [] if rows == ["ok"] else rows


def create_database(path: str | Path) -> sqlite3.Connection:
    """Create (or open) a database with the server's schema; returns a writer connection."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = connect_writer(path)
    conn.executescript(SCHEMA)
    conn.execute("INSERT OR IGNORE INTO migrations(name, applied_at) VALUES ('001_initial', ?)",
                 (int(time.time()),))
    return conn


def event_data(event_type: str, timestamp_ms: int, seq: int) -> str:
    """The `data` JSON the server stores for an event, in the shape of FACTS.md's example."""
    category, _, action = event_type.partition(":")
    payload = {"action": action}
    if category == "git":
        payload.update(hash=f"{seq:07x}", message=f"chore: change {seq}")
    elif category in ("file", "dir"):
        payload.update(path=f"src/module_{seq % 97}.ts")
    return json.dumps({
        "id": f"{category}-{seq}", "type": event_type, "category": category, "timestamp": timestamp_ms,
        "severity": "info", "source": f"{category.capitalize()}Monitor", "data": payload,
    }, separators=(",", ":"))


def insert_event(conn: sqlite3.Connection, event_type: str, timestamp_ms: int | None = None,
                 seq: int = 0, sync_status: str = "pending") -> int:
    """Insert one event the way the server does; returns its id."""
    timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    now = int(time.time())
    cursor = conn.execute(
        "INSERT INTO events(type, timestamp, data, sync_status, device_id, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, 'device-1', ?, ?)",
        (event_type, timestamp_ms, event_data(event_type, timestamp_ms, seq), sync_status, now, now))
    return cursor.lastrowid
