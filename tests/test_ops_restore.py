"""`devflow-monitor restore`: damaged backups refused with the database untouched, good ones swapped in
atomically with the old databases kept (every database of the server, or none), and a running DevFlow
(a real process) respected."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conftest import ROOT, cli, wait_until
from test_ops_support import Writer, one_line, sha256, start_fake_server

from devflow_monitor.core.devflow_db import connect_readonly, create_database, insert_event, server_databases


def make_backup(tmp_path: Path, rows: int) -> Path:
    """A real backup folder of a database with `rows` events, made by the backup command."""
    source = tmp_path / "source.db"
    conn = create_database(source)
    for i in range(rows):
        insert_event(conn, "file:created", seq=i)
    conn.close()
    result = cli("backup", "--devflow.database", str(source), "--dir", str(tmp_path / "backups"), "--no-logs",
                 "--status-file", str(tmp_path / "status.json"), "--json")
    assert result.returncode == 0, result.stderr
    return Path(json.loads(result.stdout)["path"])


@pytest.fixture(scope="module")
def pristine_backup(tmp_path_factory) -> Path:
    return make_backup(tmp_path_factory.mktemp("pristine"), rows=3000)


def live_database(spawn, tmp_path: Path, rows: int) -> Path:
    """DevFlow's database as the server leaves it after SIGTERM: recent rows only in the -wal."""
    db = tmp_path / "app" / "data" / "devflow.db"
    server = start_fake_server(spawn, tmp_path, database=db, rows=rows)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=10)
    assert Path(f"{db}-wal").stat().st_size > 0
    return db


def snapshot(directory: Path) -> dict:
    return {p.name: sha256(p) for p in sorted(directory.iterdir()) if p.is_file()}


def restore(db: Path, backup, *extra) -> subprocess.CompletedProcess:
    # A pattern no process has: these tests must never find (or stop) anyone else's process.
    return cli("restore", str(backup), "--devflow.database", str(db), "--devflow.process-pattern",
               "no-such-process-c0ffee", "--devflow.port", "1", *extra)


def corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = os.urandom(4096)
    path.write_bytes(bytes(data))


def rehash(folder: Path) -> None:
    """Make the manifest agree with a damaged file, so only the integrity check can catch it."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in (manifest["database"], *manifest["databases"]):
        entry["sha256"] = sha256(folder / "devflow.db")
        entry["size_bytes"] = (folder / "devflow.db").stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage, expected", [
    ("corrupt", "checksum mismatch"),
    ("corrupt-rehashed", "fails integrity_check"),
    ("truncated", "checksum mismatch"),
    ("truncated-bare", "fails integrity_check"),
    ("not-a-database", "not a SQLite database"),
    ("no-events-table", "no events table"),
])
def test_restore_refuses_a_damaged_backup_and_leaves_the_database_untouched(spawn, tmp_path, pristine_backup,
                                                                           damage, expected):
    folder = tmp_path / pristine_backup.name
    shutil.copytree(pristine_backup, folder)
    copy = folder / "devflow.db"
    target = folder
    if damage.startswith("corrupt"):
        corrupt_middle(copy)
        if damage == "corrupt-rehashed":
            rehash(folder)
    elif damage.startswith("truncated"):
        with open(copy, "r+b") as handle:
            handle.truncate(copy.stat().st_size // 2)
        if damage == "truncated-bare":
            (folder / "manifest.json").unlink()
            target = copy
    elif damage == "not-a-database":
        target = tmp_path / "notes.txt"
        target.write_text("not a database\n" * 100)
    elif damage == "no-events-table":
        target = tmp_path / "other.db"
        sqlite3.connect(target).execute("CREATE TABLE t(x)").connection.close()
    db = live_database(spawn, tmp_path, rows=40)
    before = snapshot(db.parent)

    result = restore(db, target)
    assert result.returncode == 1
    assert expected in one_line(result.stderr)
    assert snapshot(db.parent) == before, "the live database and its -wal must be untouched"


def test_restore_swaps_in_the_backup_keeps_the_previous_database_and_can_be_undone(spawn, tmp_path):
    folder = make_backup(tmp_path, rows=120)
    db = live_database(spawn, tmp_path, rows=55)
    wal_before = Path(f"{db}-wal").read_bytes()

    result = restore(db, folder, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert sha256(db) == sha256(folder / "devflow.db"), "the app's database is now exactly the backup"
    assert not Path(f"{db}-wal").exists(), "the old WAL must not sit beside the restored file"
    assert sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0] == 120

    kept = [Path(p) for p in out["kept"]]
    assert [p.name.split(".before-restore-")[1][16:] for p in kept] == ["", "-wal", "-shm"]
    assert kept[1].read_bytes() == wal_before
    # The kept database opened with its kept WAL holds every row the server had written.
    assert sqlite3.connect(kept[0]).execute("SELECT count(*) FROM events").fetchone()[0] == 55

    subprocess.run(" && ".join(out["undo"]), shell=True, check=True)
    assert sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0] == 55


def test_restore_text_output_says_how_to_undo(spawn, tmp_path):
    folder = make_backup(tmp_path, rows=10)
    db = live_database(spawn, tmp_path, rows=5)
    result = restore(db, folder)
    assert result.returncode == 0, result.stderr
    assert "To undo" in result.stdout
    assert f"mv {db}.before-restore-" in result.stdout


def test_restore_refuses_while_devflow_runs_and_stops_it_by_pid_with_stop(spawn, tmp_path):
    folder = make_backup(tmp_path, rows=30)
    db = tmp_path / "app" / "data" / "devflow.db"
    pidfile = tmp_path / "devflow.pid"
    server = start_fake_server(spawn, tmp_path, database=db, rows=7, pidfile=pidfile)
    before = snapshot(db.parent)
    pid_args = ("--devflow.pidfile", str(pidfile))

    refused = restore(db, folder, *pid_args)
    assert refused.returncode == 1
    assert f"DevFlow is running: PID {server.pid}" in one_line(refused.stderr)
    assert server.poll() is None and snapshot(db.parent) == before

    restarted_pidfile = tmp_path / "restarted.pid"
    program = f"import os, time; open({str(restarted_pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    restart = shlex.join([sys.executable, "-c", program])
    try:
        done = restore(db, folder, *pid_args, "--stop", "--restart-command", restart)
        assert done.returncode == 0, done.stderr
        wait_until(lambda: server.poll() is not None, message="the server to exit after SIGTERM")
        assert server.returncode == -signal.SIGTERM
        assert sha256(db) == sha256(folder / "devflow.db")
        assert f"Stopped DevFlow PID {server.pid}" in done.stdout
        wait_until(restarted_pidfile.exists, message="the restart command to run")
    finally:
        if restarted_pidfile.exists():
            psutil.Process(int(restarted_pidfile.read_text())).kill()


def test_restore_refuses_when_devflow_ignores_sigterm(spawn, tmp_path):
    folder = make_backup(tmp_path, rows=5)
    db = tmp_path / "devflow.db"
    create_database(db).close()
    pidfile = tmp_path / "stubborn.pid"
    stubborn = spawn([sys.executable, "-c", "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                      f"open('{pidfile}', 'w').write(str(os.getpid())); time.sleep(60)"])
    wait_until(pidfile.exists, message="the stubborn process to start")
    before = sha256(db)
    result = restore(db, folder, "--devflow.pidfile", str(pidfile), "--stop", "--stop-timeout", "0.5")
    assert result.returncode == 1
    assert "did not exit" in one_line(result.stderr)
    assert sha256(db) == before and stubborn.poll() is None
    stubborn.kill()  # it ignores the SIGTERM the spawn fixture would send


def test_restore_of_a_missing_backup_or_the_live_file_itself_is_refused(tmp_path):
    db = tmp_path / "devflow.db"
    create_database(db).close()
    missing = restore(db, tmp_path / "nowhere")
    assert missing.returncode == 1 and "backup not found" in one_line(missing.stderr)
    itself = restore(db, db)
    assert itself.returncode == 1 and "live database itself" in one_line(itself.stderr)


def test_restore_with_config_files_puts_them_back_and_keeps_the_replaced_ones(tmp_path):
    folder, settings, db = backup_with_settings(tmp_path)
    result = restore(db, folder, "--config-files", "--include", str(settings), "--json")
    assert result.returncode == 0, result.stderr
    restored = json.loads(result.stdout)["config_files"]
    assert [Path(item["file"]) for item in restored] == [settings]
    assert settings.read_text() == "LEVEL=info\n"
    assert Path(restored[0]["kept"]).read_text() == "LEVEL=debug\n"


# As the server leaves a database: rows committed into the -wal, never checkpointed (it exits without closing).
LEAVE_IN_WAL = ("import os, sys\n"
                "from devflow_monitor.core.devflow_db import create_database, insert_event\n"
                "conn = create_database(sys.argv[1])\n"
                "conn.execute('PRAGMA wal_autocheckpoint=0')\n"
                "for i in range(int(sys.argv[2])):\n"
                "    insert_event(conn, 'git:commit', seq=i)\n"
                "os._exit(0)\n")


def leave_in_wal(db: Path, rows: int) -> None:
    subprocess.run([sys.executable, "-c", LEAVE_IN_WAL, str(db), str(rows)], check=True, cwd=ROOT)
    assert Path(f"{db}-wal").stat().st_size > 0


def events_in(db: Path) -> int:
    """Rows of a database as a reader sees them, its -wal included, without changing a file."""
    conn = connect_readonly(db)
    try:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def server_files(workdir: Path) -> dict[str, Path]:
    return dict(server_databases(workdir / "data" / "devflow.db"))


def backup_of(tmp_path: Path, workdir: Path) -> Path:
    made = cli("backup", "--devflow.workdir", str(workdir), "--dir", str(tmp_path / "backups"), "--no-logs",
               "--status-file", str(tmp_path / "status.json"), "--json")
    assert made.returncode == 0, made.stderr
    return Path(json.loads(made.stdout)["path"])


def tree(directory: Path) -> dict:
    """Every file under `directory` with its checksum, and every folder."""
    return {str(p.relative_to(directory)): sha256(p) if p.is_file() else "folder"
            for p in sorted(directory.rglob("*"))}


def test_restore_puts_back_every_database_of_a_backup_made_under_writes_and_keeps_each_replaced_one(spawn,
                                                                                                    tmp_path):
    workdir = tmp_path / "work"
    databases = server_files(workdir)
    writers = {}
    for role, db in databases.items():
        (tmp_path / role).mkdir()
        writers[role] = Writer(spawn, db, tmp_path / role, pause=0.001)
    for writer in writers.values():
        writer.wait_for_rows(100)
    folder = backup_of(tmp_path, workdir)
    last_ids = {role: writer.stop()["last_id"] for role, writer in writers.items()}
    in_backup = {entry["role"]: entry["row_counts"]["events"]
                 for entry in json.loads((folder / "manifest.json").read_text())["databases"]}
    assert set(in_backup) == set(databases)
    for db in databases.values():
        leave_in_wal(db, 5)
    live = {role: last_ids[role] + 5 for role in databases}
    assert all(in_backup[role] < live[role] for role in databases), "the writers went on after the backup"

    result = restore(databases["main"], folder, "--json")
    assert result.returncode == 0, result.stderr
    out = {entry["role"]: entry for entry in json.loads(result.stdout)["databases"]}
    assert set(out) == set(databases)
    for role, db in databases.items():
        assert sha256(db) == sha256(folder / Path(out[role]["backup"]).name)
        assert events_in(db) == in_backup[role]
        assert not Path(f"{db}-wal").exists(), f"the old WAL must not sit beside the restored {role} database"
        kept = [Path(p) for p in out[role]["kept"]]
        assert [p.name.split(".before-restore-")[1][16:] for p in kept] == ["", "-wal", "-shm"]
        assert kept[0].parent == db.parent
        assert events_in(kept[0]) == live[role], f"the kept {role} database with its kept WAL holds every row"

    subprocess.run(" && ".join(json.loads(result.stdout)["undo"]), shell=True, check=True)
    assert {role: events_in(db) for role, db in databases.items()} == live


def test_restore_of_a_backup_holding_only_the_main_database_leaves_the_others_as_they_are(tmp_path):
    source = tmp_path / "source"
    for db in server_files(source).values():
        create_database(db).close()
    folder = backup_of(tmp_path, source)
    # The manifest of a backup made when only the main database was copied.
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest.pop("databases")[1:]:
        (folder / entry["file"]).unlink()
    manifest["database"] = {key: manifest["database"][key]
                            for key in ("file", "size_bytes", "sha256", "integrity_check", "row_counts")}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    live = server_files(tmp_path / "work")
    for db in live.values():
        conn = create_database(db)
        insert_event(conn, "git:commit")
        conn.close()
    others = {role: sha256(db) for role, db in live.items() if role != "main"}

    result = restore(live["main"], folder)
    assert result.returncode == 0, result.stderr
    assert events_in(live["main"]) == 0
    assert {role: sha256(live[role]) for role in others} == others
    assert f"Left as it is: {live['audit']} (not in this backup)" in result.stdout


def test_a_failing_swap_puts_back_the_databases_already_swapped(tmp_path):
    source = tmp_path / "source"
    for db in server_files(source).values():
        create_database(db).close()
    folder = backup_of(tmp_path, source)
    workdir = tmp_path / "work"
    live = server_files(workdir)
    leave_in_wal(live["main"], 8)
    leave_in_wal(live["multi-projects"], 3)
    live["audit"].mkdir(parents=True)  # the main database is swapped first, then this one cannot be
    before = tree(workdir)

    result = restore(live["main"], folder)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert f"swap of {live['audit']} failed, databases unchanged" in line
    assert "the databases already swapped were put back" in line
    assert tree(workdir) == before, "every database and its -wal as it was, no copy or kept file left"
    assert events_in(live["main"]) == 8


def backup_with_settings(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A real backup of a database and of a config file given with --include; returns the folder, the
    config file (changed since) and a live database."""
    source = tmp_path / "source.db"
    create_database(source).close()
    settings = tmp_path / "settings.env"
    settings.write_text("LEVEL=info\n")
    made = cli("backup", "--devflow.database", str(source), "--dir", str(tmp_path / "backups"), "--no-logs",
               "--include", str(settings), "--status-file", str(tmp_path / "s.json"), "--json")
    assert made.returncode == 0, made.stderr
    settings.write_text("LEVEL=debug\n")
    db = tmp_path / "app" / "devflow.db"
    conn = create_database(db)
    insert_event(conn, "git:commit")
    conn.close()
    return Path(json.loads(made.stdout)["path"]), settings, db


def tamper(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def outside_database(tmp_path: Path) -> Path:
    """A valid DevFlow database outside the backup folder, which a tampered manifest points at."""
    other = tmp_path / "elsewhere" / "other.db"
    conn = create_database(other)
    for i in range(7):
        insert_event(conn, "file:created", seq=i)
    conn.close()
    return other


def point_databases_at(manifest: dict, file: str, copy: Path) -> None:
    for entry in (manifest["database"], *manifest["databases"]):
        entry.update(file=file, sha256=sha256(copy), size_bytes=copy.stat().st_size)


def config_entry(manifest: dict) -> dict:
    return next(entry for entry in manifest["files"] if entry["role"] == "config")


def attack(name: str, folder: Path, tmp_path: Path) -> Path:
    """Tamper with the backup as attack `name` does; returns the file the attacker wants written."""
    wanted = tmp_path / "victim" / "authorized_keys"
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("not the backup's to give\n")
    if name == "config-to-a-path-of-the-manifest":
        tamper(folder, lambda m: config_entry(m).update(source=str(wanted)))
    elif name == "config-read-from-outside":
        tamper(folder, lambda m: config_entry(m).update(file="../../elsewhere/secret.txt", sha256=sha256(secret),
                                                        size_bytes=secret.stat().st_size))
    elif name == "config-read-from-an-absolute-path":
        tamper(folder, lambda m: config_entry(m).update(file=str(secret), sha256=sha256(secret),
                                                        size_bytes=secret.stat().st_size))
    elif name == "config-symlink-leading-out":
        copy = folder / json.loads((folder / "manifest.json").read_text())["files"][0]["file"]
        copy.unlink()
        copy.symlink_to(secret)
        tamper(folder, lambda m: config_entry(m).update(sha256=sha256(secret), size_bytes=secret.stat().st_size))
    elif name == "database-absolute":
        other = outside_database(tmp_path)
        tamper(folder, lambda m: point_databases_at(m, str(other), other))
    elif name == "database-dotdot":
        other = outside_database(tmp_path)
        tamper(folder, lambda m: point_databases_at(m, "../../elsewhere/other.db", other))
    elif name == "database-symlink-leading-out":
        other = outside_database(tmp_path)
        (folder / "devflow.db").unlink()
        (folder / "devflow.db").symlink_to(other)
        tamper(folder, lambda m: point_databases_at(m, "devflow.db", other))
    return wanted


@pytest.mark.parametrize("name", [
    "config-to-a-path-of-the-manifest", "config-read-from-outside", "config-read-from-an-absolute-path",
    "config-symlink-leading-out", "database-absolute", "database-dotdot", "database-symlink-leading-out",
])
def test_restore_reads_only_inside_the_backup_and_writes_only_where_the_configuration_says(tmp_path, name):
    folder, settings, db = backup_with_settings(tmp_path)
    wanted = attack(name, folder, tmp_path)
    before = tree(tmp_path)

    result = restore(db, folder, "--config-files", "--include", str(settings))
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    one_line(result.stderr)
    assert tree(tmp_path) == before, "the live database, the config file and every other file as they were"
    assert not wanted.exists()


@pytest.mark.parametrize("change", [
    "del m['database']",
    "m['database'] = 'x'",
    "m['databases'] = []",
    "m['databases'] = {'main': m['database']}",
    "m['databases'][0]['sha256'] = 5",
    "m['databases'][0]['size_bytes'] = '53248'",
    "m['databases'][0]['role'] = None",
    "m['databases'].append(dict(m['databases'][0]))",
    "m['files'] = 'config/00-settings.env'",
    "m['files'] = [1]",
    "m['files'] = [{'role': 'config'}]",
    "m['files'][0]['source'] = 5",
    "m['files'][0]['role'] = 'script'",
    "m['files'].append({'role': 'log', 'source': '/var/log/x', 'file': 'logs/x.gz', 'size_bytes': 1})",
])
def test_a_malformed_manifest_is_refused_in_one_line_before_anything_changes(tmp_path, change):
    folder, settings, db = backup_with_settings(tmp_path)
    tamper(folder, lambda m: exec(change, {"m": m}))
    before = tree(tmp_path)

    result = restore(db, folder, "--config-files", "--include", str(settings))
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    assert "nothing was changed" in one_line(result.stderr) or "no valid manifest.json" in result.stderr
    assert tree(tmp_path) == before, "no database swapped, no config file written, no kept file left"


def test_config_files_go_back_only_to_what_the_configuration_backs_up(tmp_path):
    folder, settings, db = backup_with_settings(tmp_path)
    before = tree(tmp_path)
    without_include = restore(db, folder, "--config-files")
    assert without_include.returncode == 1
    assert "is not one this configuration backs up" in one_line(without_include.stderr)
    assert tree(tmp_path) == before


def test_config_files_the_configuration_backs_up_go_back_without_include(tmp_path):
    db = tmp_path / "app" / "devflow.db"
    create_database(db).close()
    env = db.parent / ".env"
    env.write_text("PORT=3000\n")
    made = cli("backup", "--devflow.database", str(db), "--dir", str(tmp_path / "backups"), "--no-logs",
               "--status-file", str(tmp_path / "s.json"), "--json")
    assert made.returncode == 0, made.stderr
    env.write_text("PORT=9999\n")

    result = restore(db, Path(json.loads(made.stdout)["path"]), "--config-files", "--json")
    assert result.returncode == 0, result.stderr
    assert [Path(item["file"]) for item in json.loads(result.stdout)["config_files"]] == [env.resolve()]
    assert env.read_text() == "PORT=3000\n"
