"""One threshold, one home: a value changed in a settings file reaches the alert rule, the Grafana
panels, the terminal dashboard's colours and doctor's verdict, each through its own `--settings`.

The threshold is DevFlowHighMemoryUsage's (resident memory as a share of the machine's, 50% by
default). Lowered to 0.01%, any real process is above it: each of the four must now say so, and
with the defaults none of them does.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading

import psutil
import pytest
import yaml
from conftest import ROOT, cli, stop_process, wait_until
from test_ops_dashboard import _text, run_on_terminal

from devflow_monitor.alerting import rules
from devflow_monitor.core.settings import Settings, load
from devflow_monitor.core import catalog

ALERT = "DevFlowHighMemoryUsage"
LOWERED = 0.0001
RED = "\x1b[31m"


@pytest.fixture
def lowered(tmp_path):
    path = tmp_path / "settings.yml"
    path.write_text(yaml.safe_dump({"alerts": {ALERT: {"threshold": LOWERED}}}))
    return path


def test_the_rule_compares_with_the_overridden_threshold(lowered):
    default = rules.active_alerts(Settings())[ALERT].expr
    overridden = rules.active_alerts(load(lowered))[ALERT].expr
    assert default.endswith("> 0.5")
    assert overridden == default.removesuffix("0.5") + "0.0001"


def test_the_grafana_panels_colour_at_the_overridden_threshold(lowered, tmp_path):
    def rss_panel_steps(json_dir) -> dict[str, list]:
        """Threshold values of every panel showing resident memory as a share of the machine's."""
        found = {}
        for name in ("overview", "performance"):
            board = json.loads((json_dir / f"{name}.json").read_text())
            for panel in board["panels"]:
                exprs = " ".join(t["expr"] for t in panel.get("targets", ()))
                if catalog.PROCESS_RSS.name in exprs and catalog.HOST_MEMORY_TOTAL.name in exprs:
                    found[f"{name}/{panel['title']}"] = [
                        s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]
        return found

    out = tmp_path / "json"
    result = subprocess.run([sys.executable, "-m", "devflow_monitor.dashboards.build", "--settings", str(lowered),
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    default, overridden = rss_panel_steps(ROOT / "dashboards" / "json"), rss_panel_steps(out)
    assert len(default) == 2 and all(values == [0.5] for values in default.values()), default
    assert overridden.keys() == default.keys()
    assert all(values == [LOWERED] for values in overridden.values()), overridden


class _Metrics(http.server.BaseHTTPRequestHandler):
    """The exporter's answer for a process holding 1% of a 16 GiB machine."""

    body = _text({catalog.PROCESS_UP: [([], 1.0)], catalog.HOST_MEMORY_TOTAL: [([], 16.0 * 2 ** 30)],
                  catalog.PROCESS_RSS: [([], 0.01 * 16 * 2 ** 30)]}).encode()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def metrics_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_the_terminal_dashboard_turns_red_at_the_overridden_threshold(lowered, metrics_url):
    def rss_line(*extra: str) -> str:
        output = run_on_terminal(["dashboard", "--url", metrics_url, "--view", "performance", "--frames", "1",
                                  "--interval", "0.1", *extra])
        return next(line for line in output.splitlines() if "RSS of machine" in line)

    assert "1.0%" in rss_line() and RED not in rss_line(), "1% of the machine is below the default 50%"
    assert RED in rss_line("--settings", str(lowered))


def test_doctor_warns_at_the_overridden_threshold(lowered, tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        pidfile = tmp_path / "devflow.pid"
        pidfile.write_text(f"{sleeper.pid}\n")
        # The sleeper's own resident memory, once Python has loaded, is well above 0.01% of any machine.
        wait_until(lambda: psutil.Process(sleeper.pid).memory_info().rss > LOWERED * psutil.virtual_memory().total,
                   message="the sleeper to load")

        def process_check(*extra: str) -> dict:
            skip = [part for name in ("port", "database", "wal", "disk", "logs", "exporter") for part in ("--skip", name)]
            result = cli("doctor", "--devflow.pidfile", str(pidfile), *skip, "--json", *extra)
            report = json.loads(result.stdout)
            (check,) = [c for c in report["checks"] if c["name"] == "process"]
            return check

        assert process_check()["status"] == "ok"
        check = process_check("--settings", str(lowered))
        assert check["status"] == "warn" and "above 0.01% of the machine" in check["summary"], check
    finally:
        stop_process(sleeper)


def test_a_bad_settings_file_is_one_line_for_each_command(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"alerts": {ALERT: {"treshold": 0.1}}}))
    commands = (
        [sys.executable, "-m", "devflow_monitor.cli", "doctor", "--settings", str(bad)],
        [sys.executable, "-m", "devflow_monitor.cli", "dashboard", "--once", "--settings", str(bad)],
        [sys.executable, "-m", "devflow_monitor.dashboards.build", "--check", "--settings", str(bad)],
    )
    for command in commands:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "treshold" in result.stderr, result.stderr
