"""`devflow-monitor dashboard` against the real exporter watching the simulator, on a real pseudo-terminal
and through a pipe; and Prometheus as the source (slow: real prometheus and alertmanager binaries)."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from conftest import NO_SERVER, ROOT, cli, free_port, http_get, requires, stop_process, wait_for_http, wait_until
from test_ops_support import one_line

from devflow_monitor.core.settings import Settings
from devflow_monitor.core import catalog
from devflow_monitor.ops import dashboard, dashboard_history, dashboard_sources, dashboard_views

ANSI = re.compile(r"\x1b\[")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The simulator with an error burst (errors in every log, 5xx in the access log) and the real exporter."""
    tmp = tmp_path_factory.mktemp("live")
    app_port, exporter_port = free_port(), free_port()
    config = tmp / "devflow-monitor.yml"
    config.write_text(json.dumps({
        "devflow": {"database": str(tmp / "devflow.db"), "pidfile": str(tmp / "pid"), "port": app_port,
                    "url": f"http://127.0.0.1:{app_port}",
                    "log_files": [str(tmp / "logs" / "server.log"), str(tmp / "logs" / "devflow-monitor.err")],
                    "access_log": str(tmp / "logs" / "access.log")},
        "collectors": {"logs": {"state_file": str(tmp / "offsets.json")}, "probe": {"interval_seconds": 1}},
        "backup": {"status_file": str(tmp / "status.json")}}))  # JSON is YAML
    started = [
        subprocess.Popen([sys.executable, "-m", "devflow_monitor.cli", "simulate", "--database", str(tmp / "devflow.db"),
                          "--listen", f"127.0.0.1:{app_port}", "--log-dir", str(tmp / "logs"), "--rate", "30",
                          "--pidfile", str(tmp / "pid"), "--fault", "error_burst"], cwd=ROOT),
        subprocess.Popen([sys.executable, "-m", "devflow_monitor.cli", "serve", "--config.file", str(config),
                          "--web.listen-address", f"127.0.0.1:{exporter_port}"], cwd=ROOT,
                         stderr=subprocess.DEVNULL)]
    url = f"http://127.0.0.1:{exporter_port}"
    try:
        wait_for_http(url + "/health")
        wait_until(lambda: _ready(http_get(url + "/metrics")[1]), message="events and a first probe")
        yield {"url": url, "metrics": url + "/metrics", "config": config}
    finally:
        for proc in reversed(started):
            stop_process(proc)


def _ready(metrics: str) -> bool:
    """Events counted (known types show at 0 from the start) and the app probed once."""
    counted = re.search(rf"^{catalog.EVENTS_INGESTED.name}{{[^}}]*}} [1-9]", metrics, re.M)
    return bool(counted) and f"{catalog.APP_MONITOR_STATE.name}{{" in metrics


@pytest.mark.parametrize("view, labels", [
    ("overview", ["status", "process", "monitors", "database", "events / s", "outbox pending", "last backup"]),
    ("performance", ["CPU", "memory (RSS)", "threads", "open fds", "response (access log)", "events / s"]),
    ("errors", ["error share (logs)", "HTTP 5xx share", "probe /health", "DB integrity"]),
    ("activity", ["events / s", "newest event", "log records / s", "HTTP requests / s"]),
])
def test_each_view_prints_a_plain_frame_from_the_real_exporter(live, view, labels):
    result = cli("dashboard", "--url", live["metrics"], "--view", view, "--once", "--rate-window", "0.5")
    assert result.returncode == 0, result.stderr
    assert not ANSI.search(result.stdout), "no escape codes when stdout is not a terminal"
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"DevFlow {view} | {live['metrics']}")
    for label in labels:
        assert any(line.strip().startswith(label) for line in lines), (label, result.stdout)
    if view == "overview":
        assert re.search(r"process\s+up, uptime", result.stdout)
        assert re.search(r"monitors\s+file active, git active", result.stdout)
    if view == "activity":
        assert re.search(r"events / s\s+\d+\.\d\d", result.stdout), "a rate needs the second sample --once takes"


def test_terminal_redraws_in_place_and_colours_the_error_share_red(live):
    output = run_on_terminal(["dashboard", "--url", live["metrics"], "--view", "errors", "--frames", "3",
                              "--interval", "0.5", "--rate-window", "1"])
    assert output.count("\x1b[H") == 3, "each frame starts at the top left instead of scrolling"
    assert output.count("\x1b[J") == 3 and "\x1b[K" in output
    assert output.startswith("\x1b[?25l") and output.rstrip().endswith("\x1b[?25h"), "cursor hidden, then back"
    last_frame = output.split("\x1b[H")[-1]
    share_line = next(line for line in last_frame.splitlines() if "error share (logs)" in line)
    assert "\x1b[31m" in share_line, "an error share above the guide's 5% is red"
    assert any(ch in share_line for ch in dashboard.SPARK), "a sparkline trend"


def test_unreachable_source_is_one_line_with_once_and_a_visible_state_when_live():
    url = f"http://127.0.0.1:{free_port()}/metrics"
    once = cli("dashboard", "--url", url, "--once")
    assert once.returncode == 1 and "Connection refused" in one_line(once.stderr)
    live = cli("dashboard", "--url", url, "--frames", "2", "--interval", "0.1")
    assert live.returncode == 0
    assert live.stdout.count("source unreachable") == 2, "it keeps trying and says why"


def test_an_answer_that_is_not_metrics_is_refused(live):
    result = cli("dashboard", "--url", live["url"] + "/health", "--once")
    assert result.returncode == 1
    assert "metrics" in one_line(result.stderr)


def _text(values: dict) -> str:
    """Real exposition text for catalog metrics: {metric: [(labels, value)]} (histograms: (labels, buckets, sum))."""
    class Fixed:
        def collect(self):
            for metric, samples in values.items():
                family = metric.family()
                for sample in samples:
                    if metric.kind == "histogram":
                        family.add_metric(sample[0], buckets=sample[1], sum_value=sample[2])
                    else:
                        family.add_metric(*sample)
                yield family

    registry = CollectorRegistry()
    registry.register(Fixed())
    return generate_latest(registry).decode()


def _history(before: dict, after: dict, seconds: float = 10.0) -> dashboard_history.History:
    history = dashboard_history.History(window=seconds)
    history.add(dashboard_sources.parse_exposition(_text(before), 1000.0))
    history.add(dashboard_sources.parse_exposition(_text(after), 1000.0 + seconds))
    return history


def _performance(cpu_seconds: float, rss_share: float, app_share: float, latency_s: float) -> dict:
    gib = 1 << 30
    common = {catalog.HOST_MEMORY_TOTAL: [([], 16 * gib)], catalog.PROCESS_RSS: [([], rss_share * 16 * gib)],
              catalog.APP_MEMORY_USED: [([], app_share * gib)], catalog.APP_MEMORY_TOTAL: [([], gib)]}
    before = {**common, catalog.PROCESS_CPU: [(["user"], 100.0), (["system"], 20.0)],
              catalog.HTTP_DURATION: [([], [("+Inf", 100)], 5.0)]}
    after = {**common, catalog.PROCESS_CPU: [(["user"], 100.0 + cpu_seconds), (["system"], 20.0)],
             catalog.HTTP_DURATION: [([], [("+Inf", 200)], 5.0 + 100 * latency_s)]}
    return {row.label: row for row in dashboard_views.performance(_history(before, after), Settings())}


def test_performance_colours_follow_the_guides_checklist_and_alerts():
    calm = _performance(cpu_seconds=5.0, rss_share=0.1, app_share=0.5, latency_s=0.05)
    assert (calm["CPU"].value, calm["CPU"].level) == ("50.0%", "ok")
    assert calm["memory (app)"].level == "ok" and calm["response (access log)"].value == "50 ms"
    assert calm["response (access log)"].level == "ok"

    busy = _performance(cpu_seconds=7.5, rss_share=0.1, app_share=0.85, latency_s=0.15)
    assert busy["CPU"].level == "warn", "70-80%: outside the checklist, below the alert"
    assert busy["memory (app)"].level == "warn" and busy["response (access log)"].level == "warn"

    alarm = _performance(cpu_seconds=8.5, rss_share=0.6, app_share=0.5, latency_s=0.05)
    assert alarm["CPU"].level == "crit" and alarm["RSS of machine"].level == "crit"


def test_error_share_is_yellow_from_1_percent_and_red_from_5():
    def share(errors: int) -> dashboard_views.Row:
        before = {catalog.LOG_LINES: [(["server.log", "info"], 0.0), (["server.log", "error"], 0.0),
                                      (["server.log", "fatal"], 0.0)],
                  catalog.HTTP_REQUESTS: [(["2xx"], 0.0), (["5xx"], 0.0)]}
        after = {catalog.LOG_LINES: [(["server.log", "info"], 1000.0 - errors),
                                     (["server.log", "error"], errors - errors // 5),
                                     (["server.log", "fatal"], errors // 5)],  # fatal counts, as in the rules
                 catalog.HTTP_REQUESTS: [(["2xx"], 1000.0 - errors), (["5xx"], errors)]}
        rows = {row.label: row for row in dashboard_views.errors(_history(before, after), Settings())}
        assert rows["HTTP 5xx share"].level == rows["error share (logs)"].level
        return rows["error share (logs)"]

    assert share(5).level == "ok" and share(5).value == "0.50%"
    never = _history({catalog.LOG_LINES: [(["server.log", "info"], 0.0)]},
                     {catalog.LOG_LINES: [(["server.log", "info"], 100.0)]})
    assert {r.label: r for r in dashboard_views.errors(never, Settings())}["error share (logs)"].value == "0.00%"
    assert share(20).level == "warn"
    assert share(60).level == "crit"


def test_rates_survive_a_counter_reset():
    before = {catalog.EVENTS_INGESTED: [(["git:commit"], 500.0)]}
    after = {catalog.EVENTS_INGESTED: [(["git:commit"], 30.0)]}  # the exporter restarted
    assert _history(before, after).rate(catalog.EVENTS_INGESTED.name) == pytest.approx(3.0)


def test_sparkline_scales_between_the_lowest_and_highest_value():
    assert dashboard.sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == dashboard.SPARK
    assert dashboard.sparkline([3, None, 3]) == dashboard.SPARK[0] + " " + dashboard.SPARK[0]
    assert dashboard.sparkline([1, 2], ascii_only=True) == "_@"
    assert dashboard.sparkline([None, None]) == ""


def test_metric_names_in_the_dashboard_come_from_the_catalog():
    source = "".join(Path(module.__file__).read_text()
                     for module in (dashboard, dashboard_history, dashboard_sources, dashboard_views))
    literal_names = set(re.findall(r"devflow_(?!monitor\.)[a-z_]+[a-z]", source))
    assert not literal_names, f"spell metric names through core.catalog: {literal_names}"


@pytest.mark.slow
@requires("prometheus", "prometheus-alertmanager")
def test_prometheus_source_and_the_stack_checks_of_doctor(live, tmp_path):
    prometheus_port, alertmanager_port = free_port(), free_port()
    exporter = live["url"].removeprefix("http://")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: devflow, static_configs: [{{targets: ['{exporter}']}}]}}]\n")
    (tmp_path / "alertmanager.yml").write_text("route: {receiver: nobody}\nreceivers: [{name: nobody}]\n")
    started = [
        subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                          f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["prometheus-alertmanager", f"--config.file={tmp_path / 'alertmanager.yml'}",
                          f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{alertmanager_port}",
                          "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    alertmanager = f"http://127.0.0.1:{alertmanager_port}"
    try:
        wait_for_http(prometheus + "/-/ready", timeout=30)
        wait_for_http(alertmanager + "/-/ready", timeout=30)
        query = prometheus + "/api/v1/query?query=devflow_exporter_build_info"
        wait_until(lambda: json.loads(http_get(query)[1])["data"]["result"], timeout=30,
                   message="the first scrape")
        time.sleep(2.5)  # a few scrapes, so rates exist

        result = cli("dashboard", "--prometheus", prometheus, "--match", 'job="devflow"', "--view", "activity",
                     "--once", "--interval", "1")
        assert result.returncode == 0, result.stderr
        assert re.search(r"events / s\s+\d+\.\d\d", result.stdout), result.stdout

        doctor = cli("doctor", "--config.file", str(live["config"]), "--prometheus", prometheus,
                     "--alertmanager", alertmanager, "--exporter-url", live["url"] + "/health", "--json")
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        assert checks["prometheus"]["status"] == "ok", checks["prometheus"]
        assert "scraping the exporter" in checks["prometheus"]["summary"]
        assert checks["alertmanager"]["status"] == "ok", checks["alertmanager"]

        empty = cli("dashboard", "--prometheus", alertmanager, "--once")  # answers, but is not Prometheus
        assert empty.returncode == 1 and "cannot read" in one_line(empty.stderr)
    finally:
        for proc in reversed(started):
            stop_process(proc)


def run_on_terminal(args: list[str], timeout: float = 30.0) -> str:
    """Run the CLI with a real pseudo-terminal as stdout and return everything it wrote."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "devflow_monitor.cli", *args], cwd=ROOT, stdin=slave, stdout=slave,
                            stderr=slave, env=env)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=5)
    finally:
        os.close(master)
        stop_process(proc)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode("utf-8", errors="replace")


# --- rates over a window, storage, pipes ------------------------------------------------------

# 20 log records a second: per 20 lines 17 INFO, 2 ERROR and 1 FATAL (errors, as the settings' error_levels
# count them: 15%; ERROR alone would read 10%). Paced by the clock, not by sleeps that drift.
PACED_WRITER = r"""
import sys, time
path, started, i = sys.argv[1], time.monotonic(), 0
with open(path, "a", buffering=1) as log:
    while True:
        level = {0: "ERROR", 10: "ERROR", 5: "FATAL"}.get(i % 20, "INFO")
        log.write(f"[{level}][Paced] line {i}\n")
        i += 1
        time.sleep(max(0.0, started + i / 20 - time.monotonic()))
"""
PACED_RATE, PACED_ERROR_SHARE = 20.0, 15.0


@pytest.fixture(scope="module")
def paced(tmp_path_factory):
    """A log written at a known rate and the real exporter tailing it."""
    tmp = tmp_path_factory.mktemp("paced")
    log, port = tmp / "server.log", free_port()
    config = tmp / "exporter.yml"
    config.write_text(json.dumps({"devflow": {"database": str(tmp / "devflow.db"), "log_files": [str(log)]},
                                  "collectors": {"logs": {"state_file": ""}, "probe": {"enabled": False}}}))
    started = [subprocess.Popen([sys.executable, "-c", PACED_WRITER, str(log)]),
               subprocess.Popen([sys.executable, "-m", "devflow_monitor.cli", "serve", "--config.file", str(config),
                                 "--web.listen-address", f"127.0.0.1:{port}", *NO_SERVER], cwd=ROOT,
                                stderr=subprocess.DEVNULL)]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/health")
        wait_until(lambda: f'{catalog.LOG_LINES.name}{{file="{log}",level="fatal"}}' in http_get(url + "/metrics")[1],
                   message="the exporter to count the paced log")
        yield {"url": url, "metrics": url + "/metrics", "tmp": tmp}
    finally:
        for proc in reversed(started):
            stop_process(proc)


def _figure(output: str, label: str) -> float:
    match = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)", output, re.M)
    assert match, (label, output)
    return float(match.group(1))


@pytest.mark.slow
@requires("prometheus")
def test_prometheus_rates_come_from_rate_over_several_scrapes(paced, tmp_path):
    # The dashboard refreshes faster than Prometheus scrapes: neighbouring points fall inside one scrape.
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 2s}\n"
        f"scrape_configs: [{{job_name: devflow, static_configs: [{{targets: ['{paced['url'][7:]}']}}]}}]\n")
    (tmp_path / "settings.yml").write_text("rate_window: 10s\nscrape_interval: 2s\n")
    prometheus = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + "/-/ready", timeout=30)
        query = base + f"/api/v1/query?query=count_over_time({catalog.LOG_LINES.name}[30s])"
        wait_until(lambda: any(float(r["value"][1]) >= 8 for r in json.loads(http_get(query)[1])["data"]["result"]),
                   timeout=60, message="eight scrapes, so a 10s window is full")

        def frame(view: str) -> str:
            result = cli("dashboard", "--prometheus", base, "--match", 'job="devflow"', "--view", view, "--once",
                         "--interval", "0.5", "--settings", str(tmp_path / "settings.yml"))
            assert result.returncode == 0, result.stderr
            return result.stdout

        for _ in range(3):  # every frame, not a lucky one
            activity, errors = frame("activity"), frame("errors")
            assert _figure(activity, "log records / s") == pytest.approx(PACED_RATE, rel=0.2), activity
            assert _figure(errors, "error share (logs)") == pytest.approx(PACED_ERROR_SHARE, abs=3), errors
            assert "rates over 10s (Prometheus)" in activity.splitlines()[0]
            time.sleep(0.7)
    finally:
        stop_process(prometheus)


def test_once_from_the_exporter_rates_over_its_window(paced):
    result = cli("dashboard", "--url", paced["metrics"], "--view", "errors", "--once", "--rate-window", "5")
    assert result.returncode == 0, result.stderr
    assert "rates over 5s" in result.stdout.splitlines()[0]
    per_minute = 60 * PACED_RATE * PACED_ERROR_SHARE / 100
    assert _figure(result.stdout, "error lines / min") == pytest.approx(per_minute, rel=0.25), result.stdout


def _counter_history(window: float, error_every: float, seconds: float, step: float = 2.0) -> dashboard_history.History:
    """Snapshots every `step` s of a log that writes 10 INFO lines/s and an ERROR every `error_every` s."""
    history = dashboard_history.History(window=window)
    for i in range(int(seconds / step) + 1):
        now = i * step
        history.add(dashboard_sources.parse_exposition(_text({catalog.LOG_LINES: [
            (["server.log", "info"], 10.0 * now), (["server.log", "error"], float(now // error_every))]}), now))
    return history


def test_an_error_every_30s_reads_2_per_minute_and_n_a_before_the_window_is_seen():
    rows = {r.label: r for r in dashboard_views.errors(_counter_history(30, 30, seconds=20), Settings())}
    assert rows["error lines / min"].value == "n/a", "20 s of samples cannot say what 30 s hold"
    history = _counter_history(30, 30, seconds=120)
    assert "rates n/a" not in history.rates_note()
    rows = {r.label: r for r in dashboard_views.errors(history, Settings())}
    assert rows["error lines / min"].value == "2.0", "one error in every 30 s window, at any phase"


def test_a_pipe_gets_one_frame_and_the_command_exits(live):
    result = cli("dashboard", "--url", live["metrics"], "--rate-window", "0.5", timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("DevFlow overview |") == 1


def _overview(values: dict) -> dict[str, dashboard_views.Row]:
    history = dashboard_history.History(window=30)
    history.add(dashboard_sources.parse_exposition(_text(values), time.time()))
    return {row.label: row for row in dashboard_views.overview(history, Settings())}


def _server(newest_event: float | None, last_log_write: float, stored: dict | None = None,
            started: float | None = None) -> dict:
    """One scrape of a running server that logged at `last_log_write` and stored its newest event then, started
    at `started` (an hour ago unless given)."""
    started = time.time() - 3600 if started is None else started
    values = {catalog.PROCESS_UP: [([], 1.0)], catalog.PROCESS_START_TIME: [([], started)],
              catalog.DB_UP: [([], 1.0)], catalog.DB_STATE: [(["ok"], 1.0)],
              catalog.DB_TABLE_ROWS: [(["events"], float(sum((stored or {}).values())))],
              catalog.LOG_LINES: [(["server.err", "debug"], 500.0)],
              catalog.LOG_FILE_MODIFIED: [(["server.err"], last_log_write)]}
    if stored:
        values[catalog.EVENTS_STORED] = [([t], float(n)) for t, n in stored.items()]
    if newest_event is not None:
        values[catalog.EVENTS_NEWEST] = [([], newest_event)]
    return values


def test_zero_events_stored_is_a_value_in_the_overview():
    rows = _overview(_server(None, time.time() - 3600))
    assert rows["events stored"].value == "0"
    rows = _overview(_server(time.time() - 5, time.time() - 1, stored={"git:commit": 2, "file:changed": 5}))
    assert rows["events stored"].value == "7"


def test_overview_is_degraded_while_the_server_logs_and_stores_nothing():
    rows = _overview(_server(None, time.time() - 10))  # the public build's defect
    assert (rows["status"].value, rows["status"].level) == ("degraded", "crit")
    assert rows["event storage"].value.startswith("NOT PERSISTING") and rows["event storage"].level == "crit"

    rows = _overview(_server(time.time() - 60, time.time() - 10, stored={"file:changed": 1}))
    assert rows["status"].value == "healthy" and rows["event storage"].level == "ok"
    rows = _overview(_server(time.time() - 86400, time.time() - 3600, stored={"file:changed": 1}))
    assert rows["status"].value == "healthy", "a quiet server stores nothing and is not at fault"


def test_overview_says_pending_while_the_alert_waits_its_for_after_a_start():
    # Started 3 minutes ago, it logs and stores nothing: DevFlowEventsNotPersisted is pending, not firing.
    rows = _overview(_server(None, time.time() - 10, started=time.time() - 3 * 60))
    assert (rows["status"].value, rows["status"].level) == ("healthy", "ok")
    assert rows["event storage"].value.startswith("pending (3 of 15 min): ") and rows["event storage"].level == "warn"
