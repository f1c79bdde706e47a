"""The DevFlow simulator as a real child process: real WAL database, real log files, real HTTP, faults."""

from __future__ import annotations

import functools
import json
import re
import signal
import socket
import sqlite3
import time
import urllib.request

import psutil
import pytest
from conftest import cli, http_get, start_simulator, wait_until

from devflow_monitor.core.devflow_db import EVENT_TYPES, TABLES

HEALTH_KEYS = {"status", "uptime", "version", "monitors", "database", "memory"}
QUEUE_COUNTERS = {"size", "enqueued", "dequeued", "dropped", "failed"}


def query(sim, sql: str, *params):
    with sqlite3.connect(sim.database, timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


def count(sim, where: str = "1", *params) -> int:
    return query(sim, f"SELECT COUNT(*) FROM events WHERE {where}", *params)[0][0]


def log_lines(sim, name: str) -> list[str]:
    path = sim.log_dir / name
    return path.read_text().splitlines() if path.exists() else []


eventually = functools.partial(wait_until, timeout=8.0)


def get_json(url: str) -> tuple[int, dict]:
    status, body = http_get(url)
    return status, json.loads(body)


def test_events_of_real_types_arrive_at_the_configured_rate_in_a_wal_database(simulator):
    first = eventually(lambda: query(simulator, "SELECT MIN(timestamp) FROM events")[0][0], message="a row")
    assert abs(first - time.time() * 1000) < 10_000, "timestamps are milliseconds since the epoch, now"
    eventually(lambda: count(simulator, "timestamp > ?", first + 2600), message="2.6 s of events")
    # Timestamps are the scheduled times, so a 2 s window holds exactly rate * 2 events whatever the load.
    assert count(simulator, "timestamp > ? AND timestamp <= ?", first + 500, first + 2500) in (39, 40, 41)
    assert query(simulator, "PRAGMA journal_mode")[0][0] == "wal"
    tables = {row[0] for row in query(simulator, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(TABLES) <= tables
    by_type = dict(query(simulator, "SELECT type, COUNT(*) FROM events GROUP BY type"))
    assert set(by_type) <= set(EVENT_TYPES)
    assert max(by_type, key=by_type.get) == "file:changed"
    assert any(event_type.startswith("git:") for event_type in by_type)
    data = json.loads(query(simulator, "SELECT data FROM events WHERE type = 'file:changed' LIMIT 1")[0][0])
    assert data["type"] == "file:changed" and data["category"] == "file"


def test_sync_worker_marks_rows_synced_a_few_seconds_after_insert(simulator):
    eventually(lambda: count(simulator, "sync_status = 'synced'"), message="synced rows")
    newest_synced = query(simulator, "SELECT MAX(timestamp) FROM events WHERE sync_status = 'synced'")[0][0]
    assert newest_synced <= time.time() * 1000 - 1500, "rows stay pending for a while first"
    assert count(simulator, "sync_status = 'pending'") > 0
    assert count(simulator, "sync_status = 'failed'") == 0


def test_health_and_status_have_the_guides_shape_with_real_memory(simulator):
    status, health = get_json(simulator.url + "/health")
    assert status == 200 and set(health) == HEALTH_KEYS
    assert health["status"] == "healthy" and health["version"] == "1.0.0" and health["database"] == "connected"
    assert health["monitors"] == {"file": "active", "git": "active", "test": "idle"}
    assert isinstance(health["uptime"], int) and health["uptime"] >= 0
    rss_mb = psutil.Process(simulator.pid).memory_info().rss / 2**20
    assert abs(health["memory"]["used"] - rss_mb) < 5
    assert health["memory"]["total"] == round(psutil.virtual_memory().total / 2**20)

    eventually(lambda: get_json(simulator.url + "/status")[1]["queue"]["default"]["enqueued"] > 0,
               message="queue traffic")
    status, body = get_json(simulator.url + "/status")
    assert status == 200 and set(body) == HEALTH_KEYS | {"queue"}
    assert set(body["queue"]) == {"default", "priority", "batch", "failed"}
    for counters in body["queue"].values():
        assert set(counters) == QUEUE_COUNTERS and all(value >= 0 for value in counters.values())
    assert any('"GET /status HTTP/1.1" 200 ' in line for line in log_lines(simulator, "access.log"))


def test_faults_switch_on_and_off_over_http_and_unknown_names_get_404(simulator):
    assert get_json(simulator.url + "/faults")[1]["active"] == []
    assert simulator.fault("slow_health") == {"fault": "slow_health", "active": True}
    assert get_json(simulator.url + "/faults")[1]["active"] == ["slow_health"]
    simulator.fault("slow_health", on=False)
    assert get_json(simulator.url + "/faults")[1]["active"] == []
    request = urllib.request.Request(simulator.url + "/faults/no_such_fault", method="POST")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=5)
    assert answer.value.code == 404
    assert "no_such_fault" in json.loads(answer.value.read())["error"]


def test_stop_writing_persists_no_rows_while_event_lines_continue(simulator):
    eventually(lambda: count(simulator), message="first rows")
    simulator.fault("stop_writing")
    time.sleep(0.3)   # a tick already under way may still commit
    rows, lines = count(simulator), len(log_lines(simulator, "devflow-monitor.err"))
    time.sleep(1.0)
    assert count(simulator) == rows
    new_lines = log_lines(simulator, "devflow-monitor.err")[lines:]
    assert any(line.startswith(("[DEBUG] File event:", "[INFO][GitMonitor]")) for line in new_lines)
    simulator.fault("stop_writing", on=False)
    eventually(lambda: count(simulator) > rows, message="rows after stop_writing off")


def test_error_burst_writes_error_lines_in_every_format_5xx_and_error_events(simulator):
    assert log_lines(simulator, "error.log") == []
    simulator.fault("error_burst")
    eventually(lambda: len(log_lines(simulator, "error.log")) >= 15, message="error.log lines")
    assert all(line.split()[2] == "ERROR" for line in log_lines(simulator, "error.log"))
    assert sum(line.split()[2] == "ERROR" for line in log_lines(simulator, "server.log")) >= 15
    assert any(line.startswith("[ERROR][") for line in log_lines(simulator, "devflow-monitor.err"))
    assert any(re.match(r"\[\S+Z\] \[ERROR\] \[\w+\] ", line) for line in log_lines(simulator, "devflow-monitor.out"))
    assert any(re.search(r'" 5\d\d \d+ [\d.]+ms$', line) for line in log_lines(simulator, "access.log"))
    audit = [json.loads(line) for path in (simulator.log_dir / "audit").iterdir() for line in path.open()]
    assert any(entry["severity"] == "error" for entry in audit)
    assert count(simulator, "type = 'test:failed'") >= 10


def test_memory_growth_really_grows_rss_and_releases_it(simulator):
    process = psutil.Process(simulator.pid)
    before = process.memory_info().rss
    simulator.fault("memory_growth")
    grown = eventually(lambda: (rss := process.memory_info().rss) > before + 8 * 2**20 and rss,
                       message="RSS +8 MB")
    assert get_json(simulator.url + "/health")[1]["memory"]["used"] >= (before + 8 * 2**20) / 2**20 - 1
    simulator.fault("memory_growth", on=False)
    eventually(lambda: process.memory_info().rss < grown - 6 * 2**20, message="RSS released")


def test_slow_health_answers_after_more_than_a_second(simulator):
    simulator.fault("slow_health")
    began = time.monotonic()
    status, _ = http_get(simulator.url + "/health")
    assert status == 200 and time.monotonic() - began > 1.0
    # The handler logs after answering, and simulated API lines interleave: look for the line, not at the end.
    eventually(lambda: any(re.search(r'"GET /health HTTP/1.1" 200 \d+ 1\d{3}\.\dms$', line)
                           for line in log_lines(simulator, "access.log")), message="the slow /health logged")


def test_failing_health_answers_500_unhealthy_until_switched_off(simulator):
    simulator.fault("failing_health")
    for path in ("/health", "/status"):
        status, body = get_json(simulator.url + path)
        assert status == 500 and body["status"] == "unhealthy"
        assert set(body["monitors"].values()) == {"error"}
    simulator.fault("failing_health", on=False)
    status, body = get_json(simulator.url + "/health")
    assert status == 200 and body["status"] == "healthy"


def test_outbox_backlog_lets_pending_rows_pile_up_and_some_fail(simulator):
    eventually(lambda: count(simulator, "sync_status = 'synced'"), message="normal sync")
    simulator.fault("outbox_backlog")
    time.sleep(0.3)
    pending = count(simulator, "sync_status = 'pending'")
    eventually(lambda: count(simulator, "sync_status = 'failed'") >= 4, message="failed rows")
    eventually(lambda: count(simulator, "sync_status = 'pending'") >= pending + 20, message="pending growth")
    queue = get_json(simulator.url + "/status")[1]["queue"]
    assert queue["failed"]["size"] >= 4 and queue["batch"]["size"] >= 20


def test_cpu_burn_keeps_a_thread_busy(simulator):
    process = psutil.Process(simulator.pid)

    def busy_seconds_over(seconds: float) -> float:
        before = sum(process.cpu_times()[:2])
        time.sleep(seconds)
        return sum(process.cpu_times()[:2]) - before

    idle = busy_seconds_over(0.5)
    simulator.fault("cpu_burn")
    burning = busy_seconds_over(1.0)
    simulator.fault("cpu_burn", on=False)
    assert burning > 0.25 and burning > 4 * idle, (idle, burning)


def test_exit_fault_ends_the_process_at_once_with_status_1(simulator):
    simulator.fault("exit")
    assert simulator.process.wait(timeout=5) == 1
    assert not simulator.pidfile.exists()
    assert "simulated crash" in log_lines(simulator, "error.log")[-1]


def test_exit_fault_given_at_start_exits_with_status_1(tmp_path):
    result = cli("simulate", "--database", str(tmp_path / "devflow.db"), "--listen", "none", "--fault", "exit")
    assert result.returncode == 1


def test_sigterm_exits_cleanly_removes_the_pidfile_and_leaves_the_wal_like_the_real_server(simulator):
    eventually(lambda: count(simulator), message="first rows")
    simulator.process.send_signal(signal.SIGTERM)
    assert simulator.process.wait(timeout=5) == 0
    assert not simulator.pidfile.exists()
    assert simulator.database.with_name("devflow.db-wal").exists()


def audit_ids(paths) -> list[int]:
    return sorted(int(json.loads(line)["id"].split("-")[1]) for path in paths for line in path.open())


def test_rotation_by_rename_then_sigusr1_moves_writing_to_a_new_file_and_loses_no_line(simulator):
    # The audit file appears with the first audit line, a moment after start.
    audit = eventually(lambda: next((simulator.log_dir / "audit").iterdir(), None), message="an audit file")
    server_log = simulator.log_dir / "server.log"
    eventually(lambda: len(log_lines(simulator, "server.log")) > 5, message="server.log lines")
    server_log.rename(server_log.with_name("server.log.1"))
    audit.rename(audit.with_name(audit.name + ".1"))
    simulator.process.send_signal(signal.SIGUSR1)   # logrotate's postrotate
    eventually(lambda: server_log.exists() and audit.exists(), message="reopened files")
    rotated_size = server_log.with_name("server.log.1").stat().st_size
    time.sleep(0.5)
    assert simulator.process.poll() is None, "SIGUSR1 must not kill the server"
    assert server_log.with_name("server.log.1").stat().st_size == rotated_size
    assert server_log.stat().st_size > 0
    ids = audit_ids([audit.with_name(audit.name + ".1"), audit])
    assert ids == list(range(1, ids[-1] + 1)), "every event is in the old or the new audit file"


def test_rotation_by_rename_and_create_without_a_signal_is_noticed_by_inode(simulator):
    server_log = simulator.log_dir / "server.log"
    eventually(lambda: len(log_lines(simulator, "server.log")) > 5, message="server.log lines")
    server_log.rename(server_log.with_name("server.log.1"))
    server_log.touch(mode=0o640)   # logrotate's `create 0640`
    eventually(lambda: server_log.stat().st_size > 0, message="lines in the new file")


def test_listen_none_serves_no_port_but_still_writes_events(spawn, tmp_path):
    sim = start_simulator(spawn, tmp_path, listen=False)
    eventually(lambda: count(sim) > 3, message="rows")
    assert psutil.Process(sim.pid).net_connections(kind="inet") == []
    assert sim.stop() == 0


@pytest.mark.parametrize("flags, complaint", [
    (["--fault", "no_such_fault"], "unknown fault 'no_such_fault'"),
    (["--rate", "fast"], "--rate"),
    (["--listen", "localhost"], "--listen"),
    (["--seed", "x"], "--seed"),
])
def test_bad_input_is_one_line_and_exit_2_before_anything_is_created(tmp_path, flags, complaint):
    database = tmp_path / "devflow.db"
    result = cli("simulate", "--database", str(database), *flags)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and complaint in result.stderr
    assert not database.exists()


def test_busy_port_is_one_line_and_a_non_zero_exit(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("simulate", "--database", str(tmp_path / "devflow.db"), "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"devflow-monitor simulate: error: cannot listen on "
                                                  f"127.0.0.1:{port}: Address already in use"]
