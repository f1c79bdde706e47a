"""The built-in web dashboards' server: what it can draw, its Prometheus proxy, the alerts, the guide's
`/dashboard/api/metrics` JSON, Prometheus going down, TLS and basic auth, bad flags.

`demo_stack` (also used by test_webdash_browser.py) runs the chain the demo runs: `devflow-monitor
simulate` with error_burst and outbox_backlog on, a real backup, two exporters watching it (two
instances, for the instance filter), a real Prometheus scraping both every second with the project's
rules plus one that fires at once, and `devflow-monitor webdash` in front of it.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import pytest
import yaml

from conftest import ROOT, cli, free_port, http_get, requires, stop_process, wait_for_http, wait_until
from devflow_monitor.webdash.drawable import DRAWABLE, undrawable
from test_dashboards_queries import JOB, write_configs

JSON_DIR = ROOT / "dashboards" / "json"
STATIC = ROOT / "webdash" / "static"
MONITOR = [sys.executable, "-m", "devflow_monitor.cli"]
# The object literals in static/ whose keys must equal drawable.py's sets.
JS_REGISTRIES = {"panel type": ("panels.js", "RENDERERS"), "unit": ("format.js", "UNITS"),
                 "value mapping": ("format.js", "MAPPINGS"), "color": ("format.js", "COLORS"),
                 "override matcher": ("format.js", "MATCHERS")}


def boards() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(JSON_DIR.glob("*.json"))}


# --- what the page can draw ----------------------------------------------------------------------

def test_every_committed_dashboard_uses_only_what_the_page_can_draw():
    problems = {name: undrawable(board) for name, board in boards().items()}
    assert len(problems) == 5
    assert not any(problems.values()), problems


def test_a_panel_kind_unit_or_mapping_the_page_lacks_is_reported():
    board = boards()["overview"]
    stat = next(p for p in board["panels"] if p["type"] == "stat" and p["fieldConfig"]["defaults"]["mappings"])
    stat["fieldConfig"]["defaults"]["unit"] = "lengthm"
    stat["fieldConfig"]["defaults"]["mappings"].append({"type": "regex", "options": {}})
    board["panels"].append({"type": "heatmap", "title": "New kind", "targets": []})
    assert undrawable(board) == [f"{stat['title']}: unit 'lengthm'", f"{stat['title']}: value mapping 'regex'",
                                 "New kind: panel type 'heatmap'"]


def js_keys(file: str, name: str) -> set[str]:
    text = (STATIC / file).read_text()
    body = re.search(rf"export const {name} = \{{\n(.*?)\n\}};", text, re.S)
    assert body, f"{name} not found in {file}"
    return set(re.findall(r'^  "?([\w-]+)"?:', body.group(1), re.M))


@pytest.mark.parametrize("kind", sorted(JS_REGISTRIES))
def test_drawable_list_matches_the_javascript_registry(kind):
    file, name = JS_REGISTRIES[kind]
    assert js_keys(file, name) == set(DRAWABLE[kind])


# --- the stack ---------------------------------------------------------------------------------------

@dataclass
class Stack:
    tmp: Path
    url: str = ""  # the webdash in front of the stack
    prometheus: str = ""
    prometheus_config: Path | None = None
    started: float = field(default_factory=time.monotonic)
    instances: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def start(self, args: list[str], name: str) -> subprocess.Popen:
        with open(self.tmp / f"{name}.out", "w") as out:
            proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def webdash(self, *flags: str, prometheus: str | None = None, name: str = "webdash") -> str:
        """Start `devflow-monitor webdash` on a free port; returns its base URL once it answers."""
        port = free_port()
        self.start([*MONITOR, "webdash", "--web.listen-address", f"127.0.0.1:{port}",
                    "--prometheus.url", prometheus or self.prometheus, *flags], f"{name}-{port}")
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/api/dashboards")
        return url

    def start_prometheus(self, port: int, config: Path) -> str:
        self.start([shutil.which("prometheus"), f"--config.file={config}",
                    f"--storage.tsdb.path={self.tmp / f'tsdb-{port}'}", f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h"], f"prometheus-{port}")
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/-/ready", timeout=30)
        return url

    def stop(self):
        for proc in reversed(self.procs):
            stop_process(proc)


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webdash-stack")
    stack = Stack(tmp)
    try:
        sim_port = free_port()
        ports = [free_port(), free_port()]
        stack.instances = [f"127.0.0.1:{p}" for p in ports]
        exporter_config, prometheus_config = write_configs(tmp, ports[0])
        config = yaml.safe_load(prometheus_config.read_text())
        config["scrape_configs"][0]["static_configs"][0]["targets"] = stack.instances
        prometheus_config.write_text(yaml.safe_dump(config))
        logs, database, pidfile = tmp / "logs", tmp / "devflow.db", tmp / "devflow.pid"
        logs.mkdir()
        stack.start([*MONITOR, "simulate", "--database", str(database), "--listen", f"127.0.0.1:{sim_port}",
                     "--log-dir", str(logs), "--pidfile", str(pidfile), "--rate", "20", "--seed", "5",
                     "--fault", "error_burst", "outbox_backlog"], "simulate")
        wait_for_http(f"http://127.0.0.1:{sim_port}/health")
        # A real backup, so the "Last backup" panels have the status file the exporter reads.
        backup = cli("backup", "--config.file", str(exporter_config), "--devflow.database", str(database), "--no-logs")
        assert backup.returncode == 0, backup.stdout + backup.stderr
        for index, instance in enumerate(stack.instances):
            stack.start([*MONITOR, "serve", "--config.file", str(exporter_config), "--web.listen-address", instance,
                         "--devflow.database", str(database), "--devflow.pidfile", str(pidfile),
                         "--devflow.url", f"http://127.0.0.1:{sim_port}",
                         "--devflow.log-files", str(logs / "*.log"), str(logs / "devflow-monitor.*")],
                        f"serve-{index}")
            wait_for_http(f"http://{instance}/metrics")
        stack.prometheus_config = prometheus_config
        stack.prometheus = stack.start_prometheus(free_port(), prometheus_config)
        stack.url = stack.webdash()
        yield stack
    finally:
        stack.stop()


def get_json(url: str, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


# --- the server against a real Prometheus -------------------------------------------------------------

@pytest.mark.slow
@requires("prometheus")
def test_proxy_answers_as_prometheus_does_and_passes_its_errors_through(demo_stack):
    query = urllib.parse.urlencode({"query": "up", "time": "1"})
    assert get_json(f"{demo_stack.url}/api/v1/query?{query}") == get_json(f"{demo_stack.prometheus}/api/v1/query?{query}")
    bad = urllib.parse.urlencode({"query": "sum(", "start": "1", "end": "2", "step": "1"})
    status, body = get_json(f"{demo_stack.url}/api/v1/query_range?{bad}")
    assert (status, body["status"], body["errorType"]) == (400, "error", "bad_data")
    assert "parse error" in body["error"]
    jobs = wait_until(lambda: get_json(f"{demo_stack.url}/api/v1/label/job/values")[1]["data"], message="job label")
    assert jobs == [JOB]
    # Only the read API is proxied.
    assert http_get(f"{demo_stack.url}/api/v1/admin/tsdb/snapshot")[0] == 404


@pytest.mark.slow
@requires("prometheus")
def test_settings_carry_the_scrape_interval_prometheus_runs_with(demo_stack):
    status, body = get_json(f"{demo_stack.url}/api/settings")
    assert (status, body["scrape_interval_seconds"]) == (200, 1)


@pytest.mark.slow
@requires("prometheus")
def test_firing_alerts_come_from_prometheus_without_alertmanager(demo_stack):
    def firing():
        status, body = get_json(f"{demo_stack.url}/api/alerts")
        assert status == 200, body
        alerts = [a for a in body["alerts"] if a["name"] == "DashboardQueryTestFiring"]
        # Each instance's alert fires after its own first scrape: wait for all of them.
        return alerts if {a["instance"] for a in alerts} == set(demo_stack.instances) else None

    alerts = wait_until(firing, timeout=30, message="the always-firing test rule on every instance")
    assert all(a["severity"] == "info" for a in alerts)


@pytest.mark.slow
@requires("prometheus")
def test_guide_metrics_json_has_the_guides_shape_with_observed_values(demo_stack):
    instance = demo_stack.instances[1]

    def answer():
        status, body = get_json(f"{demo_stack.url}/dashboard/api/metrics?instance={instance}")
        assert status == 200, body
        return body if body["application"]["requests"] is not None and body["system"]["cpu"]["percent"] is not None \
            else None

    body = wait_until(answer, timeout=60, interval=1, message="guide metrics with values")
    assert set(body) == {"system", "application", "timestamp"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["timestamp"])
    system, app = body["system"], body["application"]
    assert system["instance"] == instance
    assert system["memory"]["rss_bytes"] > 1e6 and system["uptime"] > 0 and system["eventLoop"] is None
    assert app["up"] == 1 and app["requests"] > 0 and app["errors"] > 0 and app["eventQueue"] > 0
    # Without ?instance= it answers for the first exporter Prometheus knows.
    assert get_json(f"{demo_stack.url}/dashboard/api/metrics")[1]["system"]["instance"] == min(demo_stack.instances)


def test_prometheus_down_gives_every_route_a_message_not_a_blank(spawn, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    spawn([*MONITOR, "webdash", "--web.listen-address", f"127.0.0.1:{port}", "--prometheus.url", dead])
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/")
    for path in ("/api/v1/query_range?query=up&start=1&end=2&step=1", "/api/alerts", "/dashboard/api/metrics"):
        status, body = get_json(url + path)
        assert status == 502, path
        assert body["errorType"] == "unavailable"
        assert body["error"].startswith(f"Prometheus at {dead} is unreachable: ") and "refused" in body["error"]
    # The page and the dashboards still load: the page then shows the message on each panel.
    assert http_get(url + "/d/devflow-overview")[0] == 200
    status, listed = get_json(url + "/api/dashboards")
    assert [b["uid"] for b in listed] == ["devflow-overview", "devflow-performance", "devflow-errors",
                                          "devflow-activity", "devflow-exporter"]
    assert get_json(url + "/api/dashboards/devflow-errors")[1] == boards()["errors"]
    assert get_json(url + "/api/settings")[1]["scrape_interval_seconds"] == 15


def test_static_files_are_served_and_nothing_outside_them(spawn):
    port = free_port()
    spawn([*MONITOR, "webdash", "--web.listen-address", f"127.0.0.1:{port}"])
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/")
    with urllib.request.urlopen(url + "/static/app.js") as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
    assert http_get(url + "/static/vendor/uPlot.iife.min.js")[0] == 200
    assert http_get(url + "/static/../http.py")[0] == 404
    assert http_get(url + "/static/%2e%2e/http.py")[0] == 404
    assert http_get(url + "/nothing")[0] == 404


# --- TLS and basic auth from the exporter's web config ------------------------------------------------

@requires("openssl")
def test_tls_and_basic_auth_come_from_the_exporter_web_config(spawn, tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": "cert.pem", "key_file": "key.pem"},
        "basic_auth_users": {"ops": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()}}))
    port = free_port()
    spawn([*MONITOR, "webdash", "--web.listen-address", f"127.0.0.1:{port}", "--web.config.file", str(web)])
    import ssl

    context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    context.check_hostname = False
    url = f"https://127.0.0.1:{port}/api/dashboards"

    def fetch(credentials: str | None):
        headers = {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()} if credentials else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    wait_until(lambda: _answers(fetch), message="webdash over TLS")
    assert fetch(None) == 401
    assert fetch("ops:wrong") == 401
    assert fetch("ops:s3cret") == 200
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to the TLS port gets no page
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/dashboards", timeout=5)


def _answers(fetch) -> bool:
    try:
        return fetch(None) == 401
    except (urllib.error.URLError, ConnectionError):
        return False


# --- bad input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("flags", "message"), [
    (["--prometheus.url", "localhost:9090"], "--prometheus.url must be an http:// or https:// URL"),
    (["--alertmanager.url", "ftp://x"], "--alertmanager.url must be an http:// or https:// URL"),
    (["--web.listen-address", "nowhere"], "must be HOST:PORT, got 'nowhere'"),
    (["--web.config.file", "/nonexistent/web.yml"], "cannot read web config"),
    (["--dashboards", "/nonexistent"], "no dashboard JSON"),
])
def test_bad_flags_are_one_line_and_exit_2(flags, message):
    listen = [] if "--web.listen-address" in flags else ["--web.listen-address", f"127.0.0.1:{free_port()}"]
    result = cli("webdash", *listen, *flags, timeout=30)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_busy_port_is_one_line_and_exit_1():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = cli("webdash", "--web.listen-address", f"127.0.0.1:{busy.getsockname()[1]}", timeout=30)
    assert result.returncode == 1
    assert "cannot listen on" in result.stderr and "Traceback" not in result.stderr


def test_the_exporter_command_does_not_load_the_web_dashboards():
    code = ("import sys; from devflow_monitor.cli import build_parser; build_parser(['serve']); "
            "import devflow_monitor.exporter.serve; "
            "print(sorted(m for m in sys.modules if 'webdash' in m))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"
