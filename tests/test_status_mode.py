"""`/status` follows devflow.mode: a server its MCP client has closed is "not_running", not "down"; a crash
shows as the last exit; several matching processes are said, not silently picked."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from datetime import datetime

import pytest
from conftest import NO_SERVER, http_get, wait_until
from test_process_exits import Client, watching

from devflow_monitor.core import catalog


def status(exporter) -> dict:
    code, body = http_get(exporter.url + "/status")
    assert code == 200, body
    return json.loads(body)


@pytest.mark.parametrize("mode, word", [("on_demand", "not_running"), ("daemon", "down")])
def test_no_server_is_not_running_on_demand_and_down_for_a_daemon(start_exporter, tmp_path, mode, word):
    exporter = start_exporter("--devflow.database", str(tmp_path / "devflow.db"), "--devflow.mode", mode, *NO_SERVER)
    body = status(exporter)
    assert body["status"] == word
    assert body["mode"] == mode
    assert body["last_exit"] is None
    assert body["process"]["pid"] is None


def test_a_crash_since_the_last_start_shows_as_the_last_exit(start_exporter, spawn, tmp_path):
    install = f"/opt/devflow-status-test-{os.getpid()}-{tmp_path.name}"
    exporter, log = watching(start_exporter, tmp_path, re.escape(install) + r"/server/index\.js", "on_demand")
    client = Client(spawn, install, log)
    running = wait_until(lambda: (s := status(exporter))["process"]["pid"] and s, message="the server found")
    assert running["status"] != "not_running" and running["process"]["pid"] == client.server_pid
    before = time.time()
    os.kill(client.server_pid, signal.SIGKILL)  # its client lives on
    crashed = wait_until(lambda: (s := status(exporter))["last_exit"] and s, message="the exit judged")
    assert crashed["status"] == "not_running"
    assert crashed["last_exit"]["reason"] == "crash"
    assert before - 1 <= datetime.fromisoformat(crashed["last_exit"]["at"]).timestamp() <= time.time()
    assert exporter.value(catalog.PROCESS_EXITS.name, reason="crash") == 1


def test_several_matching_servers_are_said_and_the_oldest_reported(start_exporter, spawn, tmp_path):
    marker = f"devflow-monitor-status-several-{tmp_path.name}"
    first = spawn([sys.executable, "-c", "import time; time.sleep(120)", marker])
    exporter = start_exporter("--devflow.database", str(tmp_path / "devflow.db"), "--devflow.process-pattern", marker)
    wait_until(lambda: status(exporter)["process"]["pid"] == first.pid, message="the first server found")
    spawn([sys.executable, "-c", "import time; time.sleep(120)", marker])
    both = wait_until(lambda: (s := status(exporter))["process"]["matches"] == 2 and s, message="both seen")
    assert both["process"]["summary"] == f"2 processes match; reporting the oldest (PID {first.pid})"
    assert both["process"]["pid"] == first.pid
