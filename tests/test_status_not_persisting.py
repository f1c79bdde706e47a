"""`/status` shows DevFlowEventsNotPersisted's condition: the server is up and logs, the database gets no row."""

from __future__ import annotations

import json

from conftest import http_get, wait_until
from test_ops_support import start_fake_server

from devflow_monitor.exporter import persistence
from devflow_monitor.exporter.devflow_db import create_database, insert_event


def _status(exporter) -> dict:
    code, body = http_get(exporter.url + "/status")
    assert code == 200, body
    return json.loads(body)


def _watching(spawn, start_exporter, tmp_path, name: str, events: int):
    """A logging server, a database with `events` fresh rows, and an exporter watching both."""
    workdir = tmp_path / name
    workdir.mkdir()
    db = workdir / "devflow.db"
    conn = create_database(db)
    for seq in range(events):
        insert_event(conn, "file:changed", seq=seq)
    conn.close()
    pidfile, log = workdir / "devflow.pid", workdir / "server.log"
    start_fake_server(spawn, workdir, pidfile=pidfile, log=log)
    return start_exporter("--devflow.database", str(db), "--devflow.pidfile", str(pidfile),
                          "--devflow.log-files", str(log), settings={"collectors": {"logs": {"enabled": True}}})


def test_status_is_degraded_while_the_server_logs_and_stores_nothing(spawn, start_exporter, tmp_path):
    exporter = _watching(spawn, start_exporter, tmp_path, "public-build", events=0)
    status = wait_until(lambda: (s := _status(exporter))["events"]["state"] != persistence.UNKNOWN and s,
                        message="the log read and the process found")
    assert status["events"]["state"] == persistence.NOT_PERSISTING, status
    assert status["status"] == "degraded"
    assert "no event at all" in status["events"]["summary"]


def test_status_stays_healthy_while_events_are_stored(spawn, start_exporter, tmp_path):
    exporter = _watching(spawn, start_exporter, tmp_path, "working-build", events=3)
    status = wait_until(lambda: (s := _status(exporter))["events"]["state"] != persistence.UNKNOWN and s,
                        message="the log read and the process found")
    assert status["events"]["state"] == persistence.STORING, status
    assert status["status"] == "healthy"
