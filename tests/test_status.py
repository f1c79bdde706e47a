"""`/status`: the operations guide's JSON, filled from what the exporter observes."""

from __future__ import annotations

import json
import sys

from conftest import free_port, http_get, parse_metrics, start_simulator, wait_until

from devflow_monitor.core.devflow_db import create_database

# What the public build writes, started by its MCP client with stdout and stderr to files (docs/devflow.md):
# its initialize reply among the JSON-RPC messages on stdout, its monitors' start and stop lines on stderr.
STDOUT = (
    '{"result":{"protocolVersion":"2024-11-05","capabilities":{"tools":{}},'
    '"serverInfo":{"name":"devflow-monitor","version":"0.1.0"}},"jsonrpc":"2.0","id":0}\n'
    '[2026-11-26T11:37:33.687Z] [INFO] [ProjectManager] Project registered\n'
    '{"result":{"tools":[{"name":"getProjectStatus"}]},"jsonrpc":"2.0","id":1}\n')
STDERR = ("[INFO] DevFlow Monitor MCP server started\n"
          "[INFO][FileMonitor] Monitor started\n"
          "[INFO][GitMonitor] Monitor started\n"
          "[INFO][GitMonitor] New commit detected: e6d47ac - chore: update\n")


def status_of(exporter) -> dict:
    code, body = http_get(exporter.url + "/status")
    assert code == 200, body
    return json.loads(body)


def public_build_logs(tmp_path):
    out, err = tmp_path / "devflow-monitor.out", tmp_path / "devflow-monitor.err"
    out.write_text(STDOUT)
    err.write_text(STDERR)
    return out, err


def logs_and_probe(tmp_path, url: str) -> dict:
    return {"devflow": {"url": url},
            "collectors": {"logs": {"enabled": True, "state_file": str(tmp_path / "offsets.json")},
                           "probe": {"enabled": True, "interval_seconds": 0.2}}}


def test_status_says_database_disconnected_once_the_server_exits(tmp_path, start_exporter, spawn):
    db = tmp_path / "devflow.db"
    create_database(db).close()
    marker = f"devflow-monitor-status-test-{tmp_path.name}"
    server = spawn([sys.executable, "-c", "import time; time.sleep(120)", marker])
    exporter = start_exporter("--devflow.database", str(db), "--devflow.process-pattern", marker)

    running = wait_until(lambda: (s := status_of(exporter))["status"] != "down" and s,
                         message="the server seen running")
    assert running["database"] == "connected"
    server.kill()
    server.wait()
    gone = wait_until(lambda: (s := status_of(exporter))["status"] == "down" and s, message="the server seen gone")
    assert gone["database"] == "disconnected"


def test_version_and_monitors_of_a_server_without_http_come_from_its_logs(tmp_path, start_exporter, spawn):
    out, err = public_build_logs(tmp_path)
    marker = f"devflow-monitor-status-test-{tmp_path.name}"
    server = spawn([sys.executable, "-c", "import time; time.sleep(120)", marker])
    exporter = start_exporter("--devflow.database", str(tmp_path / "devflow.db"), "--devflow.process-pattern", marker,
                              "--devflow.log-files", str(out), str(err),
                              settings=logs_and_probe(tmp_path, f"http://127.0.0.1:{free_port()}"))  # no listener

    status = wait_until(lambda: (s := status_of(exporter))["version"] and s, message="the version from stdout")
    assert status["version"] == "0.1.0"
    assert status["monitors"] == {"file": "active", "git": "active", "test": "unknown"}
    samples = exporter.scrape()  # the probe publishes the logs' answer: one family, no second publisher
    assert samples[("devflow_app_build_info", (("version", "0.1.0"),))] == 1
    assert samples[("devflow_app_monitor_state", (("monitor", "file"), ("state", "active")))] == 1
    assert samples[("devflow_app_monitor_state", (("monitor", "test"), ("state", "unknown")))] == 1

    with open(err, "a") as stderr:
        stderr.write("[INFO][GitMonitor] Monitor stopped\n")
    wait_until(lambda: status_of(exporter)["monitors"]["git"] == "stopped", message="the git monitor's stop")
    server.kill()  # its editor closed it: no stop line, yet none of its monitors runs
    server.wait()
    gone = wait_until(lambda: (s := status_of(exporter))["status"] == "down" and s, message="the server seen gone")
    assert gone["monitors"] == {"file": "stopped", "git": "stopped", "test": "unknown"}
    assert gone["version"] == "0.1.0"


def test_the_apps_own_status_answer_wins_over_its_logs(tmp_path, start_exporter, spawn):
    app = start_simulator(spawn, tmp_path / "app")  # answers the guide's /status: version 1.0.0, test idle
    out, err = public_build_logs(tmp_path)
    exporter = start_exporter("--devflow.database", str(app.database), "--devflow.log-files", str(out), str(err),
                              settings=logs_and_probe(tmp_path, app.url))

    status = wait_until(lambda: (s := status_of(exporter))["version"] == "1.0.0" and s, message="the app's answer")
    assert status["monitors"] == {"file": "active", "git": "active", "test": "idle"}
    code, text = http_get(exporter.url + "/metrics")
    assert text.count("# TYPE devflow_app_build_info gauge") == 1
    versions = {labels for name, labels in parse_metrics(text) if name == "devflow_app_build_info"}
    assert versions == {(("version", "1.0.0"),)}
