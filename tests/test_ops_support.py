"""Real stand-ins the operator-command tests share: a DevFlow-like writer process, a server
process that looks like `node .../server/index.js`, a real Node server that crashes at start as
the public build does, and a fast builder for big event tables.
The tests in this file prove the stand-ins behave as the other tests assume.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from conftest import free_port, requires, wait_until
from devflow_monitor.core.devflow_db import EVENT_TYPES, SCHEMA

DAY_MS = 86_400_000

# Inserts events one by one like the server (one transaction each, the server's 5 s busy timeout), a
# short sleep between them. It times how long each insert waited for the write lock (BEGIN IMMEDIATE:
# the busy handler's wait) and how long the whole insert took (that wait plus its own write and fsync),
# and reports both on SIGTERM.
WRITER = r"""
import json, os, signal, sys, time
from devflow_monitor.core.devflow_db import EVENT_TYPES, create_database, insert_event
db, stats, pidfile, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
conn = create_database(db)
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
first = last = None
count, longest_wait, longest_insert, slow = 0, 0.0, 0.0, []
with open(pidfile + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(pidfile + ".tmp", pidfile)
while not stopping:
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    locked = time.perf_counter()
    row = insert_event(conn, EVENT_TYPES[count % len(EVENT_TYPES)], seq=count)
    conn.execute("COMMIT")
    done = time.perf_counter()
    first = row if first is None else first
    last, count = row, count + 1
    longest_wait, longest_insert = max(longest_wait, locked - started), max(longest_insert, done - started)
    if done - started > 0.02:
        slow.append([time.time(), round(locked - started, 4), round(done - started, 4)])
    if count % 50 == 0:
        with open(stats + ".tmp", "w") as f:
            json.dump({"count": count, "first_id": first, "last_id": last}, f)
        os.replace(stats + ".tmp", stats)
    time.sleep(pause)
with open(stats + ".tmp", "w") as f:
    json.dump({"count": count, "first_id": first, "last_id": last, "max_wait": longest_wait,
               "max_insert": longest_insert, "slow": slow, "done": True}, f)
os.replace(stats + ".tmp", stats)
"""

# Looks like the DevFlow server to `ps` (argv[0] "node", a script .../server/index.js). Like the real
# one it has no SIGTERM handler, so it never checkpoints its WAL on exit. Options: a pidfile, a
# listening port, rows to write (left in the WAL), a log it writes numbered lines to and reopens on
# SIGUSR1, as the guide's server does for logrotate.
FAKE_SERVER = r"""
import argparse, os, signal, site, socket, sys, time
site.addsitedir(os.environ["VENV_SITE"])
from devflow_monitor.core.devflow_db import create_database, insert_event
p = argparse.ArgumentParser()
p.add_argument("--pidfile"); p.add_argument("--port", type=int); p.add_argument("--database")
p.add_argument("--rows", type=int, default=0); p.add_argument("--log"); p.add_argument("--ready")
a = p.parse_args()
if a.port:
    server = socket.socket(); server.bind(("127.0.0.1", a.port)); server.listen()
if a.database:
    conn = create_database(a.database)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    for i in range(a.rows):
        insert_event(conn, "git:commit", seq=i)
reopen = []
signal.signal(signal.SIGUSR1, lambda *_: reopen.append(1))
log = os.open(a.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640) if a.log else None
if a.pidfile:
    with open(a.pidfile + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(a.pidfile + ".tmp", a.pidfile)
if a.ready:
    open(a.ready, "w").close()
line = 0
while True:
    if log is not None:
        if reopen:
            reopen.clear(); os.close(log)
            log = os.open(a.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        os.write(log, f"[INFO] line {line}\n".encode()); line += 1
    time.sleep(0.002)
"""


class Writer:
    """The WRITER child: start it, let it run, stop it and read its report."""

    def __init__(self, spawn, db: Path, workdir: Path, pause: float = 0.002):
        self.stats = workdir / "writer-stats.json"
        self.pidfile = workdir / "writer.pid"
        self.proc = spawn([sys.executable, "-c", WRITER, str(db), str(self.stats), str(self.pidfile), str(pause)])
        wait_until(lambda: self.pidfile.exists(), message="the writer to start")

    def progress(self) -> dict:
        try:
            return json.loads(self.stats.read_text())
        except (OSError, ValueError):
            return {"count": 0}

    def wait_for_rows(self, n: int, timeout: float = 30) -> None:
        wait_until(lambda: self.progress()["count"] >= n, timeout=timeout,
                   message=f"the writer to insert {n} rows")

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=15)
        report = json.loads(self.stats.read_text())
        assert report.get("done"), report
        return report


def start_fake_server(spawn, workdir: Path, **options) -> subprocess.Popen:
    """A process whose command line is `node <workdir>/devflow/server/index.js ...`; waits until it is ready."""
    script = workdir / "devflow" / "server" / "index.js"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(FAKE_SERVER)
    ready = workdir / f"ready-{time.monotonic_ns()}"
    args = ["node", str(script), "--ready", str(ready)]
    for key, value in options.items():
        args += [f"--{key}", str(value)]
    # With argv[0] "node" Python cannot find its own home from argv[0]: name it, and this virtualenv's
    # packages, where the project's editable install hooks in through a .pth file.
    env = {**os.environ, "PYTHONHOME": sys.base_prefix, "VENV_SITE": sysconfig.get_paths()["purelib"],
           "PYTHONUNBUFFERED": "1"}
    proc = spawn(args, executable=sys.executable, env=env)
    wait_until(lambda: ready.exists() or proc.poll() is not None, message="the fake server to start")
    assert proc.poll() is None, "the fake server exited at start"
    return proc


def crash_like_the_public_build(workdir: Path, stderr: Path) -> int:
    """Start a real Node server whose database module throws as better-sqlite3 does without <cwd>/data; its
    stderr goes to `stderr`. Returns its exit status."""
    install = workdir / "devflow"
    module = install / "node_modules" / "better-sqlite3" / "lib" / "database.js"
    module.parent.mkdir(parents=True)
    module.write_text("'use strict';\nconst fs = require('fs');\nconst path = require('path');\n"
                      "function Database(filename) {\n\tif (!fs.existsSync(path.dirname(filename))) {\n"
                      "\t\tthrow new TypeError('Cannot open database because the directory does not exist');\n"
                      "\t}\n}\nmodule.exports = Database;\n")
    server = install / "dist" / "server" / "index.js"
    server.parent.mkdir(parents=True)
    server.write_text("import { createRequire } from 'module';\nconst require = createRequire(import.meta.url);\n"
                      "const Database = require('../../node_modules/better-sqlite3/lib/database.js');\n"
                      "console.error('[INFO] DevFlow Monitor MCP server starting');\n"
                      "new Database(process.cwd() + '/data/devflow.db');\n")
    (install / "package.json").write_text('{"type": "module"}\n')
    project = workdir / "project"
    project.mkdir()
    with open(stderr, "ab") as err:
        return subprocess.run(["node", str(server)], cwd=project, stderr=err, timeout=60).returncode


def build_events_db(path: Path, total: int, old: int, now_ms: int) -> None:
    """`total` events, the first `old` of them 31-90 days old, the rest 0-29 days old, ids in time order.

    Built by SQLite itself (a recursive CTE, indexes after the load): a million rows in seconds.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    statements = [s.strip() for s in SCHEMA.split(";") if s.strip()]
    for statement in statements:
        if not statement.startswith("CREATE INDEX"):
            conn.execute(statement)
    conn.execute("CREATE TEMP TABLE types(k INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO types VALUES (?, ?)", list(enumerate(EVENT_TYPES)))
    conn.execute("BEGIN")
    conn.execute("""
        INSERT INTO events(type, timestamp, data, sync_status, device_id, created_at, updated_at)
        SELECT t.name, s.ts,
               printf('{"id":"%s-%d","type":"%s","category":"%s","timestamp":%d,"severity":"info",'
                      || '"source":"Monitor","data":{"action":"%s","path":"src/module_%d.ts"}}',
                      substr(t.name, 1, instr(t.name, ':') - 1), s.i, t.name,
                      substr(t.name, 1, instr(t.name, ':') - 1), s.ts, substr(t.name, instr(t.name, ':') + 1),
                      s.i % 97),
               'pending', 'device-1', s.ts / 1000, s.ts / 1000
        FROM (WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < :total - 1)
              SELECT i, CASE WHEN i < :old THEN :now - 90 * :day + (i * 59 * :day) / max(:old, 1)
                             ELSE :now - 29 * :day + ((i - :old) * 29 * :day) / max(:total - :old, 1) END AS ts
              FROM seq) s
        JOIN types t ON t.k = s.i % :types""",
                 {"total": total, "old": old, "now": now_ms, "day": DAY_MS, "types": len(EVENT_TYPES)})
    conn.execute("COMMIT")
    for statement in statements:
        if statement.startswith("CREATE INDEX"):
            conn.execute(statement)
    conn.execute("INSERT INTO migrations(name, applied_at) VALUES ('001_initial', ?)", (now_ms // 1000,))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(stderr: str) -> str:
    """The single line a failing command prints; fails the test if there is more or none."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    return lines[0]


# --- the stand-ins themselves -------------------------------------------------------------

def test_writer_child_commits_gapless_ids_and_reports_its_longest_wait(spawn, tmp_path):
    db = tmp_path / "devflow.db"
    writer = Writer(spawn, db, tmp_path)
    writer.wait_for_rows(100)
    report = writer.stop()
    conn = sqlite3.connect(db)
    count, low, high = conn.execute("SELECT count(*), min(id), max(id) FROM events").fetchone()
    assert (count, low, high) == (report["count"], report["first_id"], report["last_id"])
    assert high - low + 1 == count
    assert 0 <= report["max_wait"] <= report["max_insert"] < 5


def test_fake_server_looks_like_node_and_leaves_its_wal_behind(spawn, tmp_path):
    import psutil

    db = tmp_path / "data" / "devflow.db"
    port = free_port()
    proc = start_fake_server(spawn, tmp_path, pidfile=tmp_path / "pid", port=port, database=db, rows=25)
    cmdline = psutil.Process(proc.pid).cmdline()
    assert cmdline[0] == "node" and cmdline[1].endswith("server/index.js")
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    assert Path(f"{db}-wal").stat().st_size > 0
    assert sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone()[0] == 25


def test_builder_puts_old_rows_before_the_cutoff_and_new_rows_after(tmp_path):
    now_ms = int(time.time() * 1000)
    db = tmp_path / "big.db"
    build_events_db(db, 2000, 800, now_ms)
    conn = sqlite3.connect(db)
    cutoff = now_ms - 30 * DAY_MS
    assert conn.execute("SELECT count(*) FROM events WHERE timestamp < ?", (cutoff,)).fetchone()[0] == 800
    assert conn.execute("SELECT max(timestamp) FROM events").fetchone()[0] <= now_ms
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert os.path.getsize(db) > 0


@requires("node")
def test_crash_stand_in_is_node_failing_at_start_without_a_level_tag(tmp_path):
    err = tmp_path / "devflow-monitor.err"
    assert crash_like_the_public_build(tmp_path, err) == 1
    lines = err.read_text().splitlines()
    assert lines[0] == "[INFO] DevFlow Monitor MCP server starting"
    assert lines[1].endswith("node_modules/better-sqlite3/lib/database.js:6") and lines[3].strip() == "^"
    assert "TypeError: Cannot open database because the directory does not exist" in lines
    assert lines[-1].startswith("Node.js v") and not (tmp_path / "project" / "data").exists()
