"""`/status`: the operations guide's JSON, filled from what the exporter observes."""

from __future__ import annotations

import json
import sys

from conftest import http_get, wait_until

from devflow_monitor.core.devflow_db import create_database


def test_status_says_database_disconnected_once_the_server_exits(tmp_path, start_exporter, spawn):
    db = tmp_path / "devflow.db"
    create_database(db).close()
    marker = f"devflow-monitor-status-test-{tmp_path.name}"
    server = spawn([sys.executable, "-c", "import time; time.sleep(120)", marker])
    exporter = start_exporter("--devflow.database", str(db), "--devflow.process-pattern", marker)

    def status():
        code, body = http_get(exporter.url + "/status")
        assert code == 200, body
        return json.loads(body)

    running = wait_until(lambda: (s := status())["status"] != "down" and s, message="the server seen running")
    assert running["database"] == "connected"
    server.kill()
    server.wait()
    gone = wait_until(lambda: (s := status())["status"] == "down" and s, message="the server seen gone")
    assert gone["database"] == "disconnected"
