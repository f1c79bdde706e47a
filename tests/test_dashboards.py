"""Structural checks of the generated dashboards: the useful rules of Grafana's dashboard-linter
(datasource / job / instance variables, $__rate_interval, units, job and instance matchers,
counters only through rate), plus layout, catalog names, the guide's thresholds, staleness of the
committed JSON and the provisioning files. The PromQL is also checked by the real `promtool`.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import requires

from devflow_monitor.dashboards import DASHBOARDS, grafana
from devflow_monitor.dashboards.build import render_all
from devflow_monitor.core import catalog

ROOT = Path(__file__).resolve().parent.parent
JSON_DIR = ROOT / "dashboards" / "json"
PROVISIONING = ROOT / "dashboards" / "provisioning"

# Unit ids from Grafana's packages/grafana-data/src/valueFormats/categories.ts (the categories a
# monitoring dashboard can sensibly use); the linter's panel-units-rule checks against that file.
GRAFANA_UNITS = {
    "none", "string", "short", "percent", "percentunit", "locale", "sci",
    "bits", "bytes", "kbytes", "mbytes", "gbytes", "decbits", "decbytes", "deckbytes", "decmbytes",
    "pps", "bps", "Bps", "KBs", "MBs", "GBs",
    "dateTimeAsIso", "dateTimeAsIsoNoDateIfToday", "dateTimeAsUS", "dateTimeFromNow",
    "hertz", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations", "dthms", "dtdhms",
    "timeticks", "clockms", "clocks",
    "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm",
}
MODERN_PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "state-timeline"}
RATE_FUNCTIONS = {"rate", "irate", "increase"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile"}
FUNCTIONS = AGGREGATIONS | RATE_FUNCTIONS | {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "day_of_month", "day_of_week", "days_in_month", "delta", "deriv", "exp", "floor",
    "histogram_quantile", "holt_winters", "hour", "idelta", "label_join", "label_replace", "ln",
    "log2", "log10", "minute", "month", "predict_linear", "resets", "round", "scalar", "sgn", "sort",
    "sort_desc", "sqrt", "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time",
    "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
    "last_over_time", "present_over_time",
}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
# Labels every series gets from Prometheus, plus those of the ALERTS series of alerting rules.
TARGET_LABELS = {"job", "instance"}
ALERT_LABELS = TARGET_LABELS | {"alertname", "alertstate", "severity"}
# Template variables as Grafana would fill them in, so promtool can parse the queries.
SUBSTITUTIONS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
                 "$job": ".+", "$instance": ".+"}

TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<range>\[[^\]]*\])
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|=~|!~|>=|<=|[-+*/%^(){},=<>])
  | (?P<space>\s+)
""", re.X)


@dataclass
class Selector:
    name: str
    matchers: dict[str, tuple[str, str]]  # label -> (operator, value)
    range: str | None
    function: str | None  # the innermost function call it is an argument of


@dataclass
class Query:
    selectors: list[Selector] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)


def scan(expr: str) -> Query:
    """Enough of a PromQL parser to find every selector, function call and label list."""
    tokens, pos = [], 0
    for match in TOKEN.finditer(expr):
        assert match.start() == pos, f"cannot read {expr[pos:]!r} in {expr!r}"
        pos = match.end()
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
    assert pos == len(expr), f"cannot read {expr[pos:]!r} in {expr!r}"
    query, calls = Query(), []  # calls: function name (or "" for plain parentheses) per open "("
    i = 0

    def text(at):
        return tokens[at][1] if at < len(tokens) else None

    def skip_label_list(at):  # at points at "("; returns the index after ")"
        end = at + 1
        while text(end) != ")":
            if tokens[end][0] == "ident":
                query.grouping_labels.add(tokens[end][1])
            end += 1
        return end + 1

    while i < len(tokens):
        kind, word = tokens[i]
        if kind == "ident" and word in LABEL_LISTS:
            i = skip_label_list(i + 1) if text(i + 1) == "(" else i + 1
        elif kind == "ident" and word in KEYWORDS:
            i += 1
        elif kind == "ident" and (text(i + 1) == "(" or word in AGGREGATIONS):
            query.functions.append(word)
            i += 1
            if text(i) in ("by", "without"):
                i = skip_label_list(i + 1)
            assert text(i) == "(", f"{word} without arguments in {expr!r}"
            calls.append(word)
            i += 1
        elif kind == "ident":
            matchers, i = {}, i + 1
            if text(i) == "{":
                i += 1
                while text(i) != "}":
                    label, op, value = tokens[i][1], tokens[i + 1][1], tokens[i + 2][1]
                    assert label not in matchers, f"{label} matched twice in {expr!r}"
                    matchers[label] = (op, json.loads(value))
                    i += 4 if text(i + 3) == "," else 3
                i += 1
            selector_range = None
            if i < len(tokens) and tokens[i][0] == "range":
                selector_range, i = tokens[i][1][1:-1], i + 1
            # A selector inside plain parentheses is not any function's argument.
            query.selectors.append(Selector(word, matchers, selector_range, calls[-1] or None if calls else None))
        else:
            if word == "(":
                calls.append("")
            elif word == ")":
                calls.pop()
            i += 1
    assert not calls, f"unbalanced parentheses in {expr!r}"
    return query


def load(name: str) -> dict:
    return json.loads((JSON_DIR / f"{name}.json").read_text())


def all_dashboards() -> dict[str, dict]:
    return {name: load(name) for name in DASHBOARDS}


def panels(board: dict, rows: bool = False) -> list[dict]:
    return [p for p in board["panels"] if rows or p["type"] != "row"]


def targets():
    """(dashboard, panel title, target) for every query of every panel."""
    for name, board in all_dashboards().items():
        for panel in panels(board):
            for t in panel["targets"]:
                yield name, panel["title"], t


def catalog_labels(name: str) -> set[str]:
    if name in grafana.PROMETHEUS_SERIES:
        return ALERT_LABELS if name == grafana.ALERTS else TARGET_LABELS
    metric = catalog.by_name(name)
    extra = {"le"} if name == getattr(metric, "bucket", None) and metric.kind == "histogram" else set()
    return set(metric.labels) | TARGET_LABELS | extra


# --- the scanner itself ---------------------------------------------------------------------
def test_scanner_finds_selectors_functions_and_grouping_labels():
    query = scan('sum by (instance) (rate(a_total{job=~"$job", x="1"}[$__rate_interval])) / on (job) b')
    assert [s.name for s in query.selectors] == ["a_total", "b"]
    assert query.selectors[0].matchers == {"job": ("=~", "$job"), "x": ("=", "1")}
    assert query.selectors[0].range == "$__rate_interval" and query.selectors[0].function == "rate"
    assert query.selectors[1].function is None
    assert query.functions == ["sum", "rate"] and query.grouping_labels == {"instance", "job"}


# --- datasource, variables, panel types ---------------------------------------------------------
def test_every_dashboard_has_the_datasource_job_and_instance_variables():
    for name, board in all_dashboards().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert list(variables) == ["datasource", "job", "instance"], name
        datasource = variables["datasource"]
        assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus"), name
        assert datasource["current"]["value"] == grafana.DATASOURCE_UID, name
        for label in ("job", "instance"):
            var = variables[label]
            assert var["type"] == "query" and var["label"] == label, (name, label)
            assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (name, label)
            assert var["multi"] and var["includeAll"] and var["allValue"] == ".+", (name, label)
            assert var["refresh"] == 2, f"{name}: ${label} must reload when the time range changes"
            selector = re.fullmatch(rf"label_values\((.+), {label}\)", var["query"]).group(1)
            for s in scan(selector).selectors:
                catalog.by_name(s.name)


def test_every_panel_and_target_uses_the_datasource_variable():
    expected = {"type": "prometheus", "uid": "${datasource}"}
    for name, board in all_dashboards().items():
        for panel in panels(board):
            assert panel["datasource"] == expected, (name, panel["title"])
            assert panel["targets"], f"{name}/{panel['title']}: a panel without queries"
            for t in panel["targets"]:
                assert t["datasource"] == expected, (name, panel["title"], t["refId"])


def test_no_datasource_anywhere_is_a_bare_string():
    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource":
                    assert isinstance(value, dict), f"{path}: datasource {value!r} is a name, not a ref"
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    for name, board in all_dashboards().items():
        walk(board, name)


def test_only_current_panel_types_are_used():
    for name, board in all_dashboards().items():
        used = {p["type"] for p in panels(board, rows=True)}
        assert used <= MODERN_PANEL_TYPES, f"{name}: {used - MODERN_PANEL_TYPES} (Angular or plugin panels)"


def test_dashboards_are_current_grafana_json_without_grafanalib_defaults():
    for name, board in all_dashboards().items():
        assert board["schemaVersion"] >= 39, name
        assert board["editable"] is False, f"{name}: provisioned dashboards are changed in code"
        for key in ("rows", "style", "sharedCrosshair", "hideControls"):
            assert key not in board, (name, key)
        for panel in panels(board):
            where = (name, panel["title"])
            assert "maxDataPoints" not in panel and "span" not in panel, where
            if panel["type"] in ("stat", "gauge", "bargauge"):
                assert panel["options"]["reduceOptions"]["calcs"] == ["lastNotNull"], where
                assert "fieldOptions" not in panel["options"], where
            for t in panel["targets"]:
                assert "intervalFactor" not in t and "step" not in t, where
                assert t["range"] is not t["instant"], where


def test_every_panel_has_a_title_and_a_description():
    for name, board in all_dashboards().items():
        assert board["description"], name
        titles = [p["title"] for p in panels(board)]
        for panel in panels(board):
            assert panel["title"] and len(panel.get("description", "")) > 20, (name, panel["title"])
        assert len(titles) == len(set(titles)), f"{name}: two panels share a title"


def test_every_panel_has_a_grafana_unit():
    for name, board in all_dashboards().items():
        for panel in panels(board):
            unit = panel["fieldConfig"]["defaults"].get("unit")
            assert unit in GRAFANA_UNITS, f"{name}/{panel['title']}: unit {unit!r}"


def test_panel_ids_and_dashboard_uids_are_unique_and_stable():
    boards = all_dashboards()
    assert {b["uid"] for b in boards.values()} == {f"devflow-{name}" for name in DASHBOARDS}
    for name, board in boards.items():
        ids = [p["id"] for p in panels(board, rows=True)]
        assert ids == list(range(1, len(ids) + 1)), f"{name}: ids must be unique and in layout order"
        for panel in panels(board):
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), (name, panel["title"])
    assert render_all() == render_all(), "two renders of the same code differ"


def test_panels_stay_inside_24_columns_and_never_overlap():
    for name, board in all_dashboards().items():
        taken: dict[tuple[int, int], str] = {}
        for panel in panels(board, rows=True):
            pos = panel["gridPos"]
            assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] >= 0 and pos["y"] >= 0, (name, panel["title"])
            assert pos["x"] + pos["w"] <= 24, f"{name}/{panel['title']} ends past column 24"
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    other = taken.setdefault((x, y), panel["title"])
                    assert other == panel["title"], f"{name}: {panel['title']!r} overlaps {other!r}"


def test_layout_fills_the_highest_free_spot_and_starts_the_next_row_below_everything():
    sizes = ((10, 3), (10, 5), (10, 4), (24, 1))
    wide = [grafana.stat(f"s{i}", "a description", grafana.target("x"), unit="none", w=w, h=h)
            for i, (w, h) in enumerate(sizes)]
    laid = grafana._layout((grafana.row("r", *wide[:3]), grafana.row("next", wide[3])))
    # s2 does not fit beside s1, so it goes under s0 (the shorter one), not under s1.
    assert [(p.gridPos.x, p.gridPos.y) for p in laid] == [(0, 0), (0, 1), (10, 1), (0, 4), (0, 8), (0, 9)]
    with pytest.raises(ValueError, match="width 25"):
        grafana._layout((grafana.row("r", grafana.stat("t", "d", grafana.target("x"), unit="none", w=25)),))


# --- the queries ------------------------------------------------------------------------------
def test_every_metric_in_every_query_is_in_the_catalog_with_those_labels():
    for name, title, t in targets():
        query = scan(t["expr"])
        assert query.selectors, (name, title, t["expr"])
        labels = set()
        for s in query.selectors:
            try:
                known = catalog_labels(s.name)
            except KeyError:
                pytest.fail(f"{name}/{title}: {s.name} is not in core.catalog")
            assert set(s.matchers) <= known, f"{name}/{title}: {s.name} has no label {set(s.matchers) - known}"
            labels |= known
        assert query.grouping_labels <= labels, f"{name}/{title}: grouping by {query.grouping_labels - labels}"
        unknown = set(query.functions) - FUNCTIONS
        assert not unknown, f"{name}/{title}: unknown functions {unknown}"


def test_every_selector_filters_by_job_and_instance():
    for name, title, t in targets():
        for s in scan(t["expr"]).selectors:
            for label in ("job", "instance"):
                op, value = s.matchers.get(label, ("", ""))
                assert op == "=~" and f"${label}" in value, f"{name}/{title}: {s.name} lacks {label}=~\"${label}\""


def test_every_rate_uses_rate_interval():
    for name, title, t in targets():
        for s in scan(t["expr"]).selectors:
            if s.function in RATE_FUNCTIONS:
                assert s.range == "$__rate_interval", f"{name}/{title}: {s.function}({s.name}[{s.range}])"


def test_counters_are_only_read_through_rate():
    for name, title, t in targets():
        for s in scan(t["expr"]).selectors:
            if s.name not in grafana.PROMETHEUS_SERIES and catalog.by_name(s.name).kind in ("counter", "histogram"):
                assert s.function in RATE_FUNCTIONS, f"{name}/{title}: raw counter {s.name}"


@requires("promtool")
def test_every_query_is_valid_promql_for_promtool(tmp_path):
    promtool = shutil.which("promtool")
    rules = []
    for i, (name, title, t) in enumerate(targets()):
        expr = t["expr"]
        for variable, value in sorted(SUBSTITUTIONS.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{name}/{title}: unknown template variable in {expr}"
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


# --- the guide's checklist ------------------------------------------------------------------------
def steps(panel: dict) -> list[float]:
    return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]


def test_thresholds_follow_the_guide_checklist():
    """CPU 70% / 80%, memory 80%, RSS 50% of the machine, response time 100 ms, error rate 1% / 5%, on
    every panel showing them."""
    checklist = (  # (item, metrics that identify the panel, unit, threshold values)
        ("cpu", {catalog.PROCESS_CPU.name}, "percentunit", [0.7, 0.8]),
        ("memory", {catalog.HOST_MEMORY_AVAILABLE.name, catalog.APP_MEMORY_TOTAL.name}, "percentunit", [0.8]),
        ("rss of machine", {catalog.PROCESS_RSS.name}, "percentunit", [0.5]),
        ("response time", {catalog.PROBE_DURATION.bucket, catalog.HTTP_DURATION.bucket}, "s", [0.1]),
        ("error rate", {catalog.LOG_LINES.name, catalog.HTTP_REQUESTS.name}, "percentunit", [0.01, 0.05]),
    )
    seen = {item: 0 for item, *_ in checklist}
    for name, board in all_dashboards().items():
        for panel in panels(board):
            names = {s.name for t in panel["targets"] for s in scan(t["expr"]).selectors}
            unit = panel["fieldConfig"]["defaults"]["unit"]
            for item, metrics, item_unit, values in checklist:
                if names & metrics and unit == item_unit:
                    assert steps(panel) == values, f"{name}/{panel['title']}: {item} thresholds"
                    seen[item] += 1
    assert all(seen.values()), f"a checklist item has no panel: {seen}"


# --- links, tags, staleness, provisioning ------------------------------------------------------------
def test_dashboards_share_one_tag_set_and_link_to_each_other():
    boards = all_dashboards()
    tag_sets = {tuple(b["tags"]) for b in boards.values()}
    assert len(tag_sets) == 1
    for name, board in boards.items():
        (link,) = board["links"]
        assert link["type"] == "dashboards" and link["tags"] == board["tags"], name
        assert link["includeVars"] and link["keepTime"], name


def test_committed_json_is_what_the_code_generates():
    result = subprocess.run([sys.executable, "-m", "devflow_monitor.dashboards.build", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, "dashboards/json is stale; run `make dashboards`\n" + result.stderr


def test_check_reports_changed_missing_and_orphaned_files(tmp_path):
    out = tmp_path / "json"

    def build(*args):
        return subprocess.run([sys.executable, "-m", "devflow_monitor.dashboards.build", "--out", str(out), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert build("--check").returncode == 1  # nothing there yet
    assert build().returncode == 0 and build("--check").returncode == 0
    (out / "errors.json").write_text((out / "errors.json").read_text().replace("Error ratio", "Error rate"))
    (out / "activity.json").unlink()
    (out / "old-name.json").write_text("{}")
    result = build("--check")
    assert result.returncode == 1
    assert all(f"stale: {out / n}" in result.stderr for n in ("errors.json", "activity.json", "old-name.json"))
    assert build().returncode == 0 and build("--check").returncode == 0
    assert not (out / "old-name.json").exists()


def test_datasource_provisioning_has_the_fixed_uid_the_dashboards_use():
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (datasource,) = config["datasources"]
    assert datasource["uid"] == grafana.DATASOURCE_UID
    assert datasource["type"] == "prometheus" and datasource["isDefault"] and not datasource["editable"]
    assert datasource["url"].startswith("http")


def test_dashboard_provider_loads_the_json_into_one_read_only_folder():
    config = yaml.safe_load((PROVISIONING / "dashboards" / "devflow.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file" and provider["folder"] == "DevFlow"
    assert provider["allowUiUpdates"] is False and provider["disableDeletion"] is True
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/devflow"


def test_dashboards_use_no_private_module_of_a_dependency():
    """grafanalib's `_gen` and friends change without notice; only public modules are imported."""
    for path in sorted((ROOT / "dashboards").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                private = [part for part in name.split(".") if part.startswith("_") and not part.startswith("__")]
                assert not private, f"{path.name} imports the private module {name}"
