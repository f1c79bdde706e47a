"""A DevFlow-like writer, run as a separate process by the tests.

    python tests/writer.py DB PER_TYPE [--types a,b] [--delete-every N] [--rate R]

Inserts PER_TYPE events of each type in small transactions with no busy
timeout, so any lock the exporter held would show up as an error, optionally
deletes the oldest rows every N inserts (retention), and prints a JSON report:
rows written per type, lock errors, the largest WAL size seen.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from devflow_monitor.core.devflow_db import create_database, insert_event  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("database")
    parser.add_argument("per_type", type=int)
    parser.add_argument("--types", default="file:changed,git:commit,test:passed")
    parser.add_argument("--delete-every", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0, help="inserts per second, 0 = as fast as possible")
    args = parser.parse_args()

    conn = create_database(args.database)
    conn.execute("PRAGMA busy_timeout=0")  # fail at once instead of waiting on a reader
    types = args.types.split(",")
    written = {t: 0 for t in types}
    busy = deleted = max_wal = 0
    seq = 0
    for round_ in range(args.per_type):
        for event_type in types:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    insert_event(conn, event_type, seq=seq)
                    conn.execute("COMMIT")
                    break
                except sqlite3.OperationalError as exc:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    busy += 1
                    time.sleep(0.001)
            written[event_type] += 1
            seq += 1
            if args.delete_every and seq % args.delete_every == 0:
                deleted += conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?)",
                    (args.delete_every // 2,)).rowcount
            if args.rate:
                time.sleep(1 / args.rate)
        if round_ % 50 == 0:
            try:
                max_wal = max(max_wal, os.path.getsize(args.database + "-wal"))
            except OSError:
                pass
    print(json.dumps({"written": written, "busy": busy, "deleted": deleted, "max_wal_bytes": max_wal}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
