"""A small layer over grafanalib that writes dashboards for current Grafana (10 to 13).

grafanalib 0.7.1 still writes Grafana 5-era JSON: schemaVersion 12, datasources as
strings, maxDataPoints 100, a mean reduction on stat panels, `intervalFactor: 2` on
every target and gauge options under the long-gone `fieldOptions`. Dashboard modules
build panels only through the constructors below, which pick current options, and
`render()` rewrites grafanalib's output (the plain data of its public `to_json_data()`)
into what Grafana saves itself: every outdated default is fixed in this one module.

A dashboard module reads as rows of panels, with thresholds from the settings:

    def dashboard(settings: Settings) -> g.Dashboard:
        steps = grafana.steps(settings)
        return grafana.dashboard(
            "devflow-example", "DevFlow / Example", "What this dashboard answers.",
            grafana.row("Process",
                grafana.stat("CPU", "CPU of the DevFlow process (1 = one core).",
                             grafana.target(queries.CPU, "{{instance}}"),
                             unit="percentunit", thresholds=steps.cpu)),
        )

Positions (gridPos) and panel ids are assigned by `dashboard()`: panels fill each row's
24 columns left to right, short ones beside tall ones, and no two can overlap.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import attr
from grafanalib import core as g

from devflow_monitor.core.settings import Settings, seconds
from devflow_monitor.core.catalog import EXPORTER_BUILD_INFO, Metric
from devflow_monitor.core.logformat import LEVELS

# --- conventions shared by every dashboard -----------------------------------------
SCHEMA_VERSION = 39  # Grafana 10.3 / 11.0
DATASOURCE_UID = "devflow-prometheus"  # the provisioned datasource (provisioning/datasources/prometheus.yml)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["devflow"]
GRID_COLUMNS = 24
SELECTOR = 'job=~"$job", instance=~"$instance"'
UID_PREFIX = "devflow-"

# Series that Prometheus itself writes for every scrape target and alerting rule; the only
# names a panel may use that are not in core.catalog.
TARGET_UP = "up"
SCRAPE_DURATION = "scrape_duration_seconds"
SCRAPE_SAMPLES = "scrape_samples_scraped"
ALERTS = "ALERTS"
PROMETHEUS_SERIES = frozenset({TARGET_UP, SCRAPE_DURATION, SCRAPE_SAMPLES, ALERTS})

def thresholds(base: str, *steps: tuple[float, str]) -> list[dict]:
    """Absolute threshold steps: `base` below the lowest value, then each (value, color) in order."""
    return [{"color": base, "value": None}] + [{"color": color, "value": value} for value, color in sorted(steps)]


NEUTRAL = thresholds("blue")
UP_IS_GOOD = thresholds("red", (1, "green"))
ANY_IS_BAD = thresholds("green", (1, "red"))


@dataclass(frozen=True)
class Steps:
    """Threshold steps of the panels that show a setting: orange where the guide's checklist ends,
    red where an alert fires. Every value comes from core/settings.py."""

    cpu: list[dict]
    memory: list[dict]  # memory used of total, the app's or the machine's
    rss_of_machine: list[dict]
    memory_growth: list[dict]
    response_time: list[dict]
    log_error_ratio: list[dict]
    http_error_ratio: list[dict]
    open_files: list[dict]
    free_disk: list[dict]  # red below the alert, orange below the checklist, green above
    free_pages: list[dict]
    event_age: list[dict]  # orange once events outlive the retention


def steps(settings: Settings) -> Steps:
    a, c = settings.alerts, settings.checklist
    return Steps(
        cpu=thresholds("green", (c.cpu_ratio, "orange"), (a["DevFlowHighCpuUsage"].threshold, "red")),
        memory=thresholds("green", (c.memory_ratio, "orange")),
        rss_of_machine=thresholds("green", (a["DevFlowHighMemoryUsage"].threshold, "red")),
        memory_growth=thresholds("green", (a["DevFlowMemoryLeak"].growth_bytes_per_hour, "red")),
        response_time=thresholds("green", (a["DevFlowProbeSlow"].threshold, "red")),
        log_error_ratio=thresholds("green", (c.error_ratio, "orange"), (a["DevFlowHighErrorRate"].threshold, "red")),
        http_error_ratio=thresholds("green", (c.error_ratio, "orange"), (a["DevFlowHttpErrorRate"].threshold, "red")),
        open_files=thresholds("green", (c.open_files_ratio, "orange")),
        free_disk=thresholds("red", (a["DevFlowDiskSpaceLow"].threshold, "orange"), (c.disk_free_ratio, "green")),
        free_pages=thresholds("green", (a["DevFlowDatabaseFragmented"].max_free_ratio, "orange")),
        event_age=thresholds("green", (seconds(a["DevFlowRetentionNotApplied"].retention), "orange")),
    )


def value_mappings(*entries: tuple[float, str, str]) -> list[dict]:
    """Value-to-text mappings: each (value, text, color)."""
    options = {str(value): {"text": text, "color": color, "index": index}
               for index, (value, text, color) in enumerate(entries)}
    return [{"type": "value", "options": options}]


UP_DOWN = value_mappings((0, "down", "red"), (1, "up", "green"))
PROCESS_BY_MODE = value_mappings((0, "down", "red"), (1, "up", "green"), (2, "not running (on-demand)", "blue"),
                                 (3, "up", "green"))
OK_FAILED = value_mappings((0, "failed", "red"), (1, "ok", "green"))


def fixed_colour(matcher: str, pattern: str, colour: str) -> dict:
    """An override that gives one colour to the series `matcher` picks: "byName", or "byRegexp" (a pattern
    Grafana matches against the whole name)."""
    return {"matcher": {"id": matcher, "options": pattern},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": colour}}]}


# Log levels in the colours Grafana's own log views give them, never in palette order.
LEVEL_COLOURS = {"fatal": "dark-red", "error": "red", "warn": "yellow", "info": "green", "debug": "blue",
                 "unknown": "gray"}
assert set(LEVEL_COLOURS) == set(LEVELS), "every level core/logformat.py gives a record has its colour"
LEVEL = "{{level}}"


def level_colours(targets: tuple[g.Target, ...]) -> list[dict]:
    """Overrides that colour each level in the series whose legend names `{{level}}`: by name when the
    legend is the level alone, else by a pattern with the level in its place and any text for other labels."""
    overrides = []
    for legend in dict.fromkeys(t.legendFormat for t in targets if LEVEL in t.legendFormat):
        for level, colour in LEVEL_COLOURS.items():
            if legend == LEVEL:
                overrides.append(fixed_colour("byName", level, colour))
            else:
                parts = re.split(r"(\{\{\s*\w+\s*\}\})", legend)
                pattern = "".join(re.escape(level) if part == LEVEL else ".*" if part.startswith("{{")
                                  else re.escape(part) for part in parts)
                overrides.append(fixed_colour("byRegexp", pattern, colour))
    return overrides


# --- PromQL built from catalog entries ------------------------------------------------
def _name(metric: Metric | str) -> str:
    return metric.name if isinstance(metric, Metric) else metric


def series(metric: Metric | str, *matchers: str) -> str:
    """`name{job=~"$job", instance=~"$instance", ...}` for a catalog metric or one of its sample names."""
    return f"{_name(metric)}{{{', '.join((SELECTOR, *matchers))}}}"


def rate(metric: Metric | str, *matchers: str) -> str:
    return f"rate({series(metric, *matchers)}[$__rate_interval])"


def age(metric: Metric | str, *matchers: str) -> str:
    """Seconds since a `_timestamp_seconds` gauge."""
    return f"time() - {series(metric, *matchers)}"


def quantile(q: float, histogram: Metric, *by: str) -> str:
    """The q-quantile of a catalog histogram over `$__rate_interval`, per instance and `by` labels."""
    labels = ", ".join(("le", "instance", *by))
    return f"histogram_quantile({q}, sum by ({labels}) ({rate(histogram.bucket)}))"


# --- panels -----------------------------------------------------------------------------
def target(expr: str, legend: str = "", *, instant: bool = False, table: bool = False,
           heatmap: bool = False) -> g.Target:
    """One Prometheus query; `table` and `heatmap` choose the result format."""
    fmt = "table" if table else "heatmap" if heatmap else g.TIME_SERIES_TARGET_FORMAT
    return g.Target(expr=expr, legendFormat=legend, instant=instant or table, format=fmt,
                    datasource=DATASOURCE)


def _targets(targets: tuple[g.Target, ...], *, instant: bool = False) -> list[g.Target]:
    """refIds A, B, ...; `instant` for a panel that shows the value now, so that a series which ended
    earlier in the time range (a state left, a version replaced) shows nowhere."""
    return [attr.evolve(t, refId=chr(ord("A") + i), instant=t.instant or instant) for i, t in enumerate(targets)]


def _no_value(text: str | None) -> dict:
    """What the panel says when its queries return nothing, instead of Grafana's "No data"."""
    return {"fieldConfig": {"defaults": {"noValue": text}}} if text else {}


def _size(w: int, h: int) -> g.GridPos:
    return g.GridPos(h=h, w=w, x=0, y=0)


def timeseries(title: str, description: str, *targets: g.Target, unit: str,
               thresholds: list[dict] | None = None, stack: bool = False, bars: bool = False,
               min: int | None = None, max: int | None = None, overrides: list[dict] | None = None,
               no_value: str | None = None, w: int = 12, h: int = 8) -> g.TimeSeries:
    """Lines over time; thresholds, when given, are drawn as dashed lines."""
    return g.TimeSeries(
        title=title, description=description, targets=_targets(targets), unit=unit,
        dataSource=DATASOURCE, gridPos=_size(w, h),
        thresholds=thresholds or NEUTRAL, thresholdsStyleMode="dashed" if thresholds else "off",
        stacking={"mode": "normal", "group": "A"} if stack else {"mode": "none", "group": "A"},
        drawStyle="bars" if bars else "line", fillOpacity=60 if bars else 10, showPoints="never",
        valueMin=min, valueMax=max, overrides=(overrides or []) + level_colours(targets),
        tooltipMode="multi", tooltipSort="desc", legendDisplayMode="list", legendPlacement="bottom",
        extraJson=_no_value(no_value))


def stat(title: str, description: str, *targets: g.Target, unit: str,
         thresholds: list[dict] | None = None, mappings: list[dict] | None = None,
         text: str = "auto", background: bool = False, sparkline: bool = False,
         overrides: list[dict] | None = None, no_value: str | None = None, w: int = 4, h: int = 4) -> g.Stat:
    """One number (or name, with text="name") per series now: instant queries, unless a sparkline needs
    the range (then the last value of each series, never a mean)."""
    return g.Stat(
        title=title, description=description, targets=_targets(targets, instant=not sparkline), format=unit,
        dataSource=DATASOURCE, gridPos=_size(w, h), thresholds=thresholds or NEUTRAL,
        mappings=mappings or [], reduceCalc="lastNotNull", textMode=text,
        colorMode="background" if background else "value", graphMode="area" if sparkline else "none",
        overrides=(overrides or []) + level_colours(targets), extraJson=_no_value(no_value))


def state_stat(title: str, description: str, *targets: g.Target, mappings: list[dict] = UP_DOWN,
               **options) -> g.Stat:
    """A 0/1 state as a word on green (1) or red (0): up or down, unless `mappings` names them."""
    return stat(title, description, *targets, unit="none", mappings=mappings, thresholds=UP_IS_GOOD,
                background=True, **options)


def gauge(title: str, description: str, *targets: g.Target, unit: str, thresholds: list[dict],
          min: float = 0, max: float = 1, w: int = 4, h: int = 6) -> g.GaugePanel:
    """A dial from `min` to `max` (a share from 0 to 1 by default), coloured by the thresholds, for the value now."""
    return g.GaugePanel(
        title=title, description=description, targets=_targets(targets, instant=True), format=unit,
        dataSource=DATASOURCE, gridPos=_size(w, h), thresholds=thresholds, min=min, max=max,
        calc="lastNotNull")


def bargauge(title: str, description: str, *targets: g.Target, unit: str,
             thresholds: list[dict] | None = None, max: float | None = None,
             w: int = 12, h: int = 8) -> g.BarGauge:
    """Horizontal bars, one per series now; the scale runs from 0 to `max` (or the largest bar)."""
    return g.BarGauge(
        title=title, description=description, targets=_targets(targets, instant=True), format=unit,
        dataSource=DATASOURCE, gridPos=_size(w, h), thresholds=thresholds or NEUTRAL,
        min=0, max=max, calc="lastNotNull", displayMode=g.GAUGE_DISPLAY_MODE_GRADIENT,
        orientation=g.ORIENTATION_HORIZONTAL, extraJson={"fieldConfig": {"overrides": level_colours(targets)}})


def table(title: str, description: str, *targets: g.Target, unit: str, columns: list[str],
          hidden: tuple[str, ...] = ("Time", "Value", "__name__"), w: int = 24, h: int = 6) -> g.Table:
    """Instant results as rows: `columns` (labels) first in that order, then any other label."""
    organize = {
        "id": "organize",
        "options": {"excludeByName": {name: True for name in hidden},
                    "indexByName": {name: i for i, name in enumerate(columns)}},
    }
    return g.Table(
        title=title, description=description, targets=_targets(targets), unit=unit,
        dataSource=DATASOURCE, gridPos=_size(w, h), thresholds=NEUTRAL, transformations=[organize])


def state_timeline(title: str, description: str, *targets: g.Target, mappings: list[dict],
                   thresholds: list[dict], unit: str = "none", w: int = 24, h: int = 6) -> g.StateTimeline:
    """Each series as a band coloured by its (mapped) state over time."""
    return g.StateTimeline(
        title=title, description=description, targets=_targets(targets), mappings=mappings,
        dataSource=DATASOURCE, gridPos=_size(w, h), thresholds=thresholds, rowHeight=0.8,
        extraJson={"fieldConfig": {"defaults": {"unit": unit}}})


@dataclass(frozen=True)
class Row:
    """A titled row of panels; `dashboard()` lays them out."""

    title: str
    panels: tuple[g.Panel, ...]


def row(title: str, *panels: g.Panel) -> Row:
    return Row(title, panels)


# --- dashboards ---------------------------------------------------------------------------
def _variables() -> g.Templating:
    """`datasource`, then `job` and `instance` from the exporter's build info (multi, All = .+)."""
    info = EXPORTER_BUILD_INFO.name
    datasource = g.Template(name="datasource", label="Data source", type="datasource",
                            query="prometheus", default=None)
    job = g.Template(name="job", label="job", query=f"label_values({info}, job)",
                     dataSource=DATASOURCE, includeAll=True, multi=True, allValue=".+",
                     refresh=g.REFRESH_ON_TIME_RANGE_CHANGE)
    instance = g.Template(name="instance", label="instance",
                          query=f'label_values({info}{{job=~"$job"}}, instance)',
                          dataSource=DATASOURCE, includeAll=True, multi=True, allValue=".+",
                          refresh=g.REFRESH_ON_TIME_RANGE_CHANGE)
    return g.Templating(list=[datasource, job, instance])


def _layout(rows: tuple[Row, ...]) -> list[g.Panel]:
    """Rows full width; each panel in turn goes to the highest free spot of its row, leftmost
    on a tie (a skyline, like Grafana's own gravity), so short panels fill in beside tall ones.
    A panel's top is never above the bottom of anything already in its columns: no overlap."""
    placed: list[g.Panel] = []
    top = 0
    for r in rows:
        placed.append(g.RowPanel(title=r.title, gridPos=g.GridPos(h=1, w=GRID_COLUMNS, x=0, y=top)))
        skyline = [top + 1] * GRID_COLUMNS  # first free grid line in each column
        for panel in r.panels:
            w, h = panel.gridPos.w, panel.gridPos.h
            if not 0 < w <= GRID_COLUMNS:
                raise ValueError(f"panel {panel.title!r}: width {w} is not within 1..{GRID_COLUMNS}")
            y, x = min((max(skyline[x:x + w]), x) for x in range(GRID_COLUMNS - w + 1))
            placed.append(attr.evolve(panel, gridPos=g.GridPos(h=h, w=w, x=x, y=y)))
            skyline[x:x + w] = [y + h] * w
        top = max(skyline)
    return [attr.evolve(panel, id=i) for i, panel in enumerate(placed, start=1)]


def dashboard(uid: str, title: str, description: str, *rows: Row) -> g.Dashboard:
    """A read-only dashboard with the shared variables, tags and links to its siblings."""
    if not uid.startswith(UID_PREFIX):
        raise ValueError(f"dashboard uid {uid!r} must start with {UID_PREFIX!r}")
    links = [g.DashboardLink(type="dashboards", tags=TAGS, title="DevFlow dashboards",
                             asDropdown=True, includeVars=True, keepTime=True)]
    return g.Dashboard(
        uid=uid, title=title, description=description, tags=TAGS, panels=_layout(rows),
        templating=_variables(), links=links, editable=False,
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR, refresh="30s",
        time=g.Time("now-1h", "now"), timezone="browser")


# --- grafanalib JSON -> current Grafana JSON ------------------------------------------------
def render(board: g.Dashboard) -> dict:
    """The dashboard as current Grafana saves it."""
    data = json.loads(json.dumps(board.to_json_data(), default=_json_data))
    return _modernize_dashboard(data)


def _json_data(obj):
    """grafanalib's public contract: each object it builds turns itself into plain data."""
    if not hasattr(obj, "to_json_data"):
        raise TypeError(f"cannot write {type(obj).__name__} as JSON")
    return obj.to_json_data()


def dumps(data: dict) -> str:
    """Stable text: sorted keys, so regenerating an unchanged dashboard changes no byte."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


_BUILT_IN_ANNOTATION = {
    "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
    "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
}


def _modernize_dashboard(data: dict) -> dict:
    for key in ("__inputs", "rows", "style", "hideControls", "sharedCrosshair", "gnetId", "version"):
        data.pop(key, None)
    data["schemaVersion"] = SCHEMA_VERSION
    data["annotations"] = {"list": [_BUILT_IN_ANNOTATION]}
    data["timepicker"] = {"refresh_intervals": data["timepicker"]["refresh_intervals"]}
    data.update(fiscalYearStartMonth=0, liveNow=False, weekStart="")
    data["templating"]["list"] = [_modernize_variable(v) for v in data["templating"]["list"]]
    data["panels"] = [_modernize_panel(p) for p in data["panels"]]
    return data


def _modernize_variable(var: dict) -> dict:
    for key in ("useTags", "tagsQuery", "tagValuesQuery", "auto", "auto_min", "auto_count", "multiFormat"):
        var.pop(key, None)
    var["regex"] = var["regex"] or ""
    if var["type"] == "datasource":
        var.pop("datasource")
        var.pop("allValue")
        var["current"] = {"selected": False, "text": "Prometheus", "value": DATASOURCE_UID}
        var["refresh"] = g.REFRESH_ON_DASHBOARD_LOAD
    else:
        var["definition"] = var["query"]
        var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return var


def _drop_none(mapping: dict) -> dict:
    return {key: value for key, value in mapping.items() if value is not None}


_OBSOLETE_PANEL_KEYS = (
    "cacheTimeout", "editable", "error", "height", "span", "minSpan", "hideTimeOverride", "maxDataPoints",
    "repeat", "repeatDirection", "maxPerRow", "columns", "fontSize", "mappings", "color", "interval",
    "timeFrom", "timeShift",
)


def _modernize_panel(panel: dict) -> dict:
    # maxDataPoints goes: Grafana then asks for one point per pixel of the panel's width.
    for key in _OBSOLETE_PANEL_KEYS:
        panel.pop(key, None)
    if panel["type"] == "row":
        return {"collapsed": False, "gridPos": panel["gridPos"], "id": panel["id"], "panels": [],
                "title": panel["title"], "type": "row"}
    panel["datasource"] = dict(DATASOURCE)
    panel["targets"] = [_modernize_target(t) for t in panel["targets"]]
    defaults = panel["fieldConfig"]["defaults"]
    if not isinstance(defaults.get("color"), dict):
        defaults["color"] = {"mode": "thresholds"}
    if defaults.get("noValue") == "none":  # grafanalib would print "none" for missing data
        defaults.pop("noValue")
    _PANEL_FIXES[panel["type"]](panel)  # a KeyError here is a panel type the dashboards must not use
    panel["fieldConfig"]["defaults"] = _drop_none(panel["fieldConfig"]["defaults"])
    return panel


def _modernize_target(t: dict) -> dict:
    # grafanalib also writes target/metric/step and intervalFactor 2 (half resolution): all dropped.
    return {
        "datasource": dict(DATASOURCE), "editorMode": "code", "expr": t["expr"], "format": t["format"],
        "instant": t["instant"], "legendFormat": t["legendFormat"], "range": not t["instant"],
        "refId": t["refId"],
    }


def _reduce_options(calcs: list[str]) -> dict:
    return {"calcs": calcs, "fields": "", "values": False}


def _fix_stat(panel: dict) -> None:
    panel["options"].update(wideLayout=True, showPercentChange=False)


def _fix_timeseries(panel: dict) -> None:
    panel["options"]["legend"]["showLegend"] = True
    custom = panel["fieldConfig"]["defaults"]["custom"]
    panel["fieldConfig"]["defaults"]["custom"] = _drop_none(custom) | {"insertNulls": False}


def _fix_gauge(panel: dict) -> None:
    config = panel["fieldConfig"]
    defaults = config["defaults"]
    calcs = defaults.pop("calcs")
    for key in ("limit", "override", "values", "links", "title"):
        defaults.pop(key, None)
    config.pop("showThresholdLabels", None)
    config.pop("showThresholdMarkers", None)
    config.setdefault("overrides", [])
    panel["options"] = {
        "reduceOptions": _reduce_options(calcs), "orientation": "auto", "showThresholdLabels": False,
        "showThresholdMarkers": True, "sizing": "auto", "minVizHeight": 75, "minVizWidth": 75,
    }


def _fix_bargauge(panel: dict) -> None:
    legacy = panel["options"].pop("fieldOptions")
    limits = legacy["defaults"]
    defaults = panel["fieldConfig"]["defaults"]
    defaults.update(unit=limits["unit"], min=limits["min"], max=limits["max"], decimals=limits["decimals"])
    panel["fieldConfig"].setdefault("overrides", [])
    panel["options"] = {
        "displayMode": panel["options"]["displayMode"], "orientation": panel["options"]["orientation"],
        "reduceOptions": _reduce_options(legacy["calcs"]), "showUnfilled": True, "valueMode": "color",
        "namePlacement": "auto", "sizing": "auto", "minVizHeight": 16, "minVizWidth": 8, "maxVizHeight": 300,
    }


def _fix_table(panel: dict) -> None:
    custom = panel["fieldConfig"]["defaults"]["custom"]
    custom.pop("displayMode", None)  # replaced by cellOptions in Grafana 10
    custom.update(cellOptions={"type": "auto"}, inspect=False)
    panel["options"].update(cellHeight="sm", footer={"show": False, "reducer": ["sum"], "fields": ""})


def _fix_state_timeline(panel: dict) -> None:
    panel["options"]["legend"]["showLegend"] = True


_PANEL_FIXES = {
    "stat": _fix_stat, "timeseries": _fix_timeseries, "gauge": _fix_gauge, "bargauge": _fix_bargauge,
    "table": _fix_table, "state-timeline": _fix_state_timeline,
}
