"""`devflow-monitor doctor`: every failure it claims to detect, produced for real.

The healthy setup is real too: a process that looks like the DevFlow server (pidfile, listening
port, a log it writes), a real database, and the real exporter (`devflow-monitor serve`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NO_SERVER, ROOT, cli, free_port, http_get, stop_process, wait_for_http, wait_until
from test_ops_support import start_fake_server
from test_process_exits import Client, watching

from devflow_monitor.core import persistence
from devflow_monitor.core.devflow_db import create_database, insert_event


class Setup:
    """Paths and flags of a healthy DevFlow; tests break one thing and run doctor."""

    def __init__(self, spawn, tmp_path: Path):
        self.spawn, self.tmp = spawn, tmp_path
        self.db = tmp_path / "data" / "devflow.db"
        conn = create_database(self.db)
        for i in range(50):
            insert_event(conn, "git:commit", seq=i)
        conn.close()
        self.pidfile = tmp_path / "devflow.pid"
        self.port = free_port()
        self.log = tmp_path / "server.log"
        self.server = start_fake_server(spawn, tmp_path, pidfile=self.pidfile, port=self.port, log=self.log)
        wait_until(lambda: self.log.exists() and self.log.stat().st_size > 2000, message="the server to log")
        self.exporter_port = self.start_exporter(self.db)
        self.listener_expected = tmp_path / "listener-expected.yml"
        self.listener_expected.write_text("app: {expect_listener: true}\n")

    def start_exporter(self, db: Path) -> int:
        """An exporter watching `db`, the server and its log; returns its port."""
        port = free_port()
        self.spawn([sys.executable, "-m", "devflow_monitor.cli", "serve", "--web.listen-address",
                    f"127.0.0.1:{port}", "--devflow.database", str(db), "--devflow.pidfile", str(self.pidfile),
                    "--devflow.port", str(self.port), "--devflow.log-files", str(self.log), "--no-collector.probe"],
                   env={**os.environ, "DEVFLOW_MONITOR_COLLECTORS_LOGS_STATE_FILE": ""})
        wait_for_http(f"http://127.0.0.1:{port}/health")
        wait_until(lambda: self.log.name in http_get(f"http://127.0.0.1:{port}/metrics")[1],
                   message="the exporter to read the server's log")
        return port

    def flags(self, **override) -> list[str]:
        values = {"devflow.database": self.db, "devflow.pidfile": self.pidfile, "devflow.port": self.port,
                  "devflow.log-files": self.log, "exporter-url": f"http://127.0.0.1:{self.exporter_port}/health",
                  "disk-warn-percent": 0, **{_flag(k): v for k, v in override.items()}}
        return [part for key, value in values.items() if value is not None for part in (f"--{key}", str(value))]

    def doctor(self, *extra, **override) -> tuple[int, dict]:
        result = cli("doctor", *self.flags(**override), *extra, "--json")
        report = json.loads(result.stdout)
        assert report["exit_code"] == result.returncode
        return result.returncode, {check["name"]: check for check in report["checks"]}


def _flag(name: str) -> str:
    """devflow_log_files -> devflow.log-files, min_free_mb -> min-free-mb"""
    if name.startswith("devflow_"):
        return "devflow." + name[len("devflow_"):].replace("_", "-")
    return name.replace("_", "-")


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """One healthy DevFlow for the module; tests never change it, they point doctor elsewhere."""
    started = []

    def spawn(args, **kwargs):
        kwargs.setdefault("cwd", ROOT)
        started.append(subprocess.Popen(args, **kwargs))
        return started[-1]

    yield Setup(spawn, tmp_path_factory.mktemp("healthy"))
    for proc in reversed(started):
        stop_process(proc)


@pytest.fixture
def setup(healthy, tmp_path) -> Setup:
    healthy.scratch = tmp_path
    return healthy


def assert_only_failure(code: int, checks: dict, name: str, words: str, status: str = "fail") -> None:
    assert checks[name]["status"] == status, checks[name]
    assert words in checks[name]["summary"], checks[name]["summary"]
    assert checks[name]["action"], "a problem comes with a recommended action"
    others = {n: c["status"] for n, c in checks.items() if n != name}
    assert set(others.values()) <= {"ok", "skip"}, others
    assert code == (2 if status == "fail" else 1)


def test_healthy_setup_is_all_ok_with_exit_0(setup):
    code, checks = setup.doctor()
    assert code == 0, checks
    assert {n: c["status"] for n, c in checks.items()} == {
        "process": "ok", "port": "skip", "database": "ok", "wal": "ok", "disk": "ok", "logs": "ok",
        "events": "ok", "exporter": "ok", "prometheus": "skip", "alertmanager": "skip"}
    assert checks["process"]["details"]["pid"] == setup.server.pid
    assert checks["events"]["details"]["state"] == persistence.STORING
    text = cli("doctor", *setup.flags())
    assert text.returncode == 0 and "0 failed, 0 warnings, 7 ok." in text.stdout


def test_missing_database_fails(setup):
    code, checks = setup.doctor(devflow_database=setup.scratch / "gone" / "devflow.db")
    assert_only_failure(code, checks, "database", "database not found")


def test_corrupt_database_fails_its_integrity_check(setup):
    db = setup.scratch / "devflow.db"
    shutil.copyfile(setup.db, db)
    conn = sqlite3.connect(db)
    pages = [row[0] for row in conn.execute("SELECT pageno FROM dbstat WHERE name = 'idx_events_type'")]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(db, "r+b") as handle:  # scribble over the index's cells (the page's end), keep its header
        handle.seek(pages[-1] * page_size - page_size // 4)
        handle.write(b"\xff" * (page_size // 4))
    code, checks = setup.doctor(devflow_database=db)
    assert checks["database"]["status"] == "fail"
    assert "integrity_check found problems" in checks["database"]["summary"] \
        or "malformed" in checks["database"]["summary"], checks["database"]
    assert code == 2


def test_a_file_that_is_not_a_database_fails(setup):
    db = setup.scratch / "devflow.db"
    db.write_bytes(b"GIF89a" + b"\x00" * 8000)
    code, checks = setup.doctor(devflow_database=db)
    assert_only_failure(code, checks, "database", "is not a SQLite database")


def test_quick_flag_runs_quick_check(setup):
    code, checks = setup.doctor("--quick")
    assert code == 0 and checks["database"]["details"]["check"] == "quick_check"


def test_absent_process_fails_and_a_stale_pidfile_is_named(spawn, setup):
    pidfile = setup.scratch / "stale.pid"
    crashed = start_fake_server(spawn, setup.scratch, pidfile=pidfile)
    crashed.send_signal(signal.SIGTERM)  # no handler: the pidfile stays behind, as after a crash
    crashed.wait(timeout=10)
    code, checks = setup.doctor(devflow_pidfile=pidfile)
    assert checks["process"]["status"] == "fail"
    assert f"names PID {crashed.pid}, which is not running" in checks["process"]["summary"]
    code, checks = setup.doctor(devflow_pidfile=None, devflow_process_pattern="no-such-process-c0ffee",
                                devflow_port=free_port())
    assert checks["process"]["status"] == "fail" and "no DevFlow process found" in checks["process"]["summary"]
    assert code == 2


def test_on_demand_a_server_not_running_is_ok_and_doctor_exits_0(setup):
    absent = {"devflow_pidfile": None, "devflow_process_pattern": NO_SERVER[1]}
    code, checks = setup.doctor("--devflow.mode", "on_demand", **absent)
    assert code == 0, checks
    assert checks["process"]["status"] == "ok"
    assert checks["process"]["summary"] == "not running (on-demand)"
    code, checks = setup.doctor(**absent)
    assert_only_failure(code, checks, "process", "no DevFlow process found")
    assert "--devflow.mode on_demand" in checks["process"]["action"]


def test_on_demand_a_crash_the_exporter_saw_warns(setup, start_exporter, spawn, tmp_path):
    install = f"/opt/devflow-doctor-test-{os.getpid()}-{tmp_path.name}"
    # Escaped, the pattern on the exporter's command line does not match itself: doctor finds no server there.
    pattern = re.escape(install) + r"/server/index\.js"
    exporter, log = watching(start_exporter, tmp_path, pattern, "on_demand")
    client = Client(spawn, install, log)
    wait_until(lambda: http_get(exporter.url + "/metrics")[1].count("devflow_process_up 1.0"), message="found")
    os.kill(client.server_pid, signal.SIGKILL)  # its client lives on: a crash
    wait_until(lambda: 'devflow_process_exits_total{reason="crash"} 1.0' in http_get(exporter.url + "/metrics")[1],
               message="the crash judged")
    code, checks = setup.doctor("--devflow.mode", "on_demand", devflow_pidfile=None,
                                devflow_process_pattern=pattern,
                                exporter_url=f"{exporter.url}/health")
    assert_only_failure(code, checks, "process", "not running (on-demand); last exit: crash at", status="warn")


def test_several_servers_are_said_and_a_workdir_picks_the_one_running_in_it(spawn, setup):
    marker = str(setup.scratch / "devflow" / "server" / "index.js")
    watched = spawn([sys.executable, "-c", "import time; time.sleep(120)", marker], cwd=setup.tmp)
    spawn([sys.executable, "-c", "import time; time.sleep(120)", marker], cwd=setup.scratch)
    code, checks = setup.doctor(devflow_pidfile=None, devflow_process_pattern=marker)
    assert_only_failure(code, checks, "process", "2 processes match; reporting the oldest", status="warn")
    assert checks["process"]["details"]["pid"] == watched.pid
    # setup.db is <setup.tmp>/data/devflow.db: the public build's layout, whose workdir is setup.tmp.
    code, checks = setup.doctor(devflow_pidfile=None, devflow_process_pattern=marker, devflow_database=None,
                                devflow_workdir=setup.tmp)
    assert code == 0 and checks["process"]["status"] == "ok", checks["process"]
    assert checks["process"]["details"]["matches"] == [watched.pid]


def test_process_found_by_pattern_never_matches_doctor_itself(setup):
    # The pattern is on doctor's own command line; only the server may match it (the guide's
    # `pgrep -f devflow` matches the script that runs it).
    marker = str(setup.tmp / "devflow" / "server" / "index.js")
    code, checks = setup.doctor(devflow_pidfile=None, devflow_process_pattern=marker)
    assert checks["process"]["status"] == "ok", checks["process"]
    assert checks["process"]["details"]["matches"] == [setup.server.pid]
    code, checks = setup.doctor(devflow_pidfile=None, devflow_process_pattern="no-such-process-c0ffee")
    assert checks["process"]["status"] == "fail", "the port's owner is not DevFlow unless asked"
    code, checks = setup.doctor("--devflow.match-port", devflow_pidfile=None,
                                devflow_process_pattern="no-such-process-c0ffee")
    assert checks["process"]["status"] == "ok"
    assert checks["process"]["details"]["found_by"] == f"port {setup.port}"


def test_port_is_not_checked_where_no_listener_is_expected(setup):
    # The public build serves no HTTP: a missing listener is its normal state, not a failure.
    code, checks = setup.doctor(devflow_port=free_port())
    assert code == 0 and checks["port"]["status"] == "skip", checks["port"]
    assert "no listener expected" in checks["port"]["summary"]


def test_port_not_listening_fails_where_a_listener_is_expected(setup):
    code, checks = setup.doctor("--settings", str(setup.listener_expected))
    assert checks["port"]["status"] == "ok"
    code, checks = setup.doctor("--settings", str(setup.listener_expected), devflow_port=free_port())
    assert_only_failure(code, checks, "port", "nothing listens on port")
    assert "--skip" not in checks["port"]["action"] and "expect_listener: false" in checks["port"]["action"]


def _exporter_of_an_empty_database(setup) -> tuple[Path, int]:
    """The public build's defect (docs/devflow.md): the process is up and logs, its database gets no row."""
    empty = setup.scratch / "empty.db"
    create_database(empty).close()
    return empty, setup.start_exporter(empty)


def test_a_server_that_logs_and_stores_nothing_warns_while_the_alert_waits_and_fails_once_it_fires(setup):
    empty, port = _exporter_of_an_empty_database(setup)
    exporter_url = f"http://127.0.0.1:{port}/health"
    # The server started moments ago: DevFlowEventsNotPersisted is pending for its `for` (15m).
    code, checks = setup.doctor(devflow_database=empty, exporter_url=exporter_url)
    assert_only_failure(code, checks, "events", "of 15 min): ", status="warn")
    assert checks["events"]["summary"].startswith("pending (") and "no event at all" in checks["events"]["summary"]
    assert checks["events"]["details"]["state"] == persistence.PENDING
    # With a `for` the server has already outlived, the alert would fire: so does the check.
    short = setup.scratch / "short-for.yml"
    short.write_text("alerts: {DevFlowEventsNotPersisted: {for: 1s}}\n")
    code, checks = setup.doctor("--settings", str(short), devflow_database=empty, exporter_url=exporter_url)
    assert_only_failure(code, checks, "events", "no event at all")
    assert checks["events"]["details"]["held_seconds"] >= 1
    assert "#devfloweventsnotpersisted" in checks["events"]["action"]


def test_the_runbook_link_is_on_the_exporter_doctor_checks_unless_the_settings_name_another(setup):
    empty, port = _exporter_of_an_empty_database(setup)
    code, checks = setup.doctor("--web.listen-address", f"127.0.0.1:{port}", devflow_database=empty,
                                exporter_url=None)
    assert checks["exporter"]["status"] == "ok", checks["exporter"]
    assert f"http://127.0.0.1:{port}/runbook#devfloweventsnotpersisted" in checks["events"]["action"]
    code, checks = setup.doctor(devflow_database=empty, exporter_url=f"http://localhost:{port}/health")
    assert f"http://localhost:{port}/runbook#devfloweventsnotpersisted" in checks["events"]["action"]
    own = setup.scratch / "own-runbook.yml"
    own.write_text("runbook_url: 'https://wiki.example/devflow#{anchor}'\n")
    code, checks = setup.doctor("--settings", str(own), "--web.listen-address", f"127.0.0.1:{port}",
                                devflow_database=empty, exporter_url=None)
    assert "https://wiki.example/devflow#devfloweventsnotpersisted" in checks["events"]["action"]


def test_errors_in_the_logs_warn_then_fail_above_the_guides_ten(setup):
    log = setup.scratch / "error.log"
    lines = [f"[2026-11-26T11:37:{i:02d}.687Z] [INFO] [ProjectManager] ok {i}" for i in range(80)]
    lines[10:13] = ["[ERROR][GitMonitor] Error processing commit 50c1: GitError: bad object"] * 3
    log.write_text("\n".join(lines) + "\n")
    code, checks = setup.doctor(devflow_log_files=log)
    assert_only_failure(code, checks, "logs", "3 error lines", status="warn")
    assert "GitError" in checks["logs"]["summary"]

    log.write_text("\n".join(lines + ["2025-08-02 14:00:01 ERROR database locked"] * 11) + "\n")
    code, checks = setup.doctor(devflow_log_files=log)
    assert_only_failure(code, checks, "logs", "14 error lines")


def test_exporter_unreachable_fails(setup):
    code, checks = setup.doctor(exporter_url=f"http://127.0.0.1:{free_port()}/health")
    assert_only_failure(code, checks, "exporter", "exporter not reachable")


def test_low_disk_space_fails_below_the_threshold(setup):
    code, checks = setup.doctor(min_free_mb=1 << 40)
    assert_only_failure(code, checks, "disk", "below the")


def test_a_large_wal_warns(spawn, setup):
    db = setup.scratch / "devflow.db"
    writer = start_fake_server(spawn, setup.scratch, database=db, rows=200)
    writer.send_signal(signal.SIGTERM)  # no checkpoint on exit: the WAL stays, as with the real server
    writer.wait(timeout=10)
    code, checks = setup.doctor(devflow_database=db, wal_warn_mb=0.01)
    assert_only_failure(code, checks, "wal", "-wal file is", status="warn")


def test_unreachable_prometheus_and_alertmanager_fail_when_given(setup):
    code, checks = setup.doctor(prometheus=f"http://127.0.0.1:{free_port()}",
                                alertmanager=f"http://127.0.0.1:{free_port()}")
    assert checks["prometheus"]["status"] == "fail" and "not reachable" in checks["prometheus"]["summary"]
    assert checks["alertmanager"]["status"] == "fail" and "not reachable" in checks["alertmanager"]["summary"]
    assert code == 2


def test_skip_leaves_a_check_out(setup):
    code, checks = setup.doctor("--skip", "port", "--settings", str(setup.listener_expected),
                                devflow_port=free_port())
    assert code == 0 and checks["port"]["status"] == "skip"


def test_text_report_gives_each_problem_an_action(setup):
    result = cli("doctor", *setup.flags(devflow_database=setup.scratch / "none.db"))
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    failing = next(i for i, line in enumerate(lines) if "FAIL  database" in line)
    assert lines[failing + 1].strip().startswith("-> ")
    assert "1 failed, 0 warnings, 6 ok." in result.stdout
