"""The DevFlow server's SQLite schema and event shapes (docs/devflow.md "The database").

Used by the simulator, the benchmark's database builder and the tests, so that
all of them write exactly what the real server writes.
"""

from __future__ import annotations

import json
import os
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

# The server's SQLite databases by role: the main one, and the others it keeps relative to its working
# directory (docs/devflow.md "The database"). A backup covers every one of them that exists.
MAIN_DATABASE = "main"
OTHER_DATABASES = (("audit", "logs/audit/audit.db"), ("multi-projects", "data/multi-projects.db"))


def server_directory(database: str | Path) -> Path:
    """The directory the server keeps its other databases in: its working directory, which is the parent
    of `data/` for the public build (`<workdir>/data/devflow.db`), and the main database's own directory
    for the guide's install (`~/.config/mcp/devflow-monitor/devflow.db`)."""
    folder = Path(database).parent
    return folder.parent if folder.name == "data" else folder


def server_databases(database: str | Path) -> list[tuple[str, Path]]:
    """(role, path) of every database the server keeps, the main one first; some may not exist yet."""
    base = server_directory(database)
    return [(MAIN_DATABASE, Path(database))] + [(role, base / relative) for role, relative in OTHER_DATABASES]


def connect_writer(path: str | Path, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection configured like the server's: WAL journal, foreign keys on."""
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def wal_header(path: str | Path) -> bool:
    """Whether the database file says it is in WAL mode (header bytes 18-19 are 2)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(20)[18:20] == b"\x02\x02"
    except OSError:
        return False


def file_state(path: str | Path) -> tuple | None:
    """What changes when anyone writes the database: identity, size and mtime of the file and of its -wal."""
    states = []
    for name in (str(path), f"{path}-wal"):
        try:
            st = os.stat(name)
            states.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            states.append(None)
    return tuple(states) if states[0] else None


# How connect_readonly opens the file (URI parameters); "" is a plain read-only open.
IMMUTABLE = "immutable"
READONLY_SHM = "readonly_shm"


def read_mode(path: str | Path) -> str:
    """How `connect_readonly` opens the database: IMMUTABLE for a WAL database whose -wal is gone
    (closed cleanly) or empty, everything being in the file; shared memory read, not written, for a WAL database with
    a -wal (READONLY_SHM); "" for a rollback-journal database."""
    if not wal_header(path):
        return ""
    try:
        return IMMUTABLE if os.stat(f"{path}-wal").st_size == 0 else READONLY_SHM
    except FileNotFoundError:
        return IMMUTABLE
    except OSError:
        return READONLY_SHM


def connect_readonly(path: str | Path, *, timeout: float = 5.0, mode: str | None = None) -> sqlite3.Connection:
    """A read-only connection that never creates, truncates or writes a file beside the database.

    A plain `mode=ro` open of a WAL database creates -wal and -shm when they are missing and writes
    -shm, so: with a -wal present, `readonly_shm=1` (SQLite reads -shm without writing it, or the
    WAL itself when no writer holds -shm); a WAL database without -wal (the server closed cleanly)
    has everything in the file, read with `immutable=1`, which a writer starting meanwhile would
    invalidate: check `file_state()` before and after such a read (`read_mode()`, which a caller may
    pass as `mode`, says whether it will be one). A non-empty -wal without its -shm cannot be read
    without creating one: the open fails ("unable to open database file") until the server runs again.
    """
    mode = read_mode(path) if mode is None else mode
    if mode not in (IMMUTABLE, READONLY_SHM, ""):
        raise ValueError(f"unknown open mode {mode!r}")
    extra = f"&{mode}=1" if mode else ""
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro{extra}", uri=True, timeout=timeout,
                           isolation_level=None)


# SQLite's lock bytes (os_unix.c): a writer's exclusive lock covers the shared range.
SHARED_FIRST = 0x40000000 + 2


def write_locked(path: str | Path) -> bool:
    """Whether another process holds SQLite's exclusive lock on the file, from /proc/locks: an
    immutable read takes no lock to test with, and opening and closing the file to ask would drop
    this process's own POSIX locks on it."""
    try:
        st = os.stat(path)
        with open("/proc/locks") as locks:
            table = locks.read()
    except OSError:
        return False
    file_id = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 1234 fd:01:5678 1073741826 1073742335", "->" marks a waiter
        if len(fields) >= 8 and fields[1] != "->" and fields[3] == "WRITE" and fields[5] == file_id:
            end = fields[7]
            if int(fields[6]) <= SHARED_FIRST and (end == "EOF" or int(end) >= SHARED_FIRST):
                return True
    return False


def disk_usage(path: str | Path) -> tuple[int, int]:
    """(free bytes for unprivileged users, total bytes) of the filesystem holding `path` or its nearest parent."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    stat = os.statvfs(probe)
    return stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize


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
    """The `data` JSON the server stores for an event, in the shape of docs/devflow.md's example."""
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
