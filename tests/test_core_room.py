"""The layout's promises: rooms import downwards only, core under everything, modules of one job, and one
settings file that reaches every output a value is used in."""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path

import _jsonnet
import pytest
import yaml

from conftest import ROOT, cli, free_port, requires, stop_process, wait_for_http

ROOMS = ("core", "exporter", "ops", "simulator", "stack", "cli", "dashboards", "alerting", "generate", "webdash",
         "docs", "bench", "mixin")
MAX_LINES = 500


def python_files(room: str) -> list[Path]:
    return sorted(p for p in (ROOT / room).rglob("*.py") if ".venv" not in p.parts)


def imported_rooms(path: Path) -> set[str]:
    """The other rooms a module imports, whether at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "devflow_monitor" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] in ("bench", "mixin"):
                found.add(parts[0])
    return found


def room_imports() -> dict[str, set[str]]:
    graph = {}
    for room in ROOMS:
        graph[room] = set().union(*(imported_rooms(p) for p in python_files(room))) - {room}
    return graph


def test_core_imports_no_other_room_and_the_exporter_only_core():
    graph = room_imports()
    assert graph["core"] == set(), f"core imports {graph['core']}"
    assert graph["exporter"] <= {"core"}, f"exporter imports {graph['exporter'] - {'core'}}"


def test_no_two_rooms_import_each_other():
    graph = room_imports()
    both_ways = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if a in graph.get(b, ())})
    assert both_ways == []


def test_no_module_is_longer_than_its_job():
    long = [f"{p.relative_to(ROOT)}: {n} lines" for room in ROOMS for p in python_files(room)
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert long == []


def test_every_folder_of_the_tree_is_in_the_readme_layout_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## The layout", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([\w.-]+)/`", table, re.MULTILINE))
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
               and p.name not in ("devflow_monitor.egg-info", "build", "dist")}
    assert folders == listed


# --- one settings file, every output ---------------------------------------------------------------------
# One value of each kind, none of them a default: an error level (warn counts as an error), the rate window,
# a threshold (two: the error-rate alert's and the error-burst count doctor fails at) and the scrape interval.
SETTINGS = {
    "rate_window": "7m",
    "scrape_interval": "10s",
    "app": {"error_levels": "error|fatal|warn"},
    "alerts": {"DevFlowHighErrorRate": {"threshold": 0.37}, "DevFlowErrorBurst": {"min_errors": 3}},
}
ERRORS = 'level=~"error|fatal|warn"'


@pytest.fixture
def settings_file(tmp_path) -> Path:
    path = tmp_path / "mine.yml"
    path.write_text(yaml.safe_dump(SETTINGS))
    return path


def test_the_settings_reach_the_generated_rules(settings_file):
    from devflow_monitor.alerting.build import render
    from devflow_monitor.core.settings import load

    files = render(load(settings_file))
    rules = files["rules/alerts.yml"] + files["rules/recording.yml"]
    assert ERRORS in rules and "[7m]" in rules and "> 0.37" in rules and "> 3" in rules


def test_the_settings_reach_the_grafana_json_and_the_built_in_dashboards(settings_file):
    from devflow_monitor.core.settings import load
    from devflow_monitor.dashboards.build import datasources, render_all
    from devflow_monitor.webdash import sources
    from devflow_monitor.webdash.http import render_dashboards

    settings = load(settings_file)
    assert "timeInterval: 10s" in datasources(settings)["prometheus.yml"]
    grafana = "".join(render_all(settings).values())
    assert ERRORS.replace('"', '\\"') in grafana and '"value": 0.37' in grafana
    built_in = json.dumps(render_dashboards(settings))
    assert ERRORS.replace('"', '\\"') in built_in and '"value": 0.37' in built_in
    guide = json.dumps(sources.guide_queries(settings))
    assert ERRORS.replace('"', '\\"') in guide and "[7m]" in guide
    unreachable = sources.Prometheus(f"http://127.0.0.1:{free_port()}", settings)
    assert unreachable.scrape_interval() == 10, "the step the page uses while Prometheus cannot say"


def test_the_compose_prometheus_scrapes_at_the_settings_interval():
    from devflow_monitor.core.settings import Settings

    config = yaml.safe_load((ROOT / "prometheus.yml").read_text(encoding="utf-8"))
    assert config["global"]["scrape_interval"] == Settings().scrape_interval


def test_the_same_settings_as_a_mixin_override_reach_the_mixin_output(tmp_path):
    """The mixin's rules follow `_config`; its dashboards are the committed JSON, and it has no scrape settings."""
    override = tmp_path / "override.libsonnet"
    override.write_text("{ _config+:: { rate_window: '7m', app+: { error_levels: 'error|fatal|warn' }, alerts+: {"
                        " DevFlowHighErrorRate+: { threshold: 0.37 }, DevFlowErrorBurst+: { min_errors: 3 } } } }")
    main = tmp_path / "main.jsonnet"
    main.write_text("local m = (import 'mixin.libsonnet') + (import 'override.libsonnet');\n"
                    "{ alerts: m.prometheusAlerts, rules: m.prometheusRules }")
    out = _jsonnet.evaluate_file(str(main), jpathdir=[str(tmp_path), str(ROOT)])
    assert ERRORS.replace('"', '\\"') in out and "[7m]" in out and "> 0.37" in out and "> 3" in out


def test_the_settings_reach_doctor(settings_file, tmp_path):
    log = tmp_path / "server.log"
    log.write_text("".join(f"[WARN][GitMonitor] git status failed, try {n}\n" for n in range(4)))

    def logs_check(*settings: str) -> dict:
        result = cli("doctor", "--json", "--devflow.log-files", str(log), "--devflow.database",
                     str(tmp_path / "none.db"), *settings)
        return next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "logs")

    assert logs_check()["status"] == "ok"
    check = logs_check("--settings", str(settings_file))
    assert check["details"]["errors_per_file"] == {str(log): 4}, "warn records count as errors"
    assert check["status"] == "fail", "4 errors are more than the settings' 3"


@requires("prometheus")
def test_doctor_judges_prometheus_scrape_interval_by_the_settings(settings_file, tmp_path):
    (tmp_path / "prometheus.yml").write_text("global: {scrape_interval: 4m}\n")
    port = free_port()
    prometheus = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/-/ready", timeout=30)
        result = cli("doctor", "--json", "--prometheus", f"http://127.0.0.1:{port}", "--settings", str(settings_file),
                     "--devflow.database", str(tmp_path / "none.db"))
        check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "prometheus")
    finally:
        stop_process(prometheus)
    assert check["status"] == "fail", check
    assert "rate_window (7m)" in check["summary"] and "10s" in check["action"]


def test_the_settings_reach_the_terminal_dashboard(settings_file):
    from devflow_monitor.core.settings import load
    from devflow_monitor.ops.dashboard_history import History
    from devflow_monitor.ops.dashboard_sources import parse_exposition
    from devflow_monitor.ops.dashboard_views import errors

    def snapshot(when: float, warn: int, info: int):
        return parse_exposition(
            f'devflow_log_lines_total{{file="s.log",level="warn"}} {warn}\n'
            f'devflow_log_lines_total{{file="s.log",level="info"}} {info}\n', when)

    settings = load(settings_file)
    history = History(window=60)
    history.add(snapshot(0, 0, 0))
    history.add(snapshot(60, 40, 60))
    rows = {row.label: row for row in errors(history, settings)}
    assert rows["error share (logs)"].value == "40.00%", "warn records are errors"
    assert rows["error share (logs)"].level == "crit", "40% is above the settings' 37%"
    assert rows["error lines / min"].value == "40.0"


def test_the_terminal_dashboard_takes_its_window_and_refresh_from_the_settings_with_prometheus(settings_file):
    from devflow_monitor.cli import build_parser
    from devflow_monitor.core.settings import load
    from devflow_monitor.ops import dashboard

    def timing(*flags: str) -> tuple[float, float]:
        argv = ["dashboard", *flags, "--settings", str(settings_file)]
        args = build_parser(argv).parse_args(argv)
        return dashboard.refresh_interval(args, load(settings_file)), dashboard.rate_window(args, load(settings_file))

    assert timing("--prometheus", "http://127.0.0.1:9") == (10, 420)
    assert timing() == (dashboard.EXPORTER_REFRESH_SECONDS, dashboard.EXPORTER_RATE_WINDOW)
    assert timing("--prometheus", "http://127.0.0.1:9", "--interval", "3", "--rate-window", "90") == (3, 90)
