"""`/status` shows DevFlowEventsNotPersisted's condition: the server is up and logs, the database gets no row."""

from __future__ import annotations

import json

from conftest import database_with_events, http_get, wait_until
from test_ops_support import start_fake_server

from devflow_monitor.core import persistence


def _status(exporter) -> dict:
    code, body = http_get(exporter.url + "/status")
    assert code == 200, body
    return json.loads(body)


def _settled_status(spawn, start_exporter, tmp_path, events: int) -> dict:
    """/status of an exporter watching a logging server and a database with `events` fresh rows, once it
    has read the log and found the process."""
    db = database_with_events(tmp_path / "devflow.db", events)
    pidfile, log = tmp_path / "devflow.pid", tmp_path / "server.log"
    start_fake_server(spawn, tmp_path, pidfile=pidfile, log=log)
    exporter = start_exporter("--devflow.database", str(db), "--devflow.pidfile", str(pidfile),
                              "--devflow.log-files", str(log), settings={"collectors": {"logs": {"enabled": True}}})
    return wait_until(lambda: (s := _status(exporter))["events"]["state"] != persistence.UNKNOWN and s,
                      message="the log read and the process found")


def test_status_is_degraded_while_the_server_logs_and_stores_nothing(spawn, start_exporter, tmp_path):
    status = _settled_status(spawn, start_exporter, tmp_path, events=0)
    assert status["events"]["state"] == persistence.NOT_PERSISTING, status
    assert status["status"] == "degraded"
    assert "no event at all" in status["events"]["summary"]


def test_status_stays_healthy_while_events_are_stored(spawn, start_exporter, tmp_path):
    status = _settled_status(spawn, start_exporter, tmp_path, events=3)
    assert status["events"]["state"] == persistence.STORING, status
    assert status["status"] == "healthy"
