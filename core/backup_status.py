"""The backup status: when `devflow-monitor backup` last succeeded, per database, for the exporter.

One file (`backup.status_file`, shared by every backup run of the user) holds one entry per database,
keyed by the database's resolved path, so that on a machine with several DevFlow databases (two
projects, a test beside a real one) a backup counts only for the database it copied. An exporter
publishes the entry of its own database and nothing else:

    {"format": "devflow-monitor-backup-status/2",
     "databases": {"/home/me/project/data/devflow.db": {
         "database": "/home/me/project/data/devflow.db", "identity": "2049:1835012",
         "timestamp": 1754143201.52, "size_bytes": 58060, "path": "/backups/devflow-backup-20250802T140001Z"}}}

An entry matches by resolved path or by identity (device and inode): an exporter in a container sees
the same file under another path (a bind mount keeps device and inode), and a restore puts a new file
(a new inode) at the same path.

The backup writes the file as a whole (temporary file, rename) under a lock, so two backups finishing
together both keep their entry; the exporter only reads it, and a reader sees the old file or the new.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from pathlib import Path

from devflow_monitor.core.files import write_json_atomic

FORMAT = "devflow-monitor-backup-status/2"
# A success recorded further ahead than this is refused: it would keep the stale-backup alert quiet for as long.
FUTURE_SLACK_SECONDS = 3600.0


def database_key(database: str | Path) -> str:
    """The database's path as entries are keyed: absolute, symlinks resolved (as far as they resolve)."""
    try:
        return str(Path(database).resolve())
    except (OSError, RuntimeError):  # a symlink loop: the path as given still names the database
        return str(Path(database).absolute())


def identity(database: str | Path) -> str | None:
    """`device:inode` of the database file, or None when there is none."""
    try:
        st = os.stat(database)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


def record(status_file: Path, database: Path, *, timestamp: float, size_bytes: int, backup_path: str) -> None:
    """Record a successful backup of `database`, keeping every other database's entry. Raises OSError."""
    status_file.parent.mkdir(parents=True, exist_ok=True)
    key = database_key(database)
    with _locked(status_file):
        entries = _entries(_load(status_file))
        entries[key] = {"database": key, "identity": identity(database), "timestamp": timestamp,
                        "size_bytes": size_bytes, "path": backup_path}
        write_json_atomic(status_file, {"format": FORMAT, "databases": entries})


def last_success(status_file: Path, database: Path) -> dict | None:
    """{"timestamp", "size_bytes", "path"} of the newest recorded backup of `database`, or None.

    None also for a status written before entries named their database (one "timestamp" at the top):
    which database it belongs to is unknown, and publishing it could silence the stale-backup alert of a
    database that was never backed up. An entry whose timestamp or size is not a finite, non-negative
    number (NaN, 1e999, -5, "123") or whose timestamp lies in the future is refused for the same reason.
    """
    entries = _entries(_load(status_file))
    key, own_identity = database_key(database), identity(database)
    found = None
    for entry in entries.values():
        if not isinstance(entry, dict):
            continue
        mine = entry.get("database") == key or (own_identity is not None and entry.get("identity") == own_identity)
        if not mine or not _plausible(entry):
            continue
        if found is None or entry["timestamp"] > found["timestamp"]:
            found = entry
    if found is None:
        return None
    return {"timestamp": float(found["timestamp"]), "size_bytes": float(found["size_bytes"]),
            "path": found.get("path")}


def _plausible(entry: dict) -> bool:
    timestamp, size = entry.get("timestamp"), entry.get("size_bytes")
    for value in (timestamp, size):
        # bool is an int to Python, and JSON's NaN / Infinity parse to floats: neither is a time or a size.
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            return False
    return 0 < timestamp <= time.time() + FUTURE_SLACK_SECONDS


def _load(status_file: Path):
    try:
        return json.loads(status_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, unreadable or half-written by hand: no entry to trust
        return None


def _entries(data) -> dict:
    """The per-database entries; none from a status of another format (the single-entry one included)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("databases"), dict):
        return {}
    return dict(data["databases"])


@contextlib.contextmanager
def _locked(status_file: Path):
    """Serialise the read-modify-write of the status among backup runs; the exporter never takes it."""
    fd = os.open(status_file.with_name(f".{status_file.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
