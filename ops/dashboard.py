"""`devflow-monitor dashboard`: the guide's CLI dashboard views (section 5.1) in a terminal.

Reads the exporter's /metrics (or Prometheus, with `--prometheus`), keeps a
short history for rates and sparklines, and redraws in place. Without a
terminal (a pipe, a log file) it prints one plain frame and exits, as
`--once` does (1 when the source cannot be read); `--frames N` prints N.

Rates cover a window that makes sense for the figure, never two neighbouring
samples: Prometheus computes them with `rate()` over the settings'
`rate_window` (the alerts' own window, 5m), since a refresh shorter than its
scrape interval sees the same sample twice and then a jump. From the exporter
they span `--rate-window` seconds (default 30) of the dashboard's own samples:
`n/a` until that much has been seen, and `--once` waits that long between its
two samples. Over 2 s an error logged every 30 s reads 0 or 30 per minute; over
30 s it reads 2 or 4, and a longer window is one flag away.

Colours follow the guide: yellow is outside its real-time checklist, red is
where one of its alerts fires. The levels come from the alert settings
(core/settings.py, or the file given with `--settings`); the defaults:

    CPU of the process    yellow >= 70%, red >= 80%       (checklist.cpu_ratio, DevFlowHighCpuUsage)
    memory used / total   yellow >= 80%                   (checklist.memory_ratio)
    RSS / machine memory  red >= 50%                      (DevFlowHighMemoryUsage)
    response time         yellow >= 100 ms                (DevFlowProbeSlow)
    error share           yellow >= 1%, red >= 5%         (checklist.error_ratio, DevFlowHigh/HttpErrorRate)
    free disk             yellow < 10%, red < 5%          (checklist.disk_free_ratio, DevFlowDiskSpaceLow)
    WAL file              yellow > 64 MiB                 (checklist.wal_size_bytes)
    last backup           yellow older than 26h           (DevFlowBackupStale)

The overview's "event storage" row and its status are DevFlowEventsNotPersisted's
condition as `core/persistence.py` judges it for `/status` and `doctor` too.
Errors are the records whose level matches the settings' `app.error_levels`, as
in the rules.

Every metric name comes from `exporter.catalog`.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from prometheus_client.parser import text_string_to_metric_families

from devflow_monitor.core.settings import Settings, SettingsError, load, seconds
from devflow_monitor.core import catalog as c
from devflow_monitor.core import persistence
from devflow_monitor.ops import common
from devflow_monitor.core.commands import add_command, config_from_args

VIEWS = ("overview", "performance", "errors", "activity")
SPARK = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-=+*#@"
SPARK_WIDTH = 30
HISTORY = 120
EXPORTER_RATE_WINDOW = 30.0  # seconds; see the module docstring
# The counters whose rates the views show; Prometheus computes each with rate().
RATED = (c.PROCESS_CPU.name, c.LOG_LINES.name, c.EVENTS_INGESTED.name, c.HTTP_REQUESTS.name,
         c.HTTP_DURATION.sum, c.HTTP_DURATION.count, c.PROBE_DURATION.sum, c.PROBE_DURATION.count)


def register(subparsers) -> None:
    parser = add_command(subparsers, "dashboard", run,
                         help="live terminal dashboard (overview, performance, errors, activity)")
    parser.add_argument("--view", choices=VIEWS, default="overview", help="which view (default overview)")
    parser.add_argument("--settings", metavar="FILE",
                        help="YAML or Jsonnet alert settings whose thresholds set the colours (default: built in)")
    source = parser.add_argument_group("source", "The exporter's /metrics, unless --prometheus is given.")
    source.add_argument("--url", metavar="URL",
                        help="exporter metrics URL (default: --web.listen-address and --web.telemetry-path, "
                             "http://127.0.0.1:9764/metrics)")
    source.add_argument("--prometheus", metavar="URL",
                        help="read from Prometheus at URL instead of the exporter (history comes from it too)")
    source.add_argument("--match", metavar="LABELS",
                        help='with --prometheus: extra label matchers, e.g. \'job="devflow"\'')
    parser.add_argument("--interval", type=float, default=2.0, metavar="SECONDS", help="refresh interval (default 2)")
    parser.add_argument("--rate-window", type=float, metavar="SECONDS",
                        help="span of the rates: from the exporter default 30 (--once samples twice this far "
                             "apart); with --prometheus default the settings' rate_window (5m)")
    parser.add_argument("--once", action="store_true",
                        help="print one frame and exit (the default when stdout is not a terminal)")
    parser.add_argument("--frames", type=int, default=0, metavar="N",
                        help="stop after N frames (default: run until Ctrl-C on a terminal, 1 otherwise)")
    parser.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="HTTP timeout (default 3)")


# --- sources ------------------------------------------------------------------------

@dataclass
class Snapshot:
    """All devflow_* samples at one moment: sample name -> [(labels, value)]; a match value is a string or a
    compiled pattern. `rates` holds per-second rates of the RATED counters when the source computed them."""
    time: float
    samples: dict[str, list[tuple[dict, float]]]
    rates: dict[str, list[tuple[dict, float]]] | None = None

    def series(self, name: str, **match) -> list[tuple[dict, float]]:
        return _select(self.samples.get(name, ()), match)

    def rate_series(self, name: str, **match) -> list[tuple[dict, float]]:
        return _select((self.rates or {}).get(name, ()), match)

    def value(self, name: str, **match) -> float | None:
        """The sum of the matching series, None when there is none."""
        found = self.series(name, **match)
        return sum(v for _, v in found) if found else None

    def label_where_one(self, name: str, label: str, **match) -> str | None:
        """The value of `label` on the series that is 1 (state-set metrics: one series per state)."""
        return next((labels.get(label) for labels, v in self.series(name, **match) if v == 1), None)


def _select(samples, match: dict) -> list[tuple[dict, float]]:
    return [(labels, value) for labels, value in samples
            if all(v.fullmatch(labels.get(k, "")) if isinstance(v, re.Pattern) else labels.get(k) == v
                   for k, v in match.items())]


class ExporterSource:
    def __init__(self, url: str, timeout: float):
        self.url, self.timeout = url, timeout

    def sample(self) -> Snapshot:
        status, body = common.http_get(self.url, self.timeout)
        if status != 200:
            raise common.OpsError(f"{self.url} answered HTTP {status}")
        return parse_exposition(body.decode("utf-8", "replace"), time.time())

    def backfill(self, points: int, step: float) -> list[Snapshot]:
        return []  # the exporter has no history; it builds up while the dashboard runs


class PrometheusSource:
    def __init__(self, base: str, match: str | None, timeout: float, rate_window: float):
        self.base = base.rstrip("/")
        self.url = self.base
        self.match = match
        self.selector = '{__name__=~"devflow_.+"' + (f",{match}" if match else "") + "}"
        self.timeout = timeout
        self.rate_window = rate_window

    def _rate_queries(self) -> dict[str, str]:
        labels = "{" + (self.match or "") + "}"
        return {name: f"rate({name}{labels}[{self.rate_window:g}s])" for name in RATED}

    def _api(self, path: str, params: dict) -> list:
        status, body = common.http_get(f"{self.base}{path}?{urlencode(params, quote_via=quote)}", self.timeout)
        try:
            data = json.loads(body)
        except ValueError:
            raise common.OpsError(f"{self.base} answered HTTP {status} without JSON: is it Prometheus?") from None
        if status != 200 or data.get("status") != "success":
            raise common.OpsError(f"Prometheus query failed: {data.get('error', f'HTTP {status}')}")
        return data["data"]["result"]

    def sample(self) -> Snapshot:
        now = time.time()
        at = {"time": f"{now:.3f}"}
        samples: dict[str, list] = {}
        for item in self._api("/api/v1/query", {"query": self.selector, **at}):
            labels = dict(item["metric"])
            samples.setdefault(labels.pop("__name__"), []).append((labels, float(item["value"][1])))
        rates = {name: [(dict(item["metric"]), float(item["value"][1]))
                        for item in self._api("/api/v1/query", {"query": query, **at})]
                 for name, query in self._rate_queries().items()}
        return Snapshot(now, samples, rates)

    def backfill(self, points: int, step: float) -> list[Snapshot]:
        """The recent past from Prometheus itself, so trends show at once."""
        end = time.time()
        span = {"start": f"{end - points * step:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        frames: dict[float, Snapshot] = {}

        def frame(ts) -> Snapshot:
            return frames.setdefault(float(ts), Snapshot(float(ts), {}, {}))

        for item in self._api("/api/v1/query_range", {"query": self.selector, **span}):
            labels = dict(item["metric"])
            name = labels.pop("__name__")
            for ts, value in item["values"]:
                frame(ts).samples.setdefault(name, []).append((labels, float(value)))
        for name, query in self._rate_queries().items():
            for item in self._api("/api/v1/query_range", {"query": query, **span}):
                for ts, value in item["values"]:
                    frame(ts).rates.setdefault(name, []).append((dict(item["metric"]), float(value)))
        return [frames[ts] for ts in sorted(frames) if frames[ts].samples]


def parse_exposition(text: str, when: float) -> Snapshot:
    samples: dict[str, list] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith("devflow_"):
                    samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    except (ValueError, TypeError) as exc:
        raise common.OpsError(f"not Prometheus metrics text: {exc}") from None
    if not samples:
        raise common.OpsError("no devflow_* metrics in the answer: is this the devflow-monitor exporter?")
    return Snapshot(when, samples)


# --- derived figures ------------------------------------------------------------------

class History:
    """The last snapshots. A rate is Prometheus' own when the source gave one, else the increase of each series
    over the last `window` seconds of snapshots (counter resets handled), None until they span that long."""

    def __init__(self, window: float, size: int = HISTORY):
        self.window = window
        self.snapshots: deque[Snapshot] = deque(maxlen=size)

    def add(self, snapshot: Snapshot) -> None:
        if not self.snapshots or snapshot.time > self.snapshots[-1].time:
            self.snapshots.append(snapshot)

    @property
    def last(self) -> Snapshot:
        return self.snapshots[-1]

    def gauge_trend(self, name: str, scale: float = 1.0, **match) -> list[float | None]:
        return [None if (v := s.value(name, **match)) is None else v * scale for s in self.snapshots]

    def rate_trend(self, name: str, **match) -> list[float | None]:
        snapshots = list(self.snapshots)
        return [_window_rate(snapshots, i, name, match, self.window) for i in range(len(snapshots))]

    def rate(self, name: str, **match) -> float | None:
        snapshots = list(self.snapshots)
        return _window_rate(snapshots, len(snapshots) - 1, name, match, self.window) if snapshots else None

    def rates_note(self) -> str:
        """What the rates on screen cover, in the header."""
        if self.snapshots and self.last.rates is not None:
            return f"rates over {persistence.duration_text(self.window)} (Prometheus)"
        seen = self.last.time - self.snapshots[0].time if self.snapshots else 0.0
        if seen >= self.window:
            return f"rates over {persistence.duration_text(self.window)}"
        return f"rates n/a until {persistence.duration_text(self.window)} of data ({seen:.0f}s so far)"

    def ratio_trend(self, num: tuple, den: tuple) -> list[float | None]:
        """Trend of rate(num) / rate(den); each tuple is (name, {labels}). No `num` series at all is 0, as in
        the rules: a level never logged has none."""
        return [_div(0.0 if n is None and d is not None else n, d)
                for n, d in zip(self.rate_trend(num[0], **num[1]), self.rate_trend(den[0], **den[1]))]


def _window_rate(snapshots: list[Snapshot], i: int, name: str, match: dict, window: float) -> float | None:
    end = snapshots[i]
    if end.rates is not None:
        found = end.rate_series(name, **match)
        return sum(v for _, v in found) if found else None
    start = next((j for j in range(i - 1, -1, -1) if end.time - snapshots[j].time >= window), None)
    if start is None:
        return None
    increases = [_increase(a, b, name, match) for a, b in zip(snapshots[start:i], snapshots[start + 1:i + 1])]
    known = [n for n in increases if n is not None]
    return sum(known) / (end.time - snapshots[start].time) if known else None


def _increase(a: Snapshot, b: Snapshot, name: str, match: dict) -> float | None:
    before = {_key(labels): v for labels, v in a.series(name, **match)}
    after = b.series(name, **match)
    if not after or not before:
        return None
    total = 0.0
    for labels, value in after:
        previous = before.get(_key(labels))
        if previous is None:
            continue  # a series born between the two samples: no increase yet
        total += value - previous if value >= previous else value  # a reset restarts from zero
    return total


def _key(labels: dict) -> tuple:
    return tuple(sorted(labels.items()))


def _div(a, b):
    return None if a is None or not b else a / b


# --- rows -------------------------------------------------------------------------------

@dataclass
class Row:
    label: str
    value: str
    level: str | None = None  # None, "ok", "warn" or "crit"
    trend: list | None = None


def level_for(value: float | None, warn: float | None, crit: float | None) -> str | None:
    if value is None:
        return None
    if crit is not None and value >= crit:
        return "crit"
    if warn is not None and value >= warn:
        return "warn"
    return "ok"


def level_below(value: float | None, warn: float, crit: float) -> str | None:
    """The level of a value that is bad when low (free space)."""
    return None if value is None else level_for(-value, -warn, -crit)


def _fmt(value: float | None, fmt: str = "{:.1f}", missing: str = "-") -> str:
    return missing if value is None else fmt.format(value)


def _rate_fmt(value: float | None, fmt: str = "{:.1f}") -> str:
    """A rate; n/a until the history spans the window (the header says how long)."""
    return _fmt(value, fmt, "n/a")


def _error_levels(settings: Settings) -> re.Pattern:
    """The `level` values counted as errors, as the rules count them."""
    return re.compile(settings.app.error_levels)


def events_stored(s: Snapshot) -> float | None:
    """Rows in the events table: with no row of any type there is no per-type series, but the table count says 0."""
    by_type = s.value(c.EVENTS_STORED.name)
    return s.value(c.DB_TABLE_ROWS.name, table="events") if by_type is None else by_type


def persistence_verdict(s: Snapshot, settings: Settings) -> persistence.Verdict:
    """DevFlowEventsNotPersisted's condition from one snapshot, as /status and doctor judge it."""
    up = s.value(c.PROCESS_UP.name)
    newest = [v for _, v in s.series(c.EVENTS_NEWEST.name)]
    logs = [(name, labels, v) for name in (c.LOG_LINES.name, c.LOG_FILE_MODIFIED.name)
            for labels, v in s.series(name)]
    return persistence.judge(s.time, process_up=None if up is None else up >= 1,
                             database_ok=s.value(c.DB_UP.name) == 1,
                             last_log_record=persistence.last_log_record(logs),
                             newest_event=max(newest, default=None),
                             window=persistence.Window.from_settings(settings))


def _age(snapshot: Snapshot, name: str) -> str:
    stamp = snapshot.value(name)
    if not stamp:
        return "-"
    return f"{common.human_duration(snapshot.time - stamp)} ago"


def overview(h: History, settings: Settings) -> list[Row]:
    s = h.last
    up = s.value(c.PROCESS_UP.name)
    start = s.value(c.PROCESS_START_TIME.name)
    db_state = s.label_where_one(c.DB_STATE.name, "state")
    healthy = s.value(c.APP_HEALTHY.name)
    monitors = {labels["monitor"]: labels["state"] for labels, v in s.series(c.APP_MONITOR_STATE.name) if v == 1}
    version = next((labels.get("version") for labels, _ in s.series(c.APP_BUILD_INFO.name)), None)
    events = persistence_verdict(s, settings)
    not_persisting = events.state == persistence.NOT_PERSISTING
    if up == 0:
        status, level = "down", "crit"
    elif db_state not in (None, "ok") or healthy == 0 or not_persisting:
        status, level = "degraded", "crit" if not_persisting else "warn"
    else:
        status, level = "healthy", "ok"
    rows = [
        Row("status", status, level),
        Row("process", "up" + (f", uptime {common.human_duration(s.time - start)}" if start else "")
            if up else "DOWN", "ok" if up else "crit"),
        Row("version", version or "unknown (no /status)"),
        Row("monitors", ", ".join(f"{k} {v}" for k, v in sorted(monitors.items())) or "unknown (no /status)"),
        Row("database", f"{db_state or '-'}, {common.human_bytes(s.value(c.DB_FILE_SIZE.name))} with WAL",
            None if db_state is None else ("ok" if db_state == "ok" else "crit")),
    ]
    rows.append(_memory_row(h, settings))
    rows += [
        Row("event storage", ("NOT PERSISTING: " if not_persisting else f"{events.state}: ") + events.summary,
            {persistence.NOT_PERSISTING: "crit", persistence.UNKNOWN: None}.get(events.state, "ok")),
        Row("events stored", _fmt(events_stored(s), "{:.0f}")),
        Row("events / s", _rate_fmt(h.rate(c.EVENTS_INGESTED.name), "{:.2f}"), None,
            h.rate_trend(c.EVENTS_INGESTED.name)),
        Row("newest event", _age(s, c.EVENTS_NEWEST.name)),
        Row("outbox pending", _fmt(s.value(c.OUTBOX_EVENTS.name, status="pending"), "{:.0f}")
            + (f", oldest {_age(s, c.OUTBOX_OLDEST_PENDING.name)}" if s.value(c.OUTBOX_OLDEST_PENDING.name) else "")),
        _backup_row(s, settings),
        _collectors_row(s),
    ]
    return rows


def performance(h: History, settings: Settings) -> list[Row]:
    s, alerts, checklist = h.last, settings.alerts, settings.checklist
    cpu_trend = [None if v is None else 100 * v for v in h.rate_trend(c.PROCESS_CPU.name)]
    cpu = cpu_trend[-1] if cpu_trend else None
    rss = s.value(c.PROCESS_RSS.name)
    machine = s.value(c.HOST_MEMORY_TOTAL.name)
    rss_share = _div(rss, machine)
    latency = h.ratio_trend((c.HTTP_DURATION.sum, {}), (c.HTTP_DURATION.count, {}))
    probe = h.ratio_trend((c.PROBE_DURATION.sum, {}), (c.PROBE_DURATION.count, {}))
    rss_percent = None if rss_share is None else 100 * rss_share
    rss_level = level_for(rss_percent, None, 100 * alerts["DevFlowHighMemoryUsage"].threshold)
    slow_ms = 1000 * alerts["DevFlowProbeSlow"].threshold
    wal = s.value(c.DB_FILE_SIZE.name, file="wal")
    pages, free_pages = s.value(c.DB_PAGES.name), s.value(c.DB_FREELIST_PAGES.name)
    free_disk = _div(s.value(c.DB_FS_FREE.name), s.value(c.DB_FS_SIZE.name))
    return [
        Row("CPU", _rate_fmt(cpu, "{:.1f}%"),
            level_for(cpu, 100 * checklist.cpu_ratio, 100 * alerts["DevFlowHighCpuUsage"].threshold), cpu_trend),
        Row("memory (RSS)", common.human_bytes(rss) if rss is not None else "-", rss_level,
            h.gauge_trend(c.PROCESS_RSS.name, 1 / (1024 * 1024))),
        Row("RSS of machine", _fmt(rss_percent, "{:.1f}%"), rss_level),
        _memory_row(h, settings),
        Row("threads", _fmt(s.value(c.PROCESS_THREADS.name), "{:.0f}")),
        Row("open fds", _fmt(s.value(c.PROCESS_OPEN_FDS.name), "{:.0f}")
            + (f" of {s.value(c.PROCESS_MAX_FDS.name):.0f}" if s.value(c.PROCESS_MAX_FDS.name) else "")),
        Row("Open sockets", _fmt(s.value(c.PROCESS_SOCKETS.name), "{:.0f}")),
        Row("response (access log)", _ms(latency[-1] if latency else None),
            level_for(_to_ms(latency[-1] if latency else None), slow_ms, None), _trend_ms(latency)),
        Row("health probe", _ms(probe[-1] if probe else None),
            level_for(_to_ms(probe[-1] if probe else None), slow_ms, None), _trend_ms(probe)),
        Row("events / s", _rate_fmt(h.rate(c.EVENTS_INGESTED.name), "{:.2f}"), None,
            h.rate_trend(c.EVENTS_INGESTED.name)),
        Row("database", common.human_bytes(s.value(c.DB_FILE_SIZE.name, file="db"))
            + (f", WAL {common.human_bytes(wal)}" if wal is not None else "")
            + (f", {100 * free_pages / pages:.0f}% free pages" if pages and free_pages is not None else ""),
            level_for(wal, checklist.wal_size_bytes, None)),
        Row("free disk", _fmt(None if free_disk is None else 100 * free_disk, "{:.1f}%"),
            level_below(free_disk, checklist.disk_free_ratio, alerts["DevFlowDiskSpaceLow"].threshold)),
    ]


def errors(h: History, settings: Settings) -> list[Row]:
    s, alerts, warn = h.last, settings.alerts, 100 * settings.checklist.error_ratio
    errors_only = _error_levels(settings)
    log_share = [None if v is None else 100 * v for v in h.ratio_trend(
        (c.LOG_LINES.name, {"level": errors_only}), (c.LOG_LINES.name, {}))]
    http_share = [None if v is None else 100 * v for v in h.ratio_trend(
        (c.HTTP_REQUESTS.name, {"code": "5xx"}), (c.HTTP_REQUESTS.name, {}))]
    per_minute = [None if v is None else 60 * v for v in h.rate_trend(c.LOG_LINES.name, level=errors_only)]
    latest_log = log_share[-1] if log_share else None
    latest_http = http_share[-1] if http_share else None
    rows = [
        Row("error share (logs)", _rate_fmt(latest_log, "{:.2f}%"),
            level_for(latest_log, warn, 100 * alerts["DevFlowHighErrorRate"].threshold), log_share),
        Row("error lines / min", _rate_fmt(per_minute[-1] if per_minute else None, "{:.1f}"), None, per_minute),
        Row("HTTP 5xx share", _rate_fmt(latest_http, "{:.2f}%"),
            level_for(latest_http, warn, 100 * alerts["DevFlowHttpErrorRate"].threshold), http_share),
    ]
    files = sorted({labels["file"] for labels, _ in s.series(c.LOG_LINES.name)})
    for path in files:
        rate = h.rate(c.LOG_LINES.name, file=path, level=errors_only)
        last = s.value(c.LOG_LAST_ERROR.name, file=path)
        rows.append(Row(f"  {_tail(path, 20)}", f"{_rate_fmt(None if rate is None else 60 * rate)} errors/min"
                        + (f", last {common.human_duration(s.time - last)} ago" if last else ", none seen")))
    for labels, value in s.series(c.PROBE_SUCCESS.name):
        state = s.label_where_one(c.PROBE_STATE.name, "state", endpoint=labels.get("endpoint"))
        rows.append(Row(f"probe /{labels.get('endpoint')}", state or ("ok" if value else "failing"),
                        "ok" if value else "crit"))
    integrity = s.value(c.DB_INTEGRITY_OK.name)
    rows += [
        Row("DB integrity", {None: "-", 1.0: "ok"}.get(integrity, "FAILED"),
            None if integrity is None else ("ok" if integrity else "crit")),
        Row("outbox failed", _fmt(s.value(c.OUTBOX_EVENTS.name, status="failed"), "{:.0f}")),
        Row("log read errors", _fmt(s.value(c.LOG_READ_ERRORS.name), "{:.0f}")),
        _collectors_row(s),
    ]
    return rows


def activity(h: History, settings: Settings) -> list[Row]:
    s = h.last
    rows = [Row("events / s", _rate_fmt(h.rate(c.EVENTS_INGESTED.name), "{:.2f}"), None,
                h.rate_trend(c.EVENTS_INGESTED.name))]
    # Stored rows per type (the ingest counter only counts since the exporter started).
    stored = {labels["type"]: v for labels, v in s.series(c.EVENTS_STORED.name)}
    types = {labels["type"] for labels, _ in s.series(c.EVENTS_INGESTED.name)} | set(stored)
    busiest = sorted(types, key=lambda t: (-(h.rate(c.EVENTS_INGESTED.name, type=t) or 0), -stored.get(t, 0)))[:8]
    for event_type in busiest:
        rate = h.rate(c.EVENTS_INGESTED.name, type=event_type)
        rows.append(Row(f"  {event_type}", f"{_rate_fmt(rate, '{:.2f}')}/s, {stored.get(event_type, 0):.0f} stored",
                        None, h.rate_trend(c.EVENTS_INGESTED.name, type=event_type)))
    rows += [
        Row("newest event", _age(s, c.EVENTS_NEWEST.name)),
        Row("outbox pending", _fmt(s.value(c.OUTBOX_EVENTS.name, status="pending"), "{:.0f}"), None,
            h.gauge_trend(c.OUTBOX_EVENTS.name, status="pending")),
        Row("log records / s", _rate_fmt(h.rate(c.LOG_LINES.name)), None, h.rate_trend(c.LOG_LINES.name)),
        Row("HTTP requests / s", _rate_fmt(h.rate(c.HTTP_REQUESTS.name)), None,
            h.rate_trend(c.HTTP_REQUESTS.name)),
    ]
    return rows


VIEW_ROWS = {"overview": overview, "performance": performance, "errors": errors, "activity": activity}


def _memory_row(h: History, settings: Settings) -> Row:
    s = h.last
    used, total = s.value(c.APP_MEMORY_USED.name), s.value(c.APP_MEMORY_TOTAL.name)
    share = _div(used, total)
    if share is None:
        return Row("memory (app)", "unknown (no /status)")
    return Row("memory (app)", f"{common.human_bytes(used)} of {common.human_bytes(total)} ({100 * share:.0f}%)",
               level_for(share, settings.checklist.memory_ratio, None), [_div(u, t) for u, t in zip(
                   h.gauge_trend(c.APP_MEMORY_USED.name), h.gauge_trend(c.APP_MEMORY_TOTAL.name))])


def _backup_row(s: Snapshot, settings: Settings) -> Row:
    last = s.value(c.BACKUP_LAST_SUCCESS.name)
    if not last:
        return Row("last backup", "none recorded", "warn")
    age = s.time - last
    size = s.value(c.BACKUP_LAST_SIZE.name)
    return Row("last backup", f"{common.human_duration(age)} ago, {common.human_bytes(size)}",
               "warn" if age > seconds(settings.alerts["DevFlowBackupStale"].max_age) else "ok")


def _collectors_row(s: Snapshot) -> Row:
    results = {labels.get("collector"): v for labels, v in s.series(c.COLLECTOR_SUCCESS.name)}
    failing = sorted(name for name, v in results.items() if v == 0)
    if failing:
        return Row("exporter collectors", "failing: " + ", ".join(failing), "crit")
    return Row("exporter collectors", f"{len(results)} ok" if results else "-", "ok" if results else None)


def _to_ms(seconds):
    return None if seconds is None else 1000 * seconds


def _ms(seconds) -> str:
    return _fmt(_to_ms(seconds), "{:.0f} ms")


def _trend_ms(trend):
    return [_to_ms(v) for v in trend]


def _tail(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


# --- drawing ------------------------------------------------------------------------

def sparkline(values: list | None, width: int = SPARK_WIDTH, ascii_only: bool = False) -> str:
    if not values:
        return ""
    values = values[-width:]
    known = [v for v in values if v is not None]
    if not known:
        return ""
    glyphs = SPARK_ASCII if ascii_only else SPARK
    low, high = min(known), max(known)
    span = high - low
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            out.append(glyphs[0] if span == 0 else glyphs[min(len(glyphs) - 1, int((v - low) / span * len(glyphs)))])
    return "".join(out)


def render(view: str, history: History, settings: Settings, source_label: str, interval: float, *, color: bool,
           ascii_only: bool, problem: str | None = None, live: bool = False) -> list[str]:
    stamp = time.strftime("%H:%M:%S")
    header = f"DevFlow {view} | {source_label} | {stamp} | {history.rates_note()}"
    if live:
        header += f" | every {interval:g}s, Ctrl-C quits"
    lines = [common.paint(header, "bold", color), ""]
    if problem:
        lines.append(common.paint(f"  source unreachable: {problem}", "crit", color))
        if not history.snapshots:
            return lines
        lines += [f"  (showing the last data, {common.human_duration(time.time() - history.last.time)} old)", ""]
    rows = VIEW_ROWS[view](history, settings)
    width = max(len(r.label) for r in rows)
    value_width = min(40, max(len(r.value) for r in rows))
    for row in rows:
        value = common.paint(f"{row.value:<{value_width}}", row.level, color)
        trend = sparkline(row.trend, ascii_only=ascii_only)
        lines.append(f"  {row.label:<{width}}  {value}  {trend}".rstrip())
    return lines


def run(args) -> int:
    """A live view of DevFlow from the exporter's /metrics (or from Prometheus), refreshed in place with sparkline
    trends and the guide's thresholds as colours. Plain text when not on a terminal."""
    config = config_from_args(args)
    spans = (args.interval, args.timeout, 1.0 if args.rate_window is None else args.rate_window)
    if not all(math.isfinite(v) and v > 0 for v in spans) or args.frames < 0:
        return common.fail("dashboard", "--interval, --timeout and --rate-window must be positive, "
                                        "--frames at least 0")
    try:
        settings = load(args.settings)
    except SettingsError as exc:
        return common.fail("dashboard", str(exc))
    if args.prometheus:
        window = args.rate_window or seconds(settings.rate_window)
        source = PrometheusSource(args.prometheus, args.match, args.timeout, window)
    else:
        window = args.rate_window or EXPORTER_RATE_WINDOW
        source = ExporterSource(args.url or common.local_url(config.web.listen_address, config.web.telemetry_path),
                                args.timeout)
    terminal = sys.stdout.isatty()
    once = args.once or (not terminal and not args.frames)  # a pipe or a file gets one frame, then EOF
    live = terminal and not once
    color = common.use_color()
    ascii_only = not _can_encode(SPARK)
    # Room for the rate window and a full sparkline of rates after it.
    history = History(window, max(HISTORY, int(window / args.interval) + SPARK_WIDTH + 2))
    try:
        for snapshot in source.backfill(SPARK_WIDTH, args.interval):
            history.add(snapshot)
    except common.FAILED as exc:
        if once:
            return common.fail("dashboard", f"cannot read {source.url}: {exc}")
    if once:
        return _once(args, source, history, settings, color, ascii_only)
    frames = 0
    if live:
        sys.stdout.write("\x1b[?25l")  # hide the cursor while redrawing
    try:
        while True:
            problem = None
            try:
                history.add(source.sample())
            except common.FAILED as exc:
                problem = str(exc)
            lines = render(args.view, history, settings, source.url, args.interval, color=color,
                           ascii_only=ascii_only, problem=problem, live=live)
            if live:
                # Home, redraw each line clearing its rest, clear below: no flicker, no scrolling.
                sys.stdout.write("\x1b[H" + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
            else:
                sys.stdout.write("\n".join(lines) + "\n\n")
            sys.stdout.flush()
            frames += 1
            if args.frames and frames >= args.frames:
                return 0
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        if live:
            sys.stdout.write("\x1b[?25h")
            sys.stdout.flush()


def _once(args, source, history: History, settings: Settings, color: bool, ascii_only: bool) -> int:
    try:
        first = source.sample()
        history.add(first)
        if first.rates is None:  # the exporter has no history: watch it for one rate window
            time.sleep(history.window)
            history.add(source.sample())
    except common.FAILED as exc:
        return common.fail("dashboard", f"cannot read {source.url}: {exc}")
    print("\n".join(render(args.view, history, settings, source.url, args.interval, color=color,
                           ascii_only=ascii_only)))
    return 0


def _can_encode(text: str) -> bool:
    try:
        text.encode(sys.stdout.encoding or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False
