"""DevFlowEventsNotPersisted's condition as `/status`, doctor and the terminal overview judge it (core/persistence.py):
the server is up and logs, the database gets no row; pending while the alert waits its `for`, then not persisting."""

from __future__ import annotations

import json
import re

from conftest import database_with_events, http_get, wait_until
from test_ops_support import start_fake_server

from devflow_monitor.core import persistence
from devflow_monitor.core.settings import Settings


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


def test_status_stays_healthy_and_says_pending_while_the_alert_waits_its_for(spawn, start_exporter, tmp_path):
    # A server that logs from its start and stores nothing: DevFlowEventsNotPersisted is pending for 15 minutes.
    status = _settled_status(spawn, start_exporter, tmp_path, events=0)
    assert status["events"]["state"] == persistence.PENDING, status
    assert status["status"] == "healthy"
    assert re.match(r"pending \(\d+ of 15 min\): ", status["events"]["summary"]), status
    assert "no event at all" in status["events"]["summary"]


def test_status_stays_healthy_while_events_are_stored(spawn, start_exporter, tmp_path):
    status = _settled_status(spawn, start_exporter, tmp_path, events=3)
    assert status["events"]["state"] == persistence.STORING, status
    assert status["status"] == "healthy"


# --- the shared judgement, at chosen moments -------------------------------------------------------------

NOW = 1_800_000_000.0
MINUTE = 60.0
DEFAULT = persistence.Window.from_settings(Settings())


def _judge(started_minutes_ago: float, newest_event_minutes_ago: float | None = None,
           last_log_minutes_ago: float = 0.1, window: persistence.Window = DEFAULT) -> persistence.Verdict:
    newest = None if newest_event_minutes_ago is None else NOW - newest_event_minutes_ago * MINUTE
    return persistence.judge(NOW, process_up=True, database_ok=True, last_log_record=NOW - last_log_minutes_ago * MINUTE,
                             newest_event=newest, window=window, process_start=NOW - started_minutes_ago * MINUTE)


def test_a_server_that_logs_and_stores_nothing_is_pending_three_minutes_after_its_start():
    verdict = _judge(started_minutes_ago=3)
    assert verdict.state == persistence.PENDING
    assert verdict.summary.startswith("pending (3 of 15 min): ") and "no event at all" in verdict.summary
    assert verdict.held_seconds == 3 * MINUTE


def test_a_server_that_logs_and_stores_nothing_is_not_persisting_once_it_outlives_the_alerts_for():
    verdict = _judge(started_minutes_ago=16)
    assert verdict.state == persistence.NOT_PERSISTING
    assert verdict.summary.endswith("stored no event at all for 16 min")


def test_the_condition_holds_from_the_newest_event_leaving_the_rate_window_on_a_long_running_server():
    # Up for a day; its last event 8 minutes ago left the 5m window 3 minutes ago: pending for 3 of 15 minutes.
    assert _judge(started_minutes_ago=24 * 60, newest_event_minutes_ago=8).summary.startswith("pending (3 of 15 min)")
    assert _judge(started_minutes_ago=24 * 60, newest_event_minutes_ago=21).state == persistence.NOT_PERSISTING
    assert _judge(started_minutes_ago=24 * 60, newest_event_minutes_ago=4).state == persistence.STORING
    # Restarted 2 minutes ago after its last event an hour ago: the condition is as young as the process.
    assert _judge(started_minutes_ago=2, newest_event_minutes_ago=60).summary.startswith("pending (2 of 15 min)")


def test_a_server_that_wrote_no_log_record_within_the_rate_window_is_idle_not_pending():
    assert _judge(started_minutes_ago=60, last_log_minutes_ago=6).state == persistence.IDLE


def test_a_for_in_seconds_is_counted_in_seconds():
    window = persistence.Window(active=10, quiet=13)  # rate window 10s, `for` 3s
    verdict = persistence.judge(NOW, process_up=True, database_ok=True, last_log_record=NOW - 1, newest_event=None,
                                window=window, process_start=NOW - 2)
    assert verdict.summary.startswith("pending (2 of 3 s): ")
