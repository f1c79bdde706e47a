"""Every panel query returns data from a real Prometheus scraping a real exporter.

The chain is the one Grafana sees: `devflow-monitor simulate` (with error_burst and
outbox_backlog on, so error, 5xx and failed-sync series exist) writes a real SQLite
database, logs and an access log and serves /health and /status; `devflow-monitor serve`
watches it with short intervals; a real `prometheus` scrapes the exporter every second and
evaluates the project's alert rules. Template variables are filled in as Grafana would for
one selected job and instance, and each query goes through the HTTP API: an error or an
empty result fails the test, naming the dashboard and panel. The one exception is the query
that says "not running" (dashboards/states.py): it is empty while the server runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, free_port, http_get, requires, wait_for_http
from devflow_monitor.dashboards import DASHBOARDS, states
from devflow_monitor.core import catalog

pytestmark = pytest.mark.slow

JSON_DIR = ROOT / "dashboards" / "json"
RULES_DIR = ROOT / "alerting" / "rules"
JOB = "devflow"
DATA_TIMEOUT_SECONDS = 90
# $__rate_interval with a 1 s scrape interval: wide enough for several samples.
RATE_INTERVAL = "15s"


def panel_queries() -> list[tuple[str, str, dict]]:
    """(dashboard, panel title, target) for every query in the committed JSON."""
    found = []
    for name in DASHBOARDS:
        board = json.loads((JSON_DIR / f"{name}.json").read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append((name, panel["title"], target))
    return found


def only_while_stopped(name: str, title: str, ref_id: str) -> bool:
    """Whether the target is the one a panel shows as "not running": empty while the server runs."""
    board = json.loads((JSON_DIR / f"{name}.json").read_text())
    panel = next(p for p in board["panels"] if p["title"] == title and p["type"] != "row")
    return any(o["matcher"] == {"id": "byFrameRefID", "options": ref_id}
               and states.NOT_RUNNING in json.dumps(o["properties"]) for o in panel["fieldConfig"]["overrides"])


def fill_variables(expr: str, instance: str, window: int) -> str:
    """What Grafana sends for $job=devflow, $instance=<the exporter> and a `window`-second range."""
    values = {"$__rate_interval": RATE_INTERVAL, "$__interval": "1s", "$__range": f"{window}s",
              "$job": JOB, "$instance": instance}
    for variable in sorted(values, key=len, reverse=True):
        expr = expr.replace(variable, values[variable])
    assert "$" not in expr, f"unfilled template variable in {expr}"
    return expr


def prometheus_api(base: str, path: str, **params) -> tuple[list, str | None]:
    """(result, error) of one /api/v1 query."""
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
    if body.get("status") != "success":
        return [], f"{body.get('errorType')}: {body.get('error')}"
    return body["data"]["result"], None


def write_configs(tmp: Path, exporter_port: int) -> tuple[Path, Path]:
    logs = tmp / "logs"
    exporter_config = tmp / "exporter.yml"
    exporter_config.write_text(yaml.safe_dump({
        "devflow": {"access_log": str(logs / "access.log")},
        "collectors": {
            "process": {"scan_interval_seconds": 0.5},
            "database": {"counts_interval_seconds": 1, "integrity_interval_seconds": 2},
            "logs": {"state_file": str(tmp / "log-offsets.json"), "poll_interval_seconds": 0.5},
            "probe": {"interval_seconds": 0, "timeout_seconds": 1},
        },
        "backup": {"directory": str(tmp / "backups"), "status_file": str(tmp / "backup-status.json")},
    }))
    rules = tmp / "test-rules.yml"
    # One rule that fires at once, so the ALERTS panels meet real firing-alert series even though
    # the project's own alerts (loaded too) only fire after their `for` windows.
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-query-test", "rules": [{
        "alert": "DashboardQueryTestFiring", "expr": f"{catalog.PROCESS_UP.name} >= 0",
        "labels": {"severity": "info"}}]}]}))
    prometheus_config = tmp / "prometheus.yml"
    prometheus_config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)] + [str(p) for p in sorted(RULES_DIR.glob("*.yml"))],
        "scrape_configs": [{"job_name": JOB,
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
    }))
    return exporter_config, prometheus_config


@requires("prometheus")
def test_every_panel_query_returns_data_from_a_real_prometheus(spawn, tmp_path):
    prometheus = shutil.which("prometheus")
    sim_port, exporter_port, prometheus_port = free_port(), free_port(), free_port()
    instance = f"127.0.0.1:{exporter_port}"
    exporter_config, prometheus_config = write_configs(tmp_path, exporter_port)
    logs, database, pidfile = tmp_path / "logs", tmp_path / "devflow.db", tmp_path / "devflow.pid"
    logs.mkdir()
    monitor = [sys.executable, "-m", "devflow_monitor.cli"]

    def output(name):
        return open(tmp_path / f"{name}.out", "w")

    spawn([*monitor, "simulate", "--database", str(database), "--listen", f"127.0.0.1:{sim_port}",
           "--log-dir", str(logs), "--pidfile", str(pidfile), "--rate", "20", "--seed", "5",
           "--fault", "error_burst", "outbox_backlog"], stdout=output("simulate"), stderr=subprocess.STDOUT)
    wait_for_http(f"http://127.0.0.1:{sim_port}/health")
    # A real backup, so the "Last backup" panels have the status file the exporter reads.
    backup = subprocess.run([*monitor, "backup", "--config.file", str(exporter_config),
                             "--devflow.database", str(database), "--no-logs"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    spawn([*monitor, "serve", "--config.file", str(exporter_config),
           "--web.listen-address", instance, "--devflow.database", str(database),
           "--devflow.pidfile", str(pidfile), "--devflow.url", f"http://127.0.0.1:{sim_port}",
           "--devflow.log-files", str(logs / "*.log"), str(logs / "devflow-monitor.*")],
          stdout=output("serve"), stderr=subprocess.STDOUT)
    wait_for_http(f"http://{instance}/metrics")
    spawn([prometheus, f"--config.file={prometheus_config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
           f"--web.listen-address=127.0.0.1:{prometheus_port}", "--storage.tsdb.retention.time=1h"],
          stdout=output("prometheus"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{prometheus_port}"
    wait_for_http(f"{base}/-/ready", timeout=30)
    started = time.time()

    queries = panel_queries()
    missing: dict[tuple, str] = {}
    deadline = time.monotonic() + DATA_TIMEOUT_SECONDS
    pending = list(queries)
    while pending:
        now = time.time()
        window = max(int(now - started), 1)
        missing = {}
        for name, title, target in pending:
            expr = fill_variables(target["expr"], instance, window)
            result, error = prometheus_api(base, "query", query=expr, time=f"{now:.3f}")
            if not error and not target["instant"]:  # Grafana asks range panels for a range
                result, error = prometheus_api(base, "query_range", query=expr, start=f"{started:.3f}",
                                               end=f"{now:.3f}", step="1")
            if error:
                pytest.fail(f"{name}/{title}: Prometheus rejected {expr}\n{error}")
            if not result and not only_while_stopped(name, title, target["refId"]):
                missing[(name, title, target["refId"])] = expr
        pending = [q for q in pending if (q[0], q[1], q[2]["refId"]) in missing]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(2)

    assert http_get(f"{base}/api/v1/targets")[0] == 200
    report = "\n".join(f"{n}/{t} [{ref}]: {expr}" for (n, t, ref), expr in missing.items())
    assert not missing, (f"{len(missing)} of {len(queries)} queries returned nothing after "
                         f"{DATA_TIMEOUT_SECONDS}s:\n{report}\n(logs in {tmp_path})")
