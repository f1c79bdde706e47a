"""The database and event-queue collectors against real SQLite files and a real writer process."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import NO_SERVER, ROOT, cli, database_with_events, http_get, wait_until
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from devflow_monitor.core import catalog
from devflow_monitor.core.config import Config
from devflow_monitor.core.devflow_db import EVENT_TYPES, create_database, insert_event
from devflow_monitor.exporter.collectors.database import DatabaseCollector

TYPES = ("file:changed", "git:commit", "test:passed")


def ingested(samples) -> dict[str, float]:
    return {dict(labels)["type"]: value for (name, labels), value in samples.items()
            if name == catalog.EVENTS_INGESTED.name}


def nonzero(totals: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in totals.items() if value}


def stored(samples) -> dict[str, float]:
    return {dict(labels)["type"]: value for (name, labels), value in samples.items()
            if name == catalog.EVENTS_STORED.name}


def state(samples) -> str:
    return next(dict(labels)["state"] for (name, labels), value in samples.items()
                if name == catalog.DB_STATE.name and value == 1)


def test_concurrent_writer_is_counted_exactly_and_never_blocked(tmp_path, start_exporter):
    db = database_with_events(tmp_path / "devflow.db", 300, "file:created")
    exporter = start_exporter("--devflow.database", str(db))
    # Counted from the exporter's first look on; known types and the types already stored start at 0.
    baseline = wait_until(lambda: ingested(exporter.scrape()), message="ingest baseline")
    assert baseline["file:created"] == 0 and not nonzero(baseline)

    writer = subprocess.Popen([sys.executable, str(ROOT / "tests" / "writer.py"), str(db), "2000",
                               "--types", ",".join(TYPES), "--delete-every", "500"],
                              stdout=subprocess.PIPE, text=True)
    previous, scrapes = baseline, 0
    while writer.poll() is None:
        current = ingested(exporter.scrape())
        scrapes += 1
        for event_type, value in previous.items():
            assert current.get(event_type, 0) >= value, f"{event_type} counter went down"
        previous = current
    report = json.loads(writer.stdout.read())
    assert writer.returncode == 0
    assert scrapes > 20
    assert report["busy"] == 0, "the writer hit a lock held by the exporter"
    assert report["deleted"] > 0
    # Checkpoints kept resetting the WAL: ~6000 commits of several pages each would be >90 MB otherwise.
    assert report["max_wal_bytes"] < 16 * 1024 * 1024, report

    assert wait_until(lambda: nonzero(ingested(exporter.scrape())) == report["written"],
                      message="exact ingest counts")
    with sqlite3.connect(db) as check:
        truth = dict(check.execute("SELECT type, count(*) FROM events GROUP BY type"))
    assert wait_until(lambda: stored(exporter.scrape()) == truth, message="stored counts after deletions")
    outbox = exporter.value(catalog.OUTBOX_EVENTS.name, status="pending")
    assert outbox == sum(truth.values())


def test_every_database_state_is_a_value_and_recovers(tmp_path, start_exporter, spawn):
    db = tmp_path / "data" / "devflow.db"
    exporter = start_exporter("--devflow.database", str(db))

    def settle(expected):
        return wait_until(lambda: (lambda s: s if state(s) == expected else None)(exporter.scrape()),
                          message=f"state {expected}")

    samples = settle("missing")
    assert samples[(catalog.DB_UP.name, ())] == 0
    assert samples[(catalog.COLLECTOR_SUCCESS.name, (("collector", "database"),))] == 1

    database_with_events(db, 1, "git:commit")
    settle("ok")
    conn = sqlite3.connect(db, isolation_level=None)
    for seq in range(1, 51):
        insert_event(conn, "git:commit", seq=seq)
    conn.close()
    wait_until(lambda: ingested(exporter.scrape()).get("git:commit") == 50, message="rows after first sight")

    # A restore: another database file takes the path; totals must not go back.
    replacement = tmp_path / "backup.db"
    conn = create_database(replacement)
    for seq in range(10):
        insert_event(conn, "git:merge", seq=seq)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{db}{suffix}"):
            os.remove(f"{db}{suffix}")
    os.replace(replacement, db)
    wait_until(lambda: stored(exporter.scrape()) == {"git:merge": 10}, message="restored database counted")
    assert ingested(exporter.scrape())["git:commit"] == 50
    conn = sqlite3.connect(db, isolation_level=None)
    insert_event(conn, "git:merge", seq=11)
    conn.close()
    wait_until(lambda: ingested(exporter.scrape()).get("git:merge") == 1,
               message="rows after the restore counted, restored rows not")

    # Locked by an exclusive writer, then released.
    locker = spawn([sys.executable, "-c",
                    "import sqlite3, sys, time\n"
                    f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
                    "c.execute('PRAGMA locking_mode=EXCLUSIVE'); c.execute('BEGIN EXCLUSIVE')\n"
                    "print('locked', flush=True); time.sleep(60)\n"], stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"
    settle("locked")
    locker.kill()
    locker.wait()
    settle("ok")

    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"this is not a database\n" * 500)
    os.replace(garbage, db)
    samples = settle("corrupt")
    assert samples[(catalog.DB_UP.name, ())] == 0
    status, body = http_get(exporter.url + "/status")
    assert status == 200 and json.loads(body)["database"] == "corrupt"

    db.unlink()
    settle("missing")
    conn = create_database(db)
    conn.close()
    settle("ok")
    assert exporter.proc.poll() is None


def test_scheduled_integrity_check_reports_corruption(tmp_path, start_exporter):
    db = tmp_path / "devflow.db"
    conn = create_database(db)
    conn.execute("BEGIN")
    for seq in range(5000):
        insert_event(conn, EVENT_TYPES[seq % len(EVENT_TYPES)], seq=seq)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    exporter = start_exporter("--devflow.database", str(db))
    assert wait_until(lambda: exporter.value(catalog.DB_INTEGRITY_OK.name) == 1, message="first check passes")

    # Scribble over index pages in the middle of the file, leaving the header intact.
    size = db.stat().st_size
    with open(db, "r+b") as handle:
        handle.seek(size // 2 // 4096 * 4096)
        handle.write(bytes(random.Random(1).randrange(256) for _ in range(4096 * 8)))
    assert wait_until(lambda: exporter.value(catalog.DB_INTEGRITY_OK.name) == 0, message="check fails")


def test_garbage_event_types_fold_into_bounded_labels(tmp_path, start_exporter):
    db = tmp_path / "devflow.db"
    conn = create_database(db)
    rng = random.Random(7)
    conn.execute("BEGIN")
    for seq in range(3000):
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(8))
        garbage = rng.choice([f"junk:{word}", f"{word} with spaces", f"\u2603{word}", word * 20])
        insert_event(conn, garbage, seq=seq)
    insert_event(conn, "git:commit", seq=9999)
    conn.execute("COMMIT")
    conn.close()
    exporter = start_exporter("--devflow.database", str(db),
                              settings={"collectors": {"database": {"max_event_types": 5}}})
    samples = wait_until(lambda: (lambda s: s if stored(s) else None)(exporter.scrape()), message="counts")
    labels = set(stored(samples)) | set(ingested(samples))
    assert "git:commit" in labels and "other" in labels
    assert len(labels - set(EVENT_TYPES) - {"other"}) <= 5
    assert sum(stored(samples).values()) == 3001


def test_a_gap_in_the_ids_does_not_stall_the_ingest_count(tmp_path, start_exporter):
    """Ids can jump (an import, a restore of a pruned table); the cursor must walk past the gap."""
    db = tmp_path / "devflow.db"
    conn = create_database(db)
    insert_event(conn, "git:commit", seq=0)
    exporter = start_exporter("--devflow.database", str(db))
    wait_until(lambda: exporter.value(catalog.DB_UP.name) == 1, message="first sight")
    conn.execute("INSERT INTO events(id, type, timestamp, data) VALUES (500000, 'git:commit', 1, '{}')")
    for seq in range(3):
        insert_event(conn, "git:merge", seq=seq)
    conn.close()
    assert wait_until(lambda: nonzero(ingested(exporter.scrape())) == {"git:commit": 1, "git:merge": 3},
                      message="rows beyond the gap counted")


class DirectoryEvents(FileSystemEventHandler):
    """The inotify events in a directory while the `with` block runs, as (event type, file name)."""

    def __init__(self, directory: Path):
        self.events: list[tuple[str, str]] = []
        self.observer = Observer()
        self.observer.schedule(self, str(directory))

    def on_any_event(self, event):
        self.events.append((event.event_type, os.path.basename(event.src_path)))

    @property
    def writes(self) -> list[tuple[str, str]]:
        """Everything but opening and closing a file that was not opened for writing."""
        return [e for e in self.events if e[0] not in ("opened", "closed_no_write")]

    def __enter__(self) -> "DirectoryEvents":
        self.observer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.observer.stop()
        self.observer.join()


def test_reading_a_closed_database_creates_and_writes_no_file_beside_it(tmp_path, start_exporter):
    """A plain `mode=ro` open would create -wal/-shm and write -shm in the server's directory."""
    data = tmp_path / "data"
    db = data / "devflow.db"
    database_with_events(db, 20, "git:commit")  # a clean close checkpoints and removes -wal and -shm
    assert sorted(p.name for p in data.iterdir()) == ["devflow.db"]
    with DirectoryEvents(data) as watch:
        exporter = start_exporter("--devflow.database", str(db))
        wait_until(lambda: exporter.value(catalog.DB_INTEGRITY_OK.name) == 1, message="integrity checked")
        assert wait_until(lambda: stored(exporter.scrape()) == {"git:commit": 20}, message="counted")
    assert watch.writes == [], "the exporter created or wrote files beside a closed database"
    assert sorted(p.name for p in data.iterdir()) == ["devflow.db"]

    # A server killed without closing leaves -wal and -shm: they are read, never written.
    subprocess.run([sys.executable, "-c", "import os, sqlite3\n"
                    f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
                    "c.execute(\"INSERT INTO events(type, timestamp, data) VALUES ('git:merge', 1, '{}')\")\n"
                    "os._exit(0)\n"], check=True)
    def contents():
        return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in data.iterdir()}

    before = contents()
    assert set(before) == {"devflow.db", "devflow.db-wal", "devflow.db-shm"}
    with DirectoryEvents(data) as watch:
        assert wait_until(lambda: stored(exporter.scrape()).get("git:merge") == 1, message="row in the WAL counted")
    # SQLite opens an existing -wal read-write even for a read-only connection (and, as root, chowns
    # it to the database's owner: an `attrib` event); what matters is that nothing is created or written.
    assert [e for e in watch.events if e[0] in ("created", "deleted", "moved")] == []
    assert [e for e in watch.events if e[0] == "modified" and e[1] != data.name] == []
    assert contents() == before


def test_an_unreadable_database_is_not_a_failed_integrity_check(tmp_path, start_exporter):
    """A path that cannot be opened (here a symlink to a directory; chmod 000 is the
    same to SQLite, but root ignores it) is state `unreadable`, and no integrity result is published."""
    db = tmp_path / "devflow.db"
    create_database(db).close()
    exporter = start_exporter("--devflow.database", str(db))
    wait_until(lambda: exporter.value(catalog.DB_INTEGRITY_OK.name) == 1, message="first check passes")
    (tmp_path / "a-directory").mkdir()
    db.unlink()
    db.symlink_to(tmp_path / "a-directory")
    samples = wait_until(lambda: (lambda s: s if state(s) == "unreadable" else None)(exporter.scrape()),
                         message="state unreadable")
    # The background check runs every second in tests: give it time to try and fail.
    time.sleep(3)
    samples = exporter.scrape()
    assert state(samples) == "unreadable"
    assert (catalog.DB_INTEGRITY_OK.name, ()) not in samples, "an unreadable file reported as corrupt"


def test_a_missing_database_drops_its_counts_and_check_and_a_symlink_loop_is_unreadable(tmp_path, start_exporter):
    """A deleted database exports no integrity_check_ok 1 or row counts of the file that was there."""
    db = database_with_events(tmp_path / "devflow.db", 1, "git:commit")
    exporter = start_exporter("--devflow.database", str(db))
    wait_until(lambda: exporter.value(catalog.DB_INTEGRITY_OK.name) == 1 and stored(exporter.scrape()),
               message="checked and counted")
    db.unlink()
    samples = wait_until(lambda: (lambda s: s if state(s) == "missing" else None)(exporter.scrape()),
                         message="state missing")
    for metric in (catalog.DB_INTEGRITY_OK, catalog.DB_COUNTS_TIMESTAMP):
        assert (metric.name, ()) not in samples, f"{metric.name} still published for a missing file"
    assert not stored(samples)
    assert not any(name == catalog.DB_TABLE_ROWS.name for name, _ in samples)

    db.symlink_to(db)  # a loop: stat fails with ELOOP, not ENOENT
    wait_until(lambda: state(exporter.scrape()) == "unreadable", message="a symlink loop is unreadable")


def test_an_unchanged_database_is_not_reopened_between_scrapes(tmp_path, start_exporter):
    """With nothing written, the background count's refreshes do not even open the file."""
    db = database_with_events(tmp_path / "devflow.db", 1, "git:commit")
    exporter = start_exporter("--devflow.database", str(db),
                              settings={"collectors": {"database": {"integrity_interval_seconds": 3600}}})
    wait_until(lambda: stored(exporter.scrape()), message="first count")
    watched_from = time.time()
    with DirectoryEvents(tmp_path) as watch:
        time.sleep(2.5)  # five count intervals in tests, no scrape
    assert ("opened", "devflow.db") not in watch.events
    # The refreshes went on meanwhile: the counts stand as of a look taken while nothing was opened.
    assert exporter.value(catalog.DB_COUNTS_TIMESTAMP.name) > watched_from


def test_counts_follow_new_synced_and_deleted_rows_incrementally(tmp_path, start_exporter):
    db = tmp_path / "devflow.db"
    conn = create_database(db)
    for seq in range(100):
        insert_event(conn, TYPES[seq % 3], seq=seq)
    exporter = start_exporter("--devflow.database", str(db))

    def matches_truth():
        truth = dict(conn.execute("SELECT type, count(*) FROM events GROUP BY type"))
        outbox = dict(conn.execute("SELECT sync_status, count(*) FROM events GROUP BY sync_status"))
        samples = exporter.scrape()
        pending = samples.get((catalog.OUTBOX_EVENTS.name, (("status", "pending"),)))
        return stored(samples) == truth and pending == outbox.get("pending", 0)

    wait_until(matches_truth, message="first count")
    for seq in range(100, 150):
        insert_event(conn, "git:merge", seq=seq)
    wait_until(matches_truth, message="new rows counted")
    conn.execute("UPDATE events SET sync_status = 'synced' WHERE id <= 60")  # the outbox drains, oldest first
    wait_until(matches_truth, message="synced rows leave the outbox")
    conn.execute("DELETE FROM events WHERE id <= 80")  # retention
    wait_until(matches_truth, message="deleted rows uncounted")
    conn.close()


def test_a_started_twice_stopped_and_restarted_collector_runs_one_counting_thread(tmp_path):
    db = database_with_events(tmp_path / "devflow.db", 5, "git:commit")
    config = Config()
    config.devflow.database = str(db)
    config.collectors.database.counts_interval_seconds = 3600  # asleep after its first count: a stop must wake it
    config.backup.status_file = str(tmp_path / "backup-status.json")
    collector = DatabaseCollector(config)

    def counting_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "database-counts" and t.is_alive()]

    def stored_by_collector() -> dict[str, float]:
        family = next((f for f in collector.collect() if f.name == catalog.EVENTS_STORED.name), None)
        return {s.labels["type"]: s.value for s in family.samples} if family else {}

    try:
        collector.start()
        collector.start()
        assert len(counting_threads()) == 1
        wait_until(lambda: stored_by_collector() == {"git:commit": 5}, message="first count")
        collector.stop()
        assert counting_threads() == [], "stop wakes the sleeping thread and ends it"
        conn = create_database(db)
        for seq in range(5, 8):
            insert_event(conn, "git:merge", seq=seq)
        conn.close()
        collector.start()
        assert len(counting_threads()) == 1
        wait_until(lambda: stored_by_collector() == {"git:commit": 5, "git:merge": 3},
                   message="the rows added while stopped counted after the restart")
    finally:
        collector.stop()


# --- the last backup: this database's, no other one's ---------------------------------------------------------

def back_up(db: Path, status: Path, backups: Path) -> dict:
    """A real `devflow-monitor backup` of `db`; returns the status entry it recorded."""
    result = cli("backup", "--devflow.database", str(db), "--dir", str(backups), "--no-logs",
                 "--status-file", str(status))
    assert result.returncode == 0, result.stderr
    return json.loads(status.read_text())["databases"][str(db.resolve())]


def published_backup(collector: DatabaseCollector) -> tuple[float | None, float | None]:
    """(last success, size) as the collector publishes them; None where it publishes nothing."""
    values = {family.name: family.samples[0].value for family in collector.collect()
              if family.name in (catalog.BACKUP_LAST_SUCCESS.name, catalog.BACKUP_LAST_SIZE.name)}
    return values.get(catalog.BACKUP_LAST_SUCCESS.name), values.get(catalog.BACKUP_LAST_SIZE.name)


def collector_of(db: Path, status: Path) -> DatabaseCollector:
    config = Config()
    config.devflow.database = str(db)
    config.backup.status_file = str(status)
    return DatabaseCollector(config)


def test_an_exporter_publishes_the_backups_of_its_own_database_only(tmp_path, start_exporter):
    a = database_with_events(tmp_path / "a" / "data" / "devflow.db", 3)
    b = database_with_events(tmp_path / "b" / "data" / "devflow.db", 3)
    status = tmp_path / "backup-status.json"  # one status file for the user, as by default
    settings = {"backup": {"status_file": str(status)}}
    exporter_a = start_exporter("--devflow.database", str(a), *NO_SERVER, settings=settings)
    exporter_b = start_exporter("--devflow.database", str(b), *NO_SERVER, settings=settings)

    of_a = back_up(a, status, tmp_path / "backups-a")
    assert exporter_a.value(catalog.BACKUP_LAST_SUCCESS.name) == of_a["timestamp"]
    assert exporter_a.value(catalog.BACKUP_LAST_SIZE.name) == of_a["size_bytes"]
    samples_b = exporter_b.scrape()
    assert (catalog.BACKUP_LAST_SUCCESS.name, ()) not in samples_b, "a backup of A keeps B's alert quiet"
    assert (catalog.BACKUP_LAST_SIZE.name, ()) not in samples_b

    of_b = back_up(b, status, tmp_path / "backups-b")
    assert exporter_b.value(catalog.BACKUP_LAST_SUCCESS.name) == of_b["timestamp"]
    assert exporter_a.value(catalog.BACKUP_LAST_SUCCESS.name) == of_a["timestamp"], "B's backup keeps A's entry"


def test_the_same_file_under_another_path_is_the_same_database(tmp_path):
    host = database_with_events(tmp_path / "host" / "data" / "devflow.db", 3)
    status = tmp_path / "backup-status.json"
    recorded = back_up(host, status, tmp_path / "backups")
    # What an exporter in a container sees through a bind mount: the same device and inode at another path.
    seen = tmp_path / "container" / "devflow.db"
    seen.parent.mkdir()
    os.link(host, seen)
    assert published_backup(collector_of(seen, status)) == (recorded["timestamp"], recorded["size_bytes"])
    other = database_with_events(tmp_path / "other" / "devflow.db", 3)
    assert published_backup(collector_of(other, status)) == (None, None)


NOW = time.time()


@pytest.mark.parametrize("timestamp, size, published", [
    (repr(NOW - 60), "1000", True),
    ('"nan"', "1000", False),
    ("NaN", "1000", False),
    ("1e999", "1000", False),
    ("-5", "1000", False),
    ("0", "1000", False),
    (f'"{NOW - 60}"', "1000", False),
    ("true", "1000", False),
    (repr(NOW + 10 * 86400), "1000", False),  # from the future: it would keep the alert quiet for ten days
    (repr(NOW - 60), "NaN", False),
    (repr(NOW - 60), "-1", False),
    (repr(NOW - 60), '"big"', False),
])
def test_a_backup_status_that_is_not_a_plausible_time_and_size_is_not_published(tmp_path, timestamp, size,
                                                                                published):
    db = database_with_events(tmp_path / "devflow.db", 1)
    key = json.dumps(str(db.resolve()))
    status = tmp_path / "backup-status.json"
    status.write_text('{"format": "devflow-monitor-backup-status/2", "databases": {%s: {"database": %s, '
                      '"timestamp": %s, "size_bytes": %s, "path": "/backups/x"}}}' % (key, key, timestamp, size))
    expected = (float(timestamp), float(size)) if published else (None, None)
    assert published_backup(collector_of(db, status)) == expected


def test_a_backup_status_that_names_no_database_is_not_published(tmp_path):
    db = database_with_events(tmp_path / "devflow.db", 1)
    status = tmp_path / "backup-status.json"
    # As the status was written before it named its database: which one it was is unknown.
    status.write_text(json.dumps({"timestamp": time.time() - 60, "size_bytes": 1000, "path": "/backups/x"}))
    assert published_backup(collector_of(db, status)) == (None, None)
    recorded = back_up(db, status, tmp_path / "backups")  # the next backup replaces it
    assert published_backup(collector_of(db, status)) == (recorded["timestamp"], recorded["size_bytes"])
