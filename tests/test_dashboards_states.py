"""What the panels show for the public build's normal states, read off a real Prometheus.

A real `prometheus` serves a history written with `promtool tsdb create-blocks-from openmetrics`: two
exporters scraped every 15 s for 40 minutes.

- `a`, the public build run by its MCP client: for 10 minutes no server and no database, then the server
  runs for 20 minutes (database 4 KiB with a 547 KiB WAL and a 32 KiB SHM, no event stored, nothing
  listening, log records of every level), then its client stops it.
- `b`, a server that listens (the guide's daemon): up throughout, probes answered in about 20 ms, 42 events.

Each panel's queries are asked as Grafana and the built-in page ask them (instant ones at the moment, the
others over the range, one tile per series from its last value) and each value is shown as Grafana shows it:
the mapping's text and colour, else a fixed colour from an override, else the threshold colour. The page's
JavaScript does the same; test_webdash_states.py checks it in a browser.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import free_port, requires, stop_process, wait_for_http
from devflow_monitor.core import catalog
from devflow_monitor.core.logformat import LEVELS
from devflow_monitor.core.settings import Settings
from devflow_monitor.dashboards import states
from devflow_monitor.dashboards.build import render_all
from devflow_monitor.ops import dashboard_history, dashboard_sources, dashboard_views

JOB = "devflow"
STDIO, LISTENING = "a:9764", "b:9764"
STEP = 15  # seconds between scrapes
MINUTE = 60
DB, WAL, SHM = 4096, 560352, 32768  # measured beside the public build after 20 minutes (docs/devflow.md)
RUNNING, JUST_STOPPED, STOPPED = 25 * MINUTE, 32 * MINUTE, 38 * MINUTE  # offsets into the history
RANGE = 30 * MINUTE  # the dashboards' time range when a test looks


# --- the history ----------------------------------------------------------------------------------
def _stdio_build(t: float, epoch: int) -> dict[tuple, float]:
    """One scrape of `a`'s exporter at `t` seconds into the history: {(name, labels): value}."""
    running, db = 10 * MINUTE <= t < 30 * MINUTE, t >= 10 * MINUTE
    up = t - 10 * MINUTE if running else 0  # seconds the server has run
    ran = min(max(t - 10 * MINUTE, 0), 20 * MINUTE)  # seconds it ran in all
    scrapes = t // STEP
    samples = {
        (catalog.PROCESS_UP.name, ()): float(running),
        (catalog.TARGET_MODE.name, (("mode", "on_demand"),)): 1.0, (catalog.TARGET_MODE.name, (("mode", "daemon"),)): 0.0,
        (catalog.PROCESS_PORT_LISTENING.name, (("port", "3000"),)): 0.0,
        (catalog.HOST_MEMORY_TOTAL.name, ()): 8e9,
        (catalog.DB_UP.name, ()): float(db),
        **{(catalog.DB_STATE.name, (("state", state),)): float(state == ("ok" if db else "missing"))
           for state in ("ok", "missing", "locked", "corrupt", "unreadable")},
        **{(catalog.LOG_LINES.name, (("file", "stderr.log"), ("level", level))): ran * (i + 1) / 10
           for i, level in enumerate(LEVELS)},
    }
    if running:
        samples |= {
            (catalog.PROCESS_RSS.name, ()): 95e6, (catalog.PROCESS_VMS.name, ()): 1.1e9,
            (catalog.PROCESS_START_TIME.name, ()): epoch + 10.0 * MINUTE,
            (catalog.PROCESS_OPEN_FDS.name, ()): 24.0, (catalog.PROCESS_MAX_FDS.name, ()): 1024.0,
            (catalog.PROCESS_CPU.name, (("mode", "user"),)): up * 0.01,
            (catalog.PROCESS_CPU.name, (("mode", "system"),)): up * 0.005,
        }
    if db:
        samples |= {(catalog.DB_FILE_SIZE.name, (("file", f),)): size for f, size in (("db", DB), ("wal", WAL),
                                                                                         ("shm", SHM))}
    for endpoint in ("health", "status"):
        samples |= _probe(endpoint, "no_listener", 0, scrapes, 0.00495)
    return samples


def _listening_server(t: float, epoch: int) -> dict[tuple, float]:
    scrapes = t // STEP
    samples = {
        (catalog.PROCESS_UP.name, ()): 1.0, (catalog.PROCESS_PORT_LISTENING.name, (("port", "3000"),)): 1.0,
        (catalog.TARGET_MODE.name, (("mode", "daemon"),)): 1.0, (catalog.TARGET_MODE.name, (("mode", "on_demand"),)): 0.0,
        (catalog.HOST_MEMORY_TOTAL.name, ()): 8e9, (catalog.PROCESS_RSS.name, ()): 120e6,
        (catalog.PROCESS_VMS.name, ()): 1.2e9, (catalog.PROCESS_START_TIME.name, ()): epoch - 3600.0,
        (catalog.PROCESS_OPEN_FDS.name, ()): 30.0, (catalog.PROCESS_MAX_FDS.name, ()): 1024.0,
        (catalog.PROCESS_CPU.name, (("mode", "user"),)): t * 0.02,
        (catalog.PROCESS_CPU.name, (("mode", "system"),)): t * 0.01,
        (catalog.DB_UP.name, ()): 1.0, (catalog.DB_STATE.name, (("state", "ok"),)): 1.0,
        (catalog.DB_FILE_SIZE.name, (("file", "db"),)): 1e6, (catalog.DB_FILE_SIZE.name, (("file", "wal"),)): 0.0,
        (catalog.EVENTS_STORED.name, (("type", "file:changed"),)): 40.0,
        (catalog.EVENTS_STORED.name, (("type", "git:commit"),)): 2.0,
        (catalog.EVENTS_INGESTED.name, (("type", "file:changed"),)): scrapes,
        (catalog.LOG_LINES.name, (("file", "server.log"), ("level", "info"))): t,
        # Access-log requests of about 30 ms.
        (catalog.HTTP_DURATION.bucket, (("le", "0.05"),)): scrapes,
        (catalog.HTTP_DURATION.bucket, (("le", "+Inf"),)): scrapes,
        (catalog.HTTP_DURATION.count, ()): scrapes, (catalog.HTTP_DURATION.sum, ()): scrapes * 0.03,
    }
    for endpoint in ("health", "status"):
        samples |= _probe(endpoint, "ok", 200, scrapes, 0.02)
    return samples


def _probe(endpoint: str, state: str, status: int, scrapes: float, seconds: float) -> dict[tuple, float]:
    """A probe every scrape that took `seconds` and ended in `state`."""
    e = ("endpoint", endpoint)
    samples = {(catalog.PROBE_SUCCESS.name, (e,)): float(state == "ok"),
               (catalog.PROBE_HTTP_STATUS.name, (e,)): float(status),
               (catalog.PROBE_DURATION.count, (e,)): scrapes,
               (catalog.PROBE_DURATION.sum, (e,)): scrapes * seconds}
    for name in ("ok", "no_listener", "timeout", "http_error", "invalid_json", "unexpected_shape", "error"):
        samples[(catalog.PROBE_STATE.name, (e, ("state", name)))] = float(name == state)
    for le in ("0.005", "0.025", "0.1", "+Inf"):
        samples[(catalog.PROBE_DURATION.bucket, (e, ("le", le)))] = scrapes if float(le) >= seconds else 0.0
    return samples


def openmetrics(epoch: int) -> str:
    """The history as OpenMetrics text, one series after another, each in time order."""
    series: dict[tuple, list[str]] = {}
    for t in range(0, 40 * MINUTE + 1, STEP):
        for instance, scrape in ((STDIO, _stdio_build), (LISTENING, _listening_server)):
            for (name, labels), value in scrape(t, epoch).items():
                key = (name, (("instance", instance), ("job", JOB), *labels))
                series.setdefault(key, []).append(f"{value!r} {epoch + t}")
    lines = []
    for name, labels in sorted(series, key=lambda k: k[0]):
        text = ",".join(f'{k}="{v}"' for k, v in labels)
        lines += [f"{name}{{{text}}} {sample}" for sample in series[(name, labels)]]
    return "\n".join(lines) + "\n# EOF\n"


@dataclass
class History:
    url: str
    epoch: int

    def query(self, expr: str, at: float) -> list[dict]:
        return self._get("query", query=expr, time=self.epoch + at)

    def query_range(self, expr: str, start: float, end: float) -> list[dict]:
        return self._get("query_range", query=expr, start=self.epoch + start, end=self.epoch + end, step=STEP)

    def _get(self, path: str, **params) -> list[dict]:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]["result"]


@pytest.fixture(scope="module")
def history(tmp_path_factory, request) -> History:
    tmp = tmp_path_factory.mktemp("history")
    epoch = int(time.time()) // 3600 * 3600 - 2 * 3600  # whole hours: the blocks promtool cuts
    (tmp / "history.om").write_text(openmetrics(epoch))
    created = subprocess.run([shutil.which("promtool"), "tsdb", "create-blocks-from", "openmetrics",
                              str(tmp / "history.om"), str(tmp / "tsdb")], capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stdout + created.stderr
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({"global": {"scrape_interval": f"{STEP}s"}}))
    port = free_port()
    with open(tmp / "prometheus.out", "w") as out:
        proc = subprocess.Popen([shutil.which("prometheus"), f"--config.file={tmp / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=out, stderr=subprocess.STDOUT)
    request.addfinalizer(lambda: stop_process(proc))
    wait_for_http(f"http://127.0.0.1:{port}/-/ready", timeout=30)
    return History(f"http://127.0.0.1:{port}", epoch)


# --- panels as Grafana shows them ----------------------------------------------------------------------
@dataclass
class Tile:
    name: str
    value: float
    text: str | None  # a value mapping's text, else None (Grafana formats the number)
    colour: str


def listener_expected() -> Settings:
    settings = Settings()
    settings.app.expect_listener = True
    return settings


@functools.cache
def boards(expect_listener: bool = False) -> dict[str, dict]:
    """The dashboards as rendered from the default settings, or with `app.expect_listener` set."""
    settings = listener_expected() if expect_listener else Settings()
    return {name.removesuffix(".json"): json.loads(text) for name, text in render_all(settings).items()}


def panel(board: str, title: str, expect_listener: bool = False) -> dict:
    return next(p for p in boards(expect_listener)[board]["panels"] if p["title"] == title and p["type"] != "row")


def fill(expr: str, instance: str) -> str:
    values = {"$__rate_interval": "1m", "$__interval": f"{STEP}s", "$__range": f"{RANGE}s", "$job": JOB,
              "$instance": instance}
    for variable in sorted(values, key=len, reverse=True):
        expr = expr.replace(variable, values[variable])
    return expr


def legend(fmt: str, labels: dict) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def field_for(config: dict, ref_id: str, name: str) -> dict:
    """The panel's defaults with the properties of each override that matches, later ones winning; a
    byRegexp pattern matches the whole name, as Grafana's stringToJsRegex makes it."""
    field = dict(config["defaults"])
    for override in config.get("overrides", []):
        kind, option = override["matcher"]["id"], override["matcher"]["options"]
        if {"byName": name == option, "byRegexp": re.fullmatch(option, name) is not None,
                "byFrameRefID": ref_id == option}[kind]:
            field.update({prop["id"]: prop["value"] for prop in override["properties"]})
    return field


def display(field: dict, value: float) -> tuple[str | None, str]:
    """(mapped text or None, colour name) in Grafana's order: mapping, fixed colour, thresholds."""
    for mapping in field.get("mappings", []):
        result = mapping["options"].get(f"{value:g}")
        if result:
            return result.get("text"), result.get("color") or _colour(field, value)
    return None, _colour(field, value)


def _colour(field: dict, value: float) -> str:
    if field.get("color", {}).get("mode") == "fixed":
        return field["color"]["fixedColor"]
    if field.get("color", {}).get("mode") == "palette-classic":
        return "palette"
    steps = field["thresholds"]["steps"]
    return [s["color"] for s in steps if s["value"] is None or value >= s["value"]][-1]


def shown(history: History, board: str, title: str, at: float, *, instance: str = ".+",
          expect_listener: bool = False) -> list[Tile]:
    """What the panel shows at `at`: instant targets asked at that moment, range targets over RANGE before
    it and shown by their last value, one tile per series."""
    found = panel(board, title, expect_listener)
    tiles = []
    for target in found["targets"]:
        expr = fill(target["expr"], instance)
        if target["instant"]:
            values = [(r["metric"], float(r["value"][1])) for r in history.query(expr, at)]
        else:
            values = [(r["metric"], float(r["values"][-1][1])) for r in history.query_range(expr, at - RANGE, at)]
        for labels, value in values:
            name = legend(target["legendFormat"], labels)
            text, colour = display(field_for(found["fieldConfig"], target["refId"], name), value)
            tiles.append(Tile(name, value, text, colour))
    return tiles


def of(tiles: list[Tile], instance: str) -> list[Tile]:
    return [t for t in tiles if instance in t.name]


pytestmark = requires("prometheus", "promtool")


# --- 7: the database's size ------------------------------------------------------------------------------
def test_database_size_counts_the_wal_the_server_never_checkpoints(history):
    size = of(shown(history, "performance", "Database size", RUNNING), STDIO)
    assert [t.value for t in size] == [DB + WAL + SHM]
    parts = {t.name: t.value for t in of(shown(history, "performance", "Database files", RUNNING), STDIO)}
    assert parts == {f"total {STDIO}": DB + WAL + SHM, f"db {STDIO}": DB, f"wal {STDIO}": WAL, f"shm {STDIO}": SHM}


def test_terminal_performance_view_gives_the_whole_size_then_its_parts():
    from test_ops_dashboard import _text

    text = _text({catalog.DB_FILE_SIZE: [(["db"], DB), (["wal"], WAL), (["shm"], SHM)]})
    history = dashboard_history.History(window=30)
    history.add(dashboard_sources.parse_exposition(text, time.time()))
    rows = {row.label: row for row in dashboard_views.performance(history, Settings())}
    assert rows["database"].value == "583.2 KiB (file 4.0 KiB, WAL 547.2 KiB, SHM 32.0 KiB)"


# --- 12: tiles show the value now ----------------------------------------------------------------------------
def test_every_tile_without_a_sparkline_asks_for_the_value_now():
    for name, board in boards().items():
        for p in board["panels"]:
            sparkline = p.get("options", {}).get("graphMode") == "area"
            if p["type"] in ("stat", "gauge", "bargauge") and not sparkline:
                assert all(t["instant"] for t in p["targets"]), f"{name}/{p['title']} asks for a range"


def test_database_tile_shows_the_state_now_not_the_missing_state_earlier_in_the_range(history):
    before = shown(history, "overview", "Database", 5 * MINUTE, instance=STDIO)
    assert [(t.name, t.colour) for t in before] == [("missing", "red")]
    tiles = shown(history, "overview", "Database", RUNNING, instance=STDIO)
    assert [(t.name, t.colour) for t in tiles] == [("ok", "green")]


# --- 13: a stopped server ---------------------------------------------------------------------------------------
PROCESS_PANELS = [("overview", "Uptime"), ("overview", "Memory used"), ("overview", "CPU"),
                  ("overview", "Memory of the machine"), ("performance", "CPU now"),
                  ("performance", "Virtual memory"), ("performance", "Memory of the machine"),
                  ("performance", "File descriptors used")]


@pytest.mark.parametrize(("board", "title"), PROCESS_PANELS)
def test_process_tiles_say_not_running_once_the_server_stops(history, board, title):
    running = shown(history, board, title, RUNNING)
    assert [t.text for t in of(running, STDIO)] == [None] and of(running, STDIO)[0].value > 0
    # Just after the stop Prometheus would still return the last samples, and Grafana keeps a range's last value.
    for at in (JUST_STOPPED, STOPPED):
        tiles = shown(history, board, title, at)
        assert [(t.text, t.colour) for t in of(tiles, STDIO)] == [(states.NOT_RUNNING, "blue")], at
        assert [t.text for t in of(tiles, LISTENING)] == [None], at


def test_the_process_tile_reads_an_on_demand_server_not_running_as_normal(history):
    """devflow.mode on_demand: the client stopped its server, which is not an outage."""
    assert [(t.text, t.colour) for t in of(shown(history, "overview", "Process", RUNNING), STDIO)] == [("up", "green")]
    assert [(t.text, t.colour) for t in of(shown(history, "overview", "Process", STOPPED), STDIO)] == [
        ("not running (on-demand)", "blue")]
    assert [(t.text, t.colour) for t in of(shown(history, "overview", "Process", STOPPED), LISTENING)] == [
        ("up", "green")]


# --- 14: no listener ----------------------------------------------------------------------------------------------
LISTENER_PANELS = [("errors", "Probe"), ("errors", "HTTP status"), ("overview", "Availability")]


@pytest.mark.parametrize(("board", "title"), LISTENER_PANELS)
def test_no_listener_is_neutral_for_the_stdio_build(history, board, title):
    tiles = shown(history, board, title, RUNNING)
    listener = [t for t in of(tiles, STDIO) if "probe" in t.name or "port" in t.name or board == "errors"]
    assert len(listener) >= 2
    assert {(t.text, t.colour) for t in listener} == {(states.NO_ENDPOINT, "blue")}
    assert all(t.colour == "green" for t in of(tiles, LISTENING))


@pytest.mark.parametrize(("board", "title"), LISTENER_PANELS)
def test_no_listener_is_red_where_a_listener_is_expected(history, board, title):
    tiles = shown(history, board, title, RUNNING, expect_listener=True)
    listener = [t for t in of(tiles, STDIO) if "probe" in t.name or "port" in t.name or board == "errors"]
    assert len(listener) >= 2
    assert {(t.text, t.colour) for t in listener} == {("no listener", "red")}
    assert all(t.colour == "green" for t in of(tiles, LISTENING))


def test_probe_failures_mark_no_listener_failing_only_where_a_listener_is_expected(history):
    stdio = of(shown(history, "errors", "Probe failures by state", RUNNING), STDIO)
    assert {(t.name.split()[1], t.text, t.colour) for t in stdio if t.value} == {
        ("no_listener", states.NO_ENDPOINT, "blue")}
    stdio = of(shown(history, "errors", "Probe failures by state", RUNNING, expect_listener=True), STDIO)
    assert {(t.name.split()[1], t.text, t.colour) for t in stdio if t.value} == {("no_listener", "no listener", "red")}


# --- 15: no answer, no latency ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("board", "title"), [("overview", "Response time"), ("performance", "Health probe latency"),
                                              ("performance", "HTTP response time")])
def test_response_time_shows_only_what_was_answered(history, board, title):
    assert of(shown(history, board, title, RUNNING), STDIO) == []
    assert shown(history, board, title, RUNNING, instance=STDIO) == []
    assert panel(board, title)["fieldConfig"]["defaults"]["noValue"] == states.NO_REQUESTS
    answered = of(shown(history, board, title, RUNNING), LISTENING)
    assert answered and all(0.01 < t.value < 0.1 for t in answered)


# --- 16: no events is 0 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("board", "title"), [("activity", "Events stored"), ("activity", "Events per hour"),
                                              ("overview", "Event ingest"), ("overview", "Events ingested")])
def test_a_readable_database_without_events_shows_zero(history, board, title):
    assert [t.value for t in of(shown(history, board, title, RUNNING), STDIO)] == [0]
    assert of(shown(history, board, title, 5 * MINUTE, instance=STDIO), STDIO) == []  # no database: no figure


def test_events_by_type_show_one_zero_bar_while_the_database_holds_none(history):
    assert [(t.name, t.value) for t in shown(history, "activity", "Events stored by type", RUNNING, instance=STDIO)] \
        == [(states.NONE, 0)]
    assert [(t.name, t.value) for t in shown(history, "activity", "Events stored by type", RUNNING,
                                             instance=LISTENING)] == [("file:changed", 40), ("git:commit", 2)]
    by_type = shown(history, "activity", "Events ingested by type", RUNNING, instance=STDIO)
    assert [(t.name, t.value) for t in by_type] == [(states.NONE, 0)]


# --- 17: log levels in Grafana's colours ----------------------------------------------------------------------
GRAFANA_LEVEL_COLOURS = {"fatal": {"red", "dark-red"}, "error": {"red", "dark-red"}, "warn": {"orange", "yellow"},
                         "info": {"green"}, "debug": {"blue"}, "unknown": {"gray", "grey"}}


def test_log_levels_have_grafanas_colours_on_every_panel_that_shows_them(history):
    assert set(GRAFANA_LEVEL_COLOURS) == set(LEVELS)
    level_panels = [(name, p["title"]) for name, board in boards().items() for p in board["panels"]
                    if any("{{level}}" in t.get("legendFormat", "") for t in p.get("targets", []))]
    assert level_panels
    for board, title in level_panels:
        tiles = shown(history, board, title, RUNNING, instance=STDIO)
        assert {t.name for t in tiles} == set(LEVELS), title
        wrong = {t.name: t.colour for t in tiles if t.colour not in GRAFANA_LEVEL_COLOURS[t.name]}
        assert not wrong, f"{board}/{title}: {wrong}"
