"""`devflow-monitor backup` on real databases while a separate writer process keeps inserting."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, cli, wait_until
from test_ops_support import Writer, one_line, sha256

from devflow_monitor.core.devflow_db import create_database, insert_event


def rows_digest(conn: sqlite3.Connection, max_id: int) -> list:
    return conn.execute("SELECT id, type, timestamp, data FROM events WHERE id <= ? ORDER BY id",
                        (max_id,)).fetchall()


def seed(db: Path, rows: int) -> None:
    conn = create_database(db)
    conn.execute("BEGIN")
    for i in range(rows):
        insert_event(conn, "file:changed", seq=i)
    conn.execute("COMMIT")
    conn.close()


def test_backup_under_concurrent_writes_copies_every_database_as_a_verified_gapless_prefix(spawn, tmp_path):
    # The public build's workdir, a writer on each of the server's databases.
    workdir = tmp_path / "work"
    databases = {"main": workdir / "data" / "devflow.db", "audit": workdir / "logs" / "audit" / "audit.db",
                 "multi-projects": workdir / "data" / "multi-projects.db"}
    writers = {}
    for role, db in databases.items():
        # ~6 MB main database, so its copy takes many small steps while the writers commit.
        seed(db, 20000 if role == "main" else 3000)
        (tmp_path / role).mkdir()
        writers[role] = Writer(spawn, db, tmp_path / role, pause=0)
    for writer in writers.values():
        writer.wait_for_rows(200)
    before = {role: writer.progress()["count"] for role, writer in writers.items()}
    started = time.time()
    result = cli("backup", "--devflow.workdir", str(workdir), "--dir", str(tmp_path / "backups"),
                 "--status-file", str(tmp_path / "status.json"), "--step-pages", "4", "--no-logs", "--json")
    after = {role: writer.progress()["count"] for role, writer in writers.items()}
    reports = {role: writer.stop() for role, writer in writers.items()}
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    folder = Path(out["path"])
    manifest = json.loads((folder / "manifest.json").read_text())
    entries = {entry["role"]: entry for entry in manifest["databases"]}
    assert set(entries) == set(databases)
    assert manifest["database"] == entries["main"], "the main database where a one-database reader looks"

    for role, db in databases.items():
        entry = entries[role]
        copy = folder / entry["file"]
        assert after[role] > before[role], f"the {role} writer must have kept inserting while the backup ran"
        backup_conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        assert backup_conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count, low, high = backup_conn.execute("SELECT count(*), min(id), max(id) FROM events").fetchone()
        assert low == 1 and count == high, f"ids in the copy of {role} have gaps"
        assert high < reports[role]["last_id"], f"the copy of {role} is a snapshot taken while it was written"
        live = sqlite3.connect(db)
        assert rows_digest(backup_conn, high) == rows_digest(live, high), "the copy is a prefix of the live rows"
        assert entry["source"] == str(db.resolve())
        assert entry["sha256"] == sha256(copy)
        assert entry["size_bytes"] == copy.stat().st_size
        assert entry["row_counts"]["events"] == count
        assert entry["integrity_check"] == "ok"
    assert sqlite3.connect(folder / "devflow.db").execute("SELECT max(id) FROM events").fetchone()[0] > 20000
    assert manifest["versions"]["sqlite"] == sqlite3.sqlite_version
    assert not list(folder.glob("*-wal")), "a backup is one self-contained file per database"

    status = json.loads((tmp_path / "status.json").read_text())
    main = databases["main"]
    recorded = status["databases"][str(main.resolve())]
    assert recorded["database"] == str(main.resolve())
    assert recorded["identity"] == f"{main.stat().st_dev}:{main.stat().st_ino}"
    assert started <= recorded["timestamp"] <= time.time()
    assert recorded["path"] == str(folder)
    assert recorded["size_bytes"] == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_backup_of_a_server_without_its_other_databases_copies_the_main_one_and_says_so(tmp_path):
    workdir = tmp_path / "work"
    seed(workdir / "data" / "devflow.db", 10)
    result = cli("backup", "--devflow.workdir", str(workdir), "--dir", str(tmp_path / "backups"), "--no-logs",
                 "--status-file", str(tmp_path / "status.json"))
    assert result.returncode == 0, result.stderr
    folder = Path(result.stdout.split("Backup written: ", 1)[1].splitlines()[0])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [entry["role"] for entry in manifest["databases"]] == ["main"]
    absent = {entry["role"]: entry["source"] for entry in manifest["skipped"]}
    assert absent == {"audit": str(workdir / "logs" / "audit" / "audit.db"),
                      "multi-projects": str(workdir / "data" / "multi-projects.db")}
    assert f"skipped   {workdir / 'logs' / 'audit' / 'audit.db'}: not present" in result.stdout


@pytest.mark.parametrize("damage", ["not-a-database", "corrupt-pages"])
def test_a_damaged_other_database_fails_the_whole_backup(tmp_path, damage):
    workdir = tmp_path / "work"
    seed(workdir / "data" / "devflow.db", 10)
    audit = workdir / "logs" / "audit" / "audit.db"
    if damage == "not-a-database":
        audit.parent.mkdir(parents=True)
        audit.write_bytes(b"not sqlite at all" * 500)
    else:
        seed(audit, 3000)
        data = bytearray(audit.read_bytes())
        data[len(data) // 2:len(data) // 2 + 8192] = os.urandom(8192)
        audit.write_bytes(bytes(data))
    backups, status = tmp_path / "backups", tmp_path / "status.json"
    result = cli("backup", "--devflow.workdir", str(workdir), "--dir", str(backups), "--no-logs",
                 "--status-file", str(status))
    assert result.returncode == 1
    assert str(audit) in one_line(result.stderr)
    assert not status.exists(), "a backup missing one database records no success"
    assert not backups.exists() or not any(backups.iterdir()), "no half-made backup is left behind"


def test_backup_keeps_config_files_and_compressed_logs_with_checksums(tmp_path):
    db = tmp_path / "devflow.db"
    create_database(db).close()
    env_file = tmp_path / ".env"
    env_file.write_text("DEVFLOW_TOKEN=secret\n")
    extra = tmp_path / "servers.json"
    extra.write_text('{"mcpServers": {}}\n')
    log = tmp_path / "server.log"
    log.write_text("".join(f"[INFO] line {i}\n" for i in range(5000)))
    result = cli("backup", "--devflow.database", str(db), "--dir", str(tmp_path / "b"), "--include", str(extra),
                 "--devflow.log-files", str(log), str(tmp_path / "absent.log"),
                 "--status-file", str(tmp_path / "s.json"), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    folder = Path(out["path"])
    files = {Path(f["source"]).name: f for f in out["manifest"]["files"]}
    assert set(files) == {".env", "servers.json", "server.log"}
    for entry in files.values():
        assert sha256(folder / entry["file"]) == entry["sha256"]
    assert (folder / files[".env"]["file"]).read_text() == "DEVFLOW_TOKEN=secret\n"
    with gzip.open(folder / files["server.log"]["file"], "rt") as handle:
        assert handle.read() == log.read_text()
    assert files["server.log"]["size_bytes"] < files["server.log"]["source_bytes"]
    assert oct(folder.stat().st_mode & 0o777) == "0o700", "backups hold secrets (.env): owner only"


def test_retention_removes_only_old_backups_this_tool_made(tmp_path):
    db = tmp_path / "devflow.db"
    create_database(db).close()
    backups = tmp_path / "backups"

    def backup(*extra):
        result = cli("backup", "--devflow.database", str(db), "--dir", str(backups), "--no-logs",
                     "--status-file", str(tmp_path / "s.json"), "--json", *extra)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    made = [Path(backup()["path"]) for _ in range(4)]
    for age_days, folder in zip((50, 40, 35, 1), made):  # age them the way the tool reads age: its manifest
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["created_timestamp"] = time.time() - age_days * 86400
        (folder / "manifest.json").write_text(json.dumps(manifest))
    foreign = backups / "devflow-backup-20000101T000000Z"  # looks like ours, has no manifest of ours
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"tool": "something-else"}')
    unrelated = backups / "photos"
    unrelated.mkdir()

    out = backup("--retention-days", "30", "--keep-min", "2")
    removed = {Path(p) for p in out["removed"]}
    # Newest two kept whatever their age (the fresh one and the 1-day one); the 35/40/50-day ones go.
    assert removed == {made[0], made[1], made[2]}
    assert made[3].exists() and Path(out["path"]).exists()
    assert foreign.exists() and unrelated.exists()

    out = backup("--retention-days", "0", "--keep-min", "1", "--keep-max", "2")
    assert {Path(p) for p in out["removed"]} == {made[3]}


def test_keep_min_protects_the_last_backups_when_backups_stopped_for_months(tmp_path):
    db = tmp_path / "devflow.db"
    create_database(db).close()
    backups = tmp_path / "backups"
    args = ("backup", "--devflow.database", str(db), "--dir", str(backups), "--no-logs",
            "--status-file", str(tmp_path / "s.json"), "--json")
    made = [Path(json.loads(cli(*args).stdout)["path"]) for _ in range(3)]
    for folder in made:
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["created_timestamp"] -= 200 * 86400
        (folder / "manifest.json").write_text(json.dumps(manifest))
    out = json.loads(cli(*args, "--keep-min", "3").stdout)
    # The fresh backup plus the two newest old ones survive; the guide's `find -mtime +30 -exec rm`
    # would have removed all three old ones.
    assert [Path(p) for p in out["removed"]] == [made[0]]


def test_backup_failures_are_one_line_leave_no_folder_and_no_status(tmp_path):
    backups = tmp_path / "backups"
    status = tmp_path / "status.json"
    missing = cli("backup", "--devflow.database", str(tmp_path / "nope.db"), "--dir", str(backups),
                  "--status-file", str(status))
    assert missing.returncode == 1
    assert "database not found" in one_line(missing.stderr)

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 1000)
    corrupt = cli("backup", "--devflow.database", str(garbage), "--dir", str(backups), "--status-file", str(status))
    assert corrupt.returncode == 1
    assert "not a database" in one_line(corrupt.stderr)

    missing_include = cli("backup", "--devflow.database", str(_small_db(tmp_path)), "--dir", str(backups),
                          "--status-file", str(status), "--include", str(tmp_path / "no.env"))
    assert missing_include.returncode == 1
    assert "no.env" in one_line(missing_include.stderr)
    assert not status.exists()
    assert not backups.exists() or not any(backups.iterdir()), "no half-made backup is left behind"


@pytest.fixture
def small_disk(tmp_path):
    """(directory, preexec_fn): a 3 MB tmpfs, a real full disk (needs mount rights, root here); else a
    2 MB file-size limit in the child, which fails the same writes with EFBIG instead of ENOSPC."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                      capture_output=True).returncode == 0:
        yield mount, None
        subprocess.run(["umount", str(mount)], check=True)
    else:
        yield mount, lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20))


def test_backup_that_runs_out_of_disk_fails_keeps_nothing_and_records_no_success(tmp_path, small_disk):
    directory, limit = small_disk
    status = tmp_path / "status.json"
    log = tmp_path / "server.log"
    log.write_bytes(os.urandom(4 << 20))  # incompressible: its .gz cannot fit once the database is copied
    args = ("--devflow.database", str(_small_db(tmp_path)), "--dir", str(directory / "backups"),
            "--status-file", str(status))
    good = cli("backup", *args, "--no-logs", preexec_fn=limit)
    assert good.returncode == 0, good.stderr
    recorded = status.read_bytes()

    full = cli("backup", *args, "--devflow.log-files", str(log), preexec_fn=limit)
    assert full.returncode == 1
    assert "backup failed, nothing kept" in one_line(full.stderr)
    assert "No space left on device" in full.stderr or "File too large" in full.stderr, full.stderr
    assert status.read_bytes() == recorded, "the failed run must not count as the last success"
    [entry] = json.loads(recorded)["databases"].values()
    assert [p.name for p in (directory / "backups").iterdir()] == [Path(entry["path"]).name], \
        "nothing half-written is left beside the earlier backup"


def test_folder_left_by_a_killed_backup_is_removed_by_the_next_run(tmp_path):
    backups = tmp_path / "backups"
    log = tmp_path / "server.log"
    log.write_bytes(os.urandom(48 << 20))  # seconds of gzip work: time to kill the run in the middle
    args = ("--devflow.database", str(_small_db(tmp_path)), "--dir", str(backups),
            "--status-file", str(tmp_path / "status.json"))
    killed = subprocess.Popen([sys.executable, "-m", "devflow_monitor.cli", "backup", *args,
                               "--devflow.log-files", str(log)], cwd=ROOT)
    try:
        partial = wait_until(lambda: [p for p in backups.glob(".devflow-backup-*.partial") if (p / "logs").exists()],
                             message="the backup copying logs")
    finally:
        killed.kill()  # SIGKILL: none of the backup's own clean-up runs
        killed.wait()
    assert partial[0].exists() and not (tmp_path / "status.json").exists()

    result = cli("backup", *args, "--no-logs", "--json")
    assert result.returncode == 0, result.stderr
    assert sorted(backups.iterdir()) == [Path(json.loads(result.stdout)["path"])]


def test_a_second_backup_into_the_same_directory_is_refused_while_the_first_runs(tmp_path):
    backups = tmp_path / "backups"
    backups.mkdir()
    running = backups / ".devflow-backup-20250101T000000Z.partial"  # the first run's work in progress
    running.mkdir()
    fd = os.open(backups, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a running backup holds
        second = cli("backup", "--devflow.database", str(_small_db(tmp_path)), "--dir", str(backups),
                     "--status-file", str(tmp_path / "status.json"))
    finally:
        os.close(fd)
    assert second.returncode == 1
    assert "another backup is writing to" in one_line(second.stderr)
    assert running.exists(), "a running backup's folder is not touched"
    assert not (tmp_path / "status.json").exists()


def _small_db(tmp_path: Path) -> Path:
    db = tmp_path / "small.db"
    conn = create_database(db)
    insert_event(conn, "git:commit")
    conn.close()
    return db


# Records `rounds` backups of its own database in the shared status file, as backups of several databases do.
RECORDER = ("import sys\n"
            "from pathlib import Path\n"
            "from devflow_monitor.core import backup_status\n"
            "status, database, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])\n"
            "for n in range(rounds):\n"
            "    backup_status.record(status, database, timestamp=1e9 + n, size_bytes=n, backup_path=str(n))\n")


def test_backups_of_several_databases_finishing_together_each_keep_their_status_entry(spawn, tmp_path):
    status = tmp_path / "backup-status.json"
    databases = [tmp_path / f"project-{n}" / "devflow.db" for n in range(4)]
    writers = [spawn([sys.executable, "-c", RECORDER, str(status), str(db), "60"]) for db in databases]
    for writer in writers:
        assert writer.wait(timeout=60) == 0
    entries = json.loads(status.read_text())["databases"]
    assert {key: entry["timestamp"] for key, entry in entries.items()} == \
        {str(db.resolve()): 1e9 + 59 for db in databases}, "no read-modify-write lost another's entry"
