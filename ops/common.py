"""Small pieces the operator commands share: errors, output, files, SQLite connections."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

from devflow_monitor.core import __version__
from devflow_monitor.core.devflow_db import disk_usage
from devflow_monitor.core.files import fsync_path, write_json_atomic  # noqa: F401 (re-exported)
from devflow_monitor.core.httpclient import NoAnswer, http_get, local_url  # noqa: F401 (re-exported)

TOOL = "devflow-monitor"


class OpsError(Exception):
    """A problem that ends the command: printed as one line, exit status 1."""


# What a command reports in one line instead of a traceback: its own refusal, or a server that did not answer.
FAILED = (OpsError, NoAnswer)


def fail(command: str, message: str, *, as_json: bool = False) -> int:
    """Report a failed command: one line on stderr (and a JSON object on stdout for scripts)."""
    print(f"{TOOL} {command}: error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"ok": False, "command": command, "error": message}))
    return 1


def os_error_text(exc: OSError) -> str:
    """`Permission denied: /path`, the way a person wants to read an OSError."""
    what = exc.strerror or str(exc)
    return f"{what}: {exc.filename}" if exc.filename else what


def print_json(data) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


# --- terminal output --------------------------------------------------------------

COLORS = {"ok": "32", "warn": "33", "fail": "31", "crit": "31", "dim": "2", "bold": "1"}


def use_color(stream=None) -> bool:
    stream = stream or sys.stdout
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def paint(text: str, style: str | None, color: bool) -> str:
    if not color or not style or style not in COLORS:
        return text
    return f"\x1b[{COLORS[style]}m{text}\x1b[0m"


def human_bytes(size: float | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} d"


def utc_stamp(when: float | None = None) -> str:
    """A sortable UTC time for file names: 20250802T140001Z."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if when is None else when))


# --- files ------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def free_bytes(path: Path) -> int:
    return disk_usage(path)[0]


def database_files(db: Path) -> list[Path]:
    """The database and the -wal / -shm files SQLite keeps beside it."""
    return [db, Path(f"{db}-wal"), Path(f"{db}-shm")]


def on_disk_size(db: Path) -> int:
    return sum(p.stat().st_size for p in database_files(db) if p.exists())


# --- SQLite -----------------------------------------------------------------------

def table_names(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]


def row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in table_names(conn)}


def versions() -> dict[str, str]:
    return {"tool": f"{TOOL} {__version__}", "sqlite": sqlite3.sqlite_version,
            "python": sys.version.split()[0]}
