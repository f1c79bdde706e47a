"""`devflow-monitor maintain` on real databases, the big one with a writer process inserting throughout."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import time
from pathlib import Path

from conftest import cli
from test_ops_support import DAY_MS, Writer, build_events_db, one_line, sha256, start_fake_server

from devflow_monitor.core.devflow_db import create_database, insert_event
from devflow_monitor.ops import maintain as maintain_module

NO_PROCESS = ("--devflow.process-pattern", "no-such-process-c0ffee", "--devflow.port", "1")


def maintain(db: Path, *args):
    return cli("maintain", "--devflow.database", str(db), *args, timeout=300)


def steps_of(result) -> dict:
    assert result.returncode == 0, result.stderr
    return {step["name"]: step for step in json.loads(result.stdout)["steps"]}


def test_maintain_on_a_million_rows_deletes_the_old_rows_while_the_writer_keeps_writing(spawn, tmp_path):
    now_ms = int(time.time() * 1000)
    db = tmp_path / "devflow.db"
    total, old = 1_000_000, 400_000
    build_events_db(db, total, old, now_ms)
    writer = Writer(spawn, db, tmp_path)
    try:
        writer.wait_for_rows(200)
        time.sleep(1.0)  # the writer's own baseline before maintenance starts
        started = time.time()
        # The writer is DevFlow here (its pidfile), so maintain must not VACUUM under it.
        result = maintain(db, "--devflow.pidfile", str(writer.pidfile), "--no-logs", "--json")
        finished = time.time()
        time.sleep(0.5)
    finally:
        report = writer.stop()
    steps = steps_of(result)
    during = [(wait, whole) for at, wait, whole in report["slow"] if started <= at <= finished]
    longest_wait = max((wait for wait, _ in during), default=0.0)
    longest_insert = max((whole for _, whole in during), default=0.0)
    retention = steps["retention"]["details"]
    print(f"\nmaintain on {total} rows: deleted {retention['deleted']} in {retention['batches']} transactions, "
          f"{retention['duration_seconds']} s; longest lock hold {retention['max_hold_ms']} ms "
          f"(median {retention['median_hold_ms']} ms); writer: {report['count']} inserts; during maintain its "
          f"longest wait for the write lock {longest_wait * 1000:.1f} ms, longest whole insert "
          f"{longest_insert * 1000:.1f} ms; whole run {report['max_wait'] * 1000:.1f} / "
          f"{report['max_insert'] * 1000:.1f} ms")
    # Far above the batches' ~50 ms, far below the writer's 5 s busy timeout: only a delete that holds the
    # lock for most of the run gets here (the batching itself is proven without a clock below).
    assert longest_wait < 2.0, f"the writer waited {longest_wait * 1000:.0f} ms for the write lock"
    assert retention["deleted"] == old

    conn = sqlite3.connect(db)
    cutoff = now_ms - 30 * DAY_MS
    assert conn.execute("SELECT count(*) FROM events WHERE timestamp < ?", (cutoff,)).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM events WHERE id <= ?", (total,)).fetchone()[0] == total - old
    assert conn.execute("SELECT min(id) FROM events").fetchone()[0] == old + 1, "exactly the old rows went"
    written = conn.execute("SELECT count(*) FROM events WHERE id BETWEEN ? AND ?",
                           (report["first_id"], report["last_id"])).fetchone()[0]
    assert written == report["count"], "every row the writer inserted is still there"
    assert steps["vacuum"]["status"] == "skipped" and "DevFlow is running" in steps["vacuum"]["summary"]
    assert steps["analyze"]["status"] == "done"
    db.unlink()  # 300 MB: do not leave it to pytest's kept temp dirs


def test_retention_commits_between_bounded_batches_so_a_writer_gets_in_before_each(tmp_path, monkeypatch):
    now_ms = int(time.time() * 1000)
    db = tmp_path / "devflow.db"
    build_events_db(db, 6000, 5000, now_ms)
    cutoff = now_ms - 30 * DAY_MS
    # A writer that never waits: it gets the lock at once or fails with "database is locked".
    writer = sqlite3.connect(db, timeout=0, isolation_level=None)
    old_rows_left, writer_got_in = [], []

    def before_each_statement(sql: str) -> None:
        if not sql.startswith("BEGIN IMMEDIATE"):
            return
        old_rows_left.append(writer.execute("SELECT count(*) FROM events WHERE timestamp < ?",
                                            (cutoff,)).fetchone()[0])
        try:
            writer.execute("BEGIN IMMEDIATE")
            insert_event(writer, "git:commit")
            writer.execute("COMMIT")
            writer_got_in.append(True)
        except sqlite3.OperationalError:
            writer_got_in.append(False)

    connect = sqlite3.connect

    def traced_connect(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(before_each_statement)
        return conn

    monkeypatch.setattr(maintain_module.sqlite3, "connect", traced_connect)
    retention = maintain_module.Retention(30, target_seconds=3600, pause_seconds=0, max_batch=500)
    result = maintain_module.delete_old_events(db, cutoff, retention)
    monkeypatch.undo()

    assert result["deleted"] == 5000 and result["batches"] == len(old_rows_left) > 10
    assert all(writer_got_in), "the write lock was held between two delete transactions"
    per_transaction = [a - b for a, b in zip(old_rows_left, old_rows_left[1:] + [0])]
    assert sum(per_transaction) == 5000 and max(per_transaction) <= 500, per_transaction
    assert writer.execute("SELECT count(*) FROM events WHERE timestamp >= ?", (cutoff,)).fetchone()[0] \
        == 1000 + result["batches"], "every row the writer inserted between batches is kept"
    writer.close()


def test_guide_delete_wipes_every_row_but_maintain_deletes_only_the_old_ones(tmp_path):
    now_ms = int(time.time() * 1000)
    guide_copy = tmp_path / "guide.db"
    build_events_db(guide_copy, 3000, 1000, now_ms)
    conn = sqlite3.connect(guide_copy, isolation_level=None)
    # The guide's statement (section 8.2) compares a millisecond integer with a text date. SQLite orders
    # every integer before every text value, so the condition holds for all rows, today's included.
    guide = conn.execute("DELETE FROM events WHERE timestamp < datetime('now', '-30 days')").rowcount
    conn.close()
    assert guide == 3000

    db = tmp_path / "devflow.db"
    build_events_db(db, 3000, 1000, now_ms)
    steps = steps_of(maintain(db, *NO_PROCESS, "--no-logs", "--json"))
    assert steps["retention"]["details"]["deleted"] == 1000
    assert sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0] == 2000


def test_dry_run_reports_what_would_happen_and_changes_nothing(tmp_path):
    db = tmp_path / "devflow.db"
    build_events_db(db, 5000, 1200, int(time.time() * 1000))
    logs = tmp_path / "logs"
    logs.mkdir()
    rotated = logs / "server.log.2.gz"
    rotated.write_bytes(gzip.compress(b"[INFO] old\n"))
    _age(rotated, days=10)
    before = sha256(db)

    result = maintain(db, *NO_PROCESS, "--dry-run", "--devflow.log-files", str(logs / "server.log"), "--json")
    steps = steps_of(result)
    assert steps["retention"]["status"] == "would" and steps["retention"]["details"]["rows"] == 1200
    assert steps["logs"]["details"]["files"] == [str(rotated)]
    assert sha256(db) == before and rotated.exists()
    text = maintain(db, *NO_PROCESS, "--dry-run", "--no-logs")
    assert "Dry run: nothing was changed" in text.stdout and "would" in text.stdout


def test_vacuum_runs_only_with_room_for_it_and_devflow_stopped(spawn, tmp_path):
    db = tmp_path / "data" / "devflow.db"
    db.parent.mkdir()
    build_events_db(db, 20000, 15000, int(time.time() * 1000))
    common = ("--no-logs", "--json", "--analysis-limit", "100")

    no_room = steps_of(maintain(db, *NO_PROCESS, *common, "--reserve-disk-mb", str(1 << 40)))
    assert no_room["vacuum"]["status"] == "skipped" and "free" in no_room["vacuum"]["summary"]

    pidfile = tmp_path / "devflow.pid"
    server = start_fake_server(spawn, tmp_path, pidfile=pidfile)
    running = steps_of(maintain(db, "--devflow.pidfile", str(pidfile), *common))
    assert running["vacuum"]["status"] == "skipped"
    assert f"PID {server.pid}" in running["vacuum"]["summary"]
    server.kill()
    server.wait()

    size_before = os.path.getsize(db)
    done = steps_of(maintain(db, "--devflow.pidfile", str(pidfile), *common))
    assert done["vacuum"]["status"] == "done"
    assert os.path.getsize(db) < size_before / 2
    assert not os.path.exists(f"{db}-wal") or os.path.getsize(f"{db}-wal") == 0
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0] == 5000


def test_log_cleanup_removes_old_rotated_copies_and_never_a_live_log(tmp_path):
    db = tmp_path / "devflow.db"
    create_database(db).close()
    logs = tmp_path / "logs"
    logs.mkdir()
    live = logs / "server.log"
    files = {name: logs / name for name in (
        "server.log", "server.log.1", "server.log.2.gz", "server.log.3.gz", "server.log-20250801.gz",
        "error.log", "server.log.bak", "notes.txt")}
    for path in files.values():
        path.write_text("[INFO] x\n")
    for name in ("server.log", "server.log.1", "server.log.2.gz", "server.log-20250801.gz", "error.log",
                 "server.log.bak", "notes.txt"):
        _age(files[name], days=30)  # a quiet live log is old too: the guide's `find -mtime +7 -delete` kills it

    steps = steps_of(maintain(db, *NO_PROCESS, "--devflow.log-files", str(live), str(logs / "error.log"), "--json"))
    removed = {Path(p).name for p in steps["logs"]["details"]["files"]}
    assert removed == {"server.log.1", "server.log.2.gz", "server.log-20250801.gz"}
    left = {p.name for p in logs.iterdir()}
    assert left == {"server.log", "server.log.3.gz", "error.log", "server.log.bak", "notes.txt"}


def test_backup_first_makes_a_verified_backup_before_deleting(tmp_path):
    db = tmp_path / "devflow.db"
    build_events_db(db, 3000, 1000, int(time.time() * 1000))
    config = tmp_path / "config.yml"
    config.write_text(f"backup:\n  status_file: {tmp_path / 'status.json'}\n")
    steps = steps_of(maintain(db, "--config.file", str(config), *NO_PROCESS, "--backup-first",
                              "--backup-dir", str(tmp_path / "backups"), "--no-logs", "--json"))
    folder = Path(steps["backup"]["details"]["path"])
    copy = sqlite3.connect(folder / "devflow.db")
    assert copy.execute("SELECT count(*) FROM events").fetchone()[0] == 3000, "taken before the delete"
    [recorded] = json.loads((tmp_path / "status.json").read_text())["databases"].values()
    assert recorded["database"] == str(db.resolve()) and recorded["path"] == str(folder)
    assert steps["retention"]["details"]["deleted"] == 1000


def test_maintain_failures_are_one_line(tmp_path):
    missing = maintain(tmp_path / "none.db", *NO_PROCESS)
    assert missing.returncode == 1 and "database not found" in one_line(missing.stderr)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t(x)").connection.close()
    foreign = maintain(other, *NO_PROCESS)
    assert foreign.returncode == 1 and "no events table" in one_line(foreign.stderr)
    db = tmp_path / "devflow.db"
    conn = create_database(db)
    insert_event(conn, "git:commit")
    conn.close()
    failed_backup = maintain(db, *NO_PROCESS, "--backup-first", "--backup-dir", str(db))  # a file, not a dir
    assert failed_backup.returncode == 1
    assert "backup before maintenance failed" in one_line(failed_backup.stderr)


def _age(path: Path, days: float) -> None:
    when = time.time() - days * 86400
    os.utime(path, (when, when))


def test_time_limit_stops_between_transactions_and_reports_what_remains(tmp_path):
    db = tmp_path / "devflow.db"
    build_events_db(db, 30000, 20000, int(time.time() * 1000))
    steps = steps_of(maintain(db, *NO_PROCESS, "--no-logs", "--json", "--max-batch", "100", "--pause-ms", "20",
                              "--time-limit", "0.3", "--vacuum", "never"))
    retention = steps["retention"]
    assert retention["status"] == "stopped"
    details = retention["details"]
    assert 0 < details["deleted"] < 20000 and details["deleted"] + details["remaining"] == 20000
    assert sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0] == 30000 - details["deleted"]
