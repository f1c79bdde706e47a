"""Benchmark databases and the writer that keeps inserting into them.

`build()` makes a DevFlow database of N events with the server's schema and
indexes (core/devflow_db.py) in WAL mode: a realistic mix of event types,
millisecond timestamps spread over the last 30 days in insertion order, the
outbox mostly `pending` as in the public build. Databases are built once and
cached in ~/.cache/devflow-monitor-bench/events-<N>.db with a sidecar
events-<N>.json that records how long the build took.

`write` (a child process of the benchmark) stands in for the DevFlow server:
it writes a pidfile, holds the database open and inserts events at a steady
rate until SIGTERM, then prints how many it inserted, how many hit
SQLITE_BUSY and its insert latencies as one JSON line.

    python -m bench.dbgen build --rows 1000000
    python -m bench.dbgen write --database DB --pidfile F --rate 50
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import signal
import sqlite3
import sys
import time
from pathlib import Path

from devflow_monitor.core import devflow_db

CACHE_DIR = Path(os.environ.get("DEVFLOW_BENCH_CACHE", "~/.cache/devflow-monitor-bench")).expanduser()
SPAN_MS = 30 * 24 * 3600 * 1000
BATCH_ROWS = 100_000  # rows per transaction: big enough to amortise commits, small enough for the WAL

# Share of each event type in a developer's day: file saves dominate, merges are rare.
TYPE_WEIGHTS = {
    "file:changed": 40, "file:created": 12, "file:deleted": 5, "dir:created": 2, "dir:deleted": 1,
    "git:commit": 6, "git:merge": 1, "git:branch_created": 1, "git:branch_updated": 3,
    "git:branch_deleted": 0.5, "git:monitor_started": 0.2, "git:monitor_stopped": 0.2,
    "test:started": 8, "test:passed": 7, "test:failed": 1.5, "ai:suggestion": 7, "ai:completion": 5,
}
# The public build never marks rows synced; a few synced/failed rows keep those series non-empty.
SYNC_WEIGHTS = {"pending": 97, "synced": 2, "failed": 1}
INDEXES = ("idx_events_type", "idx_events_timestamp", "idx_events_sync_status")


def cached_path(rows: int) -> Path:
    return CACHE_DIR / f"events-{rows}.db"


def _metadata_path(db: Path) -> Path:
    return db.with_suffix(".json")


def prepare(rows: int, log=print) -> dict:
    """Return {path, rows, build_seconds, built_now} for a cached database of `rows` events,
    building it when missing or wrong. Rows a previous benchmark's writer added are removed."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Two benchmarks started at once wait for each other instead of building the same file twice.
    with open(CACHE_DIR / f"events-{rows}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _prepare_locked(rows, log)


def _prepare_locked(rows: int, log) -> dict:
    path = cached_path(rows)
    meta_path = _metadata_path(path)
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("rows") == rows and trim(path, rows) == rows:
            return {"path": path, "rows": rows, "build_seconds": meta["build_seconds"], "built_now": False}
        log(f"{path}: not the expected {rows} events, rebuilding")
    log(f"building {path} ({rows:,} events) ...")
    seconds = build(path, rows)
    log(f"built {path} in {seconds:.1f} s ({path.stat().st_size / 2**20:,.0f} MiB)")
    return {"path": path, "rows": rows, "build_seconds": seconds, "built_now": True}


def trim(path: Path, rows: int) -> int:
    """Delete events past the built ones (a benchmark writer's leftovers); return the row count."""
    conn = None
    try:
        conn = devflow_db.connect_writer(path, timeout=30)
        conn.execute("DELETE FROM events WHERE id > ?", (rows,))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (count,) = conn.execute("SELECT count(*) FROM events").fetchone()  # 10M: 0.05 s warm, 3 s cold
        return count
    except sqlite3.DatabaseError:
        return -1
    finally:
        if conn is not None:
            conn.close()


def build(path: Path, rows: int, seed: int = 1) -> float:
    """Build `path` with `rows` events; returns the seconds it took. Writes to a .partial file
    first so that an interrupted build never looks like a finished one."""
    started = time.monotonic()
    partial = path.with_name(path.name + ".partial")
    for stale in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        stale.unlink(missing_ok=True)
    conn = devflow_db.create_database(partial)
    conn.execute("PRAGMA synchronous=OFF")  # a crash mid-build just means rebuilding
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB, so index builds sort in memory
    # Indexes are dropped while loading and created again afterwards: same schema, one sort each.
    for index in INDEXES:
        conn.execute(f"DROP INDEX {index}")
    rng = random.Random(seed)
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - SPAN_MS
    for first in range(0, rows, BATCH_ROWS):
        count = min(BATCH_ROWS, rows - first)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events(id, type, timestamp, data, sync_status, device_id, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, 'device-1', ?, ?)",
            _rows(rng, first, count, rows, start_ms))
        conn.execute("COMMIT")
    conn.executescript(devflow_db.SCHEMA)  # recreates the dropped indexes
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    # A WAL left beside the old file would be replayed into the new one.
    for stale in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    partial.rename(path)
    seconds = time.monotonic() - started
    _metadata_path(path).write_text(json.dumps({
        "rows": rows, "build_seconds": round(seconds, 1), "seed": seed,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "bytes": path.stat().st_size}) + "\n")
    return seconds


def _rows(rng: random.Random, first: int, count: int, total: int, start_ms: int):
    types = rng.choices(list(TYPE_WEIGHTS), weights=list(TYPE_WEIGHTS.values()), k=count)
    statuses = rng.choices(list(SYNC_WEIGHTS), weights=list(SYNC_WEIGHTS.values()), k=count)
    step = SPAN_MS / total
    for offset in range(count):
        seq = first + offset
        # Evenly spread and non-decreasing in id order, as events arrive.
        timestamp_ms = start_ms + int(seq * step + rng.random() * step)
        seconds = timestamp_ms // 1000
        yield (seq + 1, types[offset], timestamp_ms, devflow_db.event_data(types[offset], timestamp_ms, seq),
               statuses[offset], seconds, seconds)


def write(database: str, pidfile: str, rate: float) -> int:
    """Insert `rate` events per second until SIGTERM; print a JSON summary on exit."""
    Path(pidfile).write_text(f"{os.getpid()}\n")
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # A short busy timeout so that any lock the exporter holds shows up as an error here.
    conn = devflow_db.connect_writer(database, timeout=1.0)
    rng = random.Random()
    names, weights = list(TYPE_WEIGHTS), list(TYPE_WEIGHTS.values())
    inserted = busy = 0
    latencies: list[float] = []
    if rate == 0:  # an idle server: the database held open, nothing written
        while not stopping:
            signal.pause()
    interval = 1.0 / max(rate, 1e-9)
    next_at = time.monotonic()
    while not stopping:
        event_type = rng.choices(names, weights=weights)[0]
        began = time.perf_counter()
        try:
            devflow_db.insert_event(conn, event_type, seq=inserted)
            inserted += 1
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            busy += 1
        latencies.append(time.perf_counter() - began)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    conn.close()
    latencies.sort()
    summary = {"inserted": inserted, "busy": busy,
               "insert_p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2) if latencies else 0,
               "insert_max_ms": round(latencies[-1] * 1000, 2) if latencies else 0}
    print(json.dumps(summary), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dbgen", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_cmd = commands.add_parser("build", help="build (or reuse) the cached database of N events")
    build_cmd.add_argument("--rows", type=int, required=True)
    write_cmd = commands.add_parser("write", help="insert events at a steady rate until SIGTERM")
    write_cmd.add_argument("--database", required=True)
    write_cmd.add_argument("--pidfile", required=True)
    write_cmd.add_argument("--rate", type=float, default=50.0, help="events per second, 0 for none (default 50)")
    args = parser.parse_args(argv)
    if args.command == "build":
        if args.rows <= 0:
            print("python -m bench.dbgen: error: --rows must be positive", file=sys.stderr)
            return 2
        info = prepare(args.rows, log=lambda line: print(line, file=sys.stderr))
        print(json.dumps({**info, "path": str(info["path"])}))
        return 0
    if not 0 <= args.rate < float("inf"):
        print("python -m bench.dbgen: error: --rate must be 0 or more", file=sys.stderr)
        return 2
    return write(args.database, args.pidfile, args.rate)


if __name__ == "__main__":
    sys.exit(main())
