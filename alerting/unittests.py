"""promtool unit tests for every alert, generated from the same settings as the rules.

For each alert there is at least one fault case and one healthy case:
- the fault case is silent before its condition first holds (when it holds
  later than the first sample), still silent one evaluation before its `for`
  has elapsed, and firing right after it with the exact labels and
  annotations;
- the healthy case stays silent at the same moments and at its last sample.

The tests hold on Prometheus 2.x and 3.x alike. Input samples and rule
evaluations are one minute apart and every window is whole minutes, so a
window always starts exactly on a sample: Prometheus 2 counts that sample,
Prometheus 3 (left-open ranges) does not. The cases never depend on it:
- a fault's condition starts when a change *enters* the windows (both versions
  see a change between samples j-1 and j from time j on); a change *leaving* a
  window is seen one step apart, so no case starts its condition that way;
- every counter is either a straight line or exactly 0 until its step and a
  straight line from 0 after it, so rate(), increase(), deriv() and
  predict_linear() give the same value whether or not the left-edge sample is
  in the range (Prometheus 3 extrapolates to the edge along the same line,
  and stops at 0 where the line does);
- windows are at least two samples long, so a left-open range is never empty.
tests/test_alerting.py checks this on the Prometheus 2 here by re-running the
tests with every range shortened by a millisecond, which drops the left-edge
sample the way Prometheus 3 does.

The description's `$value` is printed by Prometheus' humanize functions. Each
fault case is built to reach a round value at the moment it is checked (a
whole percent, MiB, count, second or day), so the text is known without
re-implementing those functions; the comment on each `value=` names the
function that prints it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

from devflow_monitor.alerting.rules import UP, AlertRule, active_alerts, number, recorded
from devflow_monitor.core.settings import Alert, Settings, SettingsError, seconds
from devflow_monitor.core import catalog

INSTANCE = "devflow-host:9764"
STEP_MINUTES = 1
FAULT_AT = 5  # minute a stepped fault starts: late enough for a silent check before it
MIB = 1024 ** 2
DAY = 86400


# --- input series notation -----------------------------------------------------------

def steps(before: float, minute: int, after: float, end: int) -> str:
    """`before` for samples 0..minute-1, then `after` up to `end`."""
    return f"{number(before)}x{minute - 1} {number(after)}x{end - minute}"


def rising(per_minute: float, end: int, start: float = 0) -> str:
    """A counter or gauge growing (or shrinking) by `per_minute` from the first sample: a straight line."""
    sign = "-" if per_minute < 0 else "+"
    return f"{number(start)}{sign}{number(abs(per_minute))}x{end}"


def counter_from(minute: int, per_minute: float, end: int) -> str:
    """0 up to minute-1, then a straight line from 0 (one increment of `per_minute` per sample from `minute` on)."""
    return f"0x{minute - 1} {number(per_minute)}+{number(per_minute)}x{end - minute}"


def constant(value: float, end: int) -> str:
    return f"{number(value)}x{end}"


def percent_above(threshold: float) -> int:
    """The smallest whole percent above a ratio threshold."""
    return math.floor(threshold * 100) + 1


def count_text(count: int) -> str:
    """How humanize prints a whole count: as is below 1000, else in k (callers keep counts whole thousands)."""
    return str(count) if count < 1000 else f"{count // 1000}k"


def whole_days_above(limit_seconds: float, later_minutes: int) -> int:
    """Whole days that exceed `limit_seconds` even `later_minutes` earlier (humanizeDuration: "Nd 0h 0m 0s")."""
    return int((limit_seconds + later_minutes * 60) // DAY) + 1


# --- cases -----------------------------------------------------------------------------

@dataclass
class Case:
    title: str
    series: dict[str, str]
    active_at: int | None = None  # minute the condition first holds; None for a healthy case
    labels: dict[str, str] = field(default_factory=dict)  # labels of the alert besides severity
    value: str = ""  # how the description prints $value when the alert fires


@dataclass
class Context:
    settings: Settings
    alert: Alert
    end: int  # last input sample, in minutes
    base: dict[str, str]  # job selector labels plus instance

    @property
    def window(self) -> int:
        """The recording rules' rate window, in minutes."""
        return max(1, seconds(self.settings.rate_window) // 60)

    @property
    def for_minutes(self) -> int:
        return math.ceil(seconds(self.alert.for_) / 60)

    def labels(self, **extra: str) -> dict[str, str]:
        return {**self.base, **extra}

    def series(self, name: str, **extra: str) -> str:
        labels = self.labels(**extra)
        return name + "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


SCENARIOS: dict[str, Callable[[Context], list[Case]]] = {}


def scenario(name: str):
    def register(function):
        SCENARIOS[name] = function
        return function
    return register


def _selector_labels(settings: Settings) -> dict[str, str]:
    pairs = re.findall(r'\s*([a-zA-Z_]\w*)\s*=\s*"([^"]*)"\s*(?:,|$)', settings.selector)
    rebuilt = ",".join(f'{key}="{value}"' for key, value in pairs)
    if rebuilt != re.sub(r"\s", "", settings.selector):
        raise SettingsError(f"rule tests need a selector of label=\"value\" pairs, got {settings.selector!r}")
    return dict(pairs)


# --- exporter -------------------------------------------------------------------------------

def _drops_to_zero(alert: str, name: str, fault: str, healthy: str) -> None:
    """The scenario of an alert on a 0/1 gauge: it fires when the gauge drops to 0, not while it stays 1."""
    def cases(c: Context) -> list[Case]:
        gauge = c.series(name)
        return [Case(fault, {gauge: steps(1, FAULT_AT, 0, c.end)}, FAULT_AT, c.labels()),
                Case(healthy, {gauge: constant(1, c.end)})]
    scenario(alert)(cases)


_drops_to_zero("DevFlowExporterDown", UP, "the scrape fails", "scrapes succeed")


@scenario("DevFlowExporterAbsent")
def _exporter_absent(c: Context) -> list[Case]:
    other = UP + '{job="node",instance="' + INSTANCE + '"}'
    return [Case("only other jobs are scraped", {other: constant(1, c.end)}, 0,
                 _selector_labels(c.settings)),
            Case("the exporter is scraped", {other: constant(1, c.end), c.series(UP): constant(1, c.end)})]


@scenario("DevFlowCollectorFailing")
def _collector_failing(c: Context) -> list[Case]:
    ok = c.series(catalog.COLLECTOR_SUCCESS.name, collector="process")
    failing = c.series(catalog.COLLECTOR_SUCCESS.name, collector="database")
    return [Case("the database collector fails", {ok: constant(1, c.end), failing: steps(1, FAULT_AT, 0, c.end)}, FAULT_AT,
                 c.labels(collector="database")),
            Case("every collector succeeds", {ok: constant(1, c.end), failing: constant(1, c.end)})]


# --- process ----------------------------------------------------------------------------------

_drops_to_zero("DevFlowProcessDown", catalog.PROCESS_UP.name, "the process exits", "the process runs")


@scenario("DevFlowPortNotListening")
def _port_not_listening(c: Context) -> list[Case]:
    up = c.series(catalog.PROCESS_UP.name)
    port = c.series(catalog.PROCESS_PORT_LISTENING.name, port="3000")
    return [Case("the port closes while the process runs", {up: constant(1, c.end), port: steps(1, FAULT_AT, 0, c.end)},
                 FAULT_AT, c.labels(port="3000")),
            Case("the port is listening", {up: constant(1, c.end), port: constant(1, c.end)}),
            Case("the process is down (DevFlowProcessDown says so)",
                 {up: constant(0, c.end), port: constant(0, c.end)})]


@scenario("DevFlowHighCpuUsage")
def _high_cpu(c: Context) -> list[Case]:
    # The rate ramps up over the window: `faulty` minutes of it are in the window when the alert fires.
    faulty = min(c.for_minutes + 1, c.window)
    pct = math.floor(c.alert.threshold * 100 * faulty) + 1  # so the first faulty minute alone crosses
    per_minute = pct / 100 * 60 * c.window / faulty  # CPU seconds a minute; the ratio reaches pct% at `for`
    user = c.series(catalog.PROCESS_CPU.name, mode="user")
    system = c.series(catalog.PROCESS_CPU.name, mode="system")
    busy = {user: counter_from(FAULT_AT, per_minute / 2, c.end), system: counter_from(FAULT_AT, per_minute / 2, c.end)}
    calm_cores = c.alert.threshold / 2
    calm = {user: rising(calm_cores * 60 / 2, c.end), system: rising(calm_cores * 60 / 2, c.end)}
    return [Case("an idle process starts using CPU above the threshold", busy, FAULT_AT, c.labels(),
                 f"{pct}%"),  # humanizePercentage
            Case("CPU at half the threshold", calm)]


@scenario("DevFlowHighMemoryUsage")
def _high_memory(c: Context) -> list[Case]:
    total = 100 * 1024 ** 3
    pct = percent_above(c.alert.threshold)
    rss = c.series(catalog.PROCESS_RSS.name)
    machine = c.series(catalog.HOST_MEMORY_TOTAL.name)
    return [Case("RSS grows above the threshold",
                 {rss: steps(total * c.alert.threshold / 2, FAULT_AT, total * pct / 100, c.end),
                  machine: constant(total, c.end)},
                 FAULT_AT, c.labels(), f"{pct}%"),  # humanizePercentage
            Case("RSS at half the threshold",
                 {rss: constant(total * c.alert.threshold / 2, c.end), machine: constant(total, c.end)})]


@scenario("DevFlowMemoryLeak")
def _memory_leak(c: Context) -> list[Case]:
    mib_per_hour = math.floor(c.alert.growth_bytes_per_hour / MIB) + 1
    window = seconds(c.alert.window)
    rss = c.series(catalog.PROCESS_RSS.name)
    started = c.series(catalog.PROCESS_START_TIME.name)
    old_process = constant(-2 * window, c.end)
    young_process = constant(c.end * 60, c.end)  # started after the last sample: still warming up
    growing = rising(mib_per_hour * MIB / 60, c.end, start=100 * MIB)
    return [Case("RSS of a long-running process grows steadily", {rss: growing, started: old_process}, 1,
                 c.labels(), f"{mib_per_hour}Mi"),  # humanize1024
            Case("RSS is flat", {rss: constant(100 * MIB, c.end), started: old_process}),
            Case("a process still warming up grows", {rss: growing, started: young_process})]


# --- logs -------------------------------------------------------------------------------------

def _log_lines(c: Context, file: str, level: str) -> str:
    return c.series(catalog.LOG_LINES.name, file=file, level=level)


@scenario("DevFlowHighErrorRate")
def _high_error_rate(c: Context) -> list[Case]:
    log = "/var/log/devflow/server.log"
    # Only error and fatal records from FAULT_AT on: the ratio is exactly 1 whatever the window holds.
    fault = {
        _log_lines(c, log, "info"): constant(0, c.end),
        _log_lines(c, log, "error"): counter_from(FAULT_AT, 60, c.end),
        _log_lines(c, log, "fatal"): counter_from(FAULT_AT, 40, c.end),
    }
    low = c.alert.threshold / 5
    healthy = {
        _log_lines(c, log, "info"): rising(1000 * (1 - low), c.end),
        _log_lines(c, log, "error"): rising(1000 * low, c.end),
    }
    return [Case("the server starts logging only errors and fatal records", fault, FAULT_AT, c.labels(),
                 "100%"),  # humanizePercentage
            Case("errors at a fifth of the threshold", healthy),
            Case("no log records at all", {_log_lines(c, log, "info"): constant(0, c.end)})]


@scenario("DevFlowErrorBurst")
def _error_burst(c: Context) -> list[Case]:
    burst = c.alert
    faulty = min(c.for_minutes + 1, max(1, seconds(burst.window) // 60))  # burst minutes in the window at `for`
    errors = burst.min_errors + 1  # per minute: the first minute of the burst alone is enough
    total = errors * faulty
    if total >= 1000:  # a whole number of thousands, which humanize prints as "Nk"
        total = math.ceil(total / 1000) * 1000
        errors = total / faulty
    others = errors * (1 / (2 * burst.min_ratio) - 1) if burst.min_ratio < 0.5 else 0
    log = "/tmp/devflow-monitor.err"
    fault = {_log_lines(c, log, "error"): counter_from(FAULT_AT, errors, c.end),
             _log_lines(c, log, "info"): counter_from(FAULT_AT, others, c.end)}
    # Many errors in absolute numbers, but a small share of a busy log: not "10 of the last 100 lines".
    busy = {_log_lines(c, log, "error"): rising(2 * errors, c.end),
            _log_lines(c, log, "info"): rising(2 * errors / (burst.min_ratio / 4), c.end)}
    return [Case("a burst of error records", fault, FAULT_AT, c.labels(), count_text(total)),  # humanize
            Case("errors are a small share of a busy log", busy)]


@scenario("DevFlowHttpErrorRate")
def _http_error_rate(c: Context) -> list[Case]:
    ok = c.series(catalog.HTTP_REQUESTS.name, code="2xx")
    failed = c.series(catalog.HTTP_REQUESTS.name, code="5xx")
    fault = {ok: constant(0, c.end), failed: counter_from(FAULT_AT, 100, c.end)}
    low = c.alert.threshold / 5
    healthy = {ok: rising(100 * (1 - low), c.end), failed: rising(100 * low, c.end)}
    return [Case("every request starts failing with 5xx", fault, FAULT_AT, c.labels(),
                 "100%"),  # humanizePercentage
            Case("5xx at a fifth of the threshold", healthy),
            Case("only 2xx answers", {ok: rising(100, c.end)})]


@scenario("DevFlowLogNotRotated")
def _log_not_rotated(c: Context) -> list[Case]:
    log = "/var/log/devflow/server.log"
    size = c.series(catalog.LOG_FILE_SIZE.name, file=log)
    rotations = c.series(catalog.LOG_ROTATIONS.name, file=log, kind="rename")
    big_mib = math.floor(c.alert.max_size_bytes / MIB) + 1
    big = big_mib * MIB
    return [Case("a large log file is never rotated", {size: constant(big, c.end)}, 0, c.labels(file=log),
                 f"{big_mib}Mi"),  # humanize1024
            # Rotated every minute, so no window is ever without a rotation, left edge or not.
            Case("a large log file is rotated regularly", {size: constant(big, c.end), rotations: rising(1, c.end)}),
            Case("a small log file", {size: constant(c.alert.max_size_bytes / 2, c.end)})]


# --- database and event flow ---------------------------------------------------------------------

@scenario("DevFlowDatabaseUnavailable")
def _database_unavailable(c: Context) -> list[Case]:
    up = c.series(catalog.DB_UP.name)
    ok = c.series(catalog.DB_STATE.name, state="ok")
    missing = c.series(catalog.DB_STATE.name, state="missing")
    return [Case("the database file disappears",
                 {up: steps(1, FAULT_AT, 0, c.end), ok: steps(1, FAULT_AT, 0, c.end), missing: steps(0, FAULT_AT, 1, c.end)},
                 FAULT_AT, c.labels(state="missing")),
            Case("the database cannot be read and no state is known", {up: steps(1, FAULT_AT, 0, c.end)}, FAULT_AT, c.labels()),
            Case("the database is readable", {up: constant(1, c.end), ok: constant(1, c.end),
                                               missing: constant(0, c.end)})]


_drops_to_zero("DevFlowDatabaseIntegrityFailed", catalog.DB_INTEGRITY_OK.name, "the integrity check fails",
               "the integrity check passes")


@scenario("DevFlowEventsNotPersisted")
def _events_not_persisted(c: Context) -> list[Case]:
    # "Events stop while the server keeps logging" is not a case: the ingest rate reaches 0 when the last
    # increment leaves the window, which Prometheus 3 sees one step before Prometheus 2.
    up = c.series(catalog.PROCESS_UP.name)
    db_up = c.series(catalog.DB_UP.name)
    events = c.series(catalog.EVENTS_INGESTED.name, type="file:changed")
    logs = _log_lines(c, "/tmp/devflow-monitor.err", "debug")
    monitor = c.series(catalog.APP_MONITOR_STATE.name, monitor="file", state="active")
    running = {up: constant(1, c.end), db_up: constant(1, c.end)}
    return [
        Case("the server becomes active again but stores no new event",
             {**running, events: constant(100, c.end), logs: counter_from(FAULT_AT, 50, c.end)}, FAULT_AT,
             c.labels(), "0"),  # humanize
        Case("the public build: it logs the file events it sees, its database stays empty",
             {**running, events: constant(0, c.end), logs: rising(50, c.end)}, 1, c.labels(), "0"),
        Case("events keep arriving", {**running, events: rising(30, c.end), logs: rising(50, c.end)}),
        Case("an idle developer: monitors active, neither events nor logs",
             {**running, monitor: constant(1, c.end), events: constant(100, c.end), logs: constant(100, c.end)}),
    ]


@scenario("DevFlowEventBacklogGrowing")
def _backlog_growing(c: Context) -> list[Case]:
    max_age = seconds(c.alert.max_pending_age)
    pending = c.series(catalog.OUTBOX_EVENTS.name, status="pending")
    oldest = c.series(catalog.OUTBOX_OLDEST_PENDING.name)
    return [Case("pending events pile up and the oldest is stuck",
                 {pending: rising(10, c.end), oldest: constant(-2 * max_age, c.end)}, 1,
                 c.labels(status="pending"), "600"),  # humanize: 10 a minute
            Case("pending events grow but keep flowing", {pending: rising(10, c.end), oldest: rising(60, c.end, -60)})]


@scenario("DevFlowDiskFillingUp")
def _disk_filling_up(c: Context) -> list[Case]:
    size = 100e9
    pct = max(1, math.floor(c.alert.max_free_ratio * 50))  # free at `for`: about half the limit
    fires = 1 + c.for_minutes
    drop = size * pct / 100 / (seconds(c.alert.horizon) / 60 / 2)  # a minute; empty in half the horizon
    free_start = size * pct / 100 + drop * fires
    free = c.series(catalog.DB_FS_FREE.name)
    total = c.series(catalog.DB_FS_SIZE.name)
    return [Case("free space shrinks steadily", {free: rising(-drop, c.end, free_start), total: constant(size, c.end)},
                 1, c.labels(), f"{pct}%"),  # humanizePercentage
            Case("free space is low but steady",
                 {free: constant(size * pct / 100, c.end), total: constant(size, c.end)})]


@scenario("DevFlowDiskSpaceLow")
def _disk_space_low(c: Context) -> list[Case]:
    size = 100e9
    free = c.series(catalog.DB_FS_FREE.name)
    total = c.series(catalog.DB_FS_SIZE.name)
    pct = max(0, math.ceil(c.alert.threshold * 100) - 1)
    return [Case("the disk fills up", {free: steps(size / 2, FAULT_AT, size * pct / 100, c.end),
                                       total: constant(size, c.end)},
                 FAULT_AT, c.labels(), f"{pct}%"),  # humanizePercentage
            Case("half the disk is free", {free: constant(size / 2, c.end), total: constant(size, c.end)})]


def _aged(c: Context, limit: int) -> tuple[float, str]:
    """A timestamp that is a whole number of days (more than `limit`) old when the alert fires, and its text."""
    days = whole_days_above(limit, c.for_minutes)
    return c.for_minutes * 60 - days * DAY, f"{days}d 0h 0m 0s"  # humanizeDuration


def _older_than(c: Context, name: str, limit: int, fault: str, healthy: str) -> list[Case]:
    """The alert on a timestamp gauge: it fires while the time is more than `limit` old, not once it is recent."""
    gauge = c.series(name)
    stamp, age = _aged(c, limit)
    return [Case(fault, {gauge: constant(stamp, c.end)}, 0, c.labels(), age),
            Case(healthy, {gauge: constant(-limit + c.end * 60 + 60, c.end)})]


@scenario("DevFlowRetentionNotApplied")
def _retention(c: Context) -> list[Case]:
    limit = seconds(c.alert.retention) + seconds(c.alert.margin)
    return _older_than(c, catalog.EVENTS_OLDEST.name, limit, "events older than the retention stay",
                       "the oldest event is within the retention")


@scenario("DevFlowBackupStale")
def _backup_stale(c: Context) -> list[Case]:
    return _older_than(c, catalog.BACKUP_LAST_SUCCESS.name, seconds(c.alert.max_age),
                       "the last backup is older than the limit", "a recent backup")


@scenario("DevFlowBackupMissing")
def _backup_missing(c: Context) -> list[Case]:
    max_age = seconds(c.alert.max_age)
    backup = c.series(catalog.BACKUP_LAST_SUCCESS.name)
    oldest = c.series(catalog.EVENTS_OLDEST.name)
    stamp, age = _aged(c, max_age)
    return [Case("old events and no backup ever", {oldest: constant(stamp, c.end)}, 0, c.labels(), age),
            Case("old events and a backup", {oldest: constant(stamp, c.end), backup: constant(0, c.end)}),
            Case("a new database", {oldest: constant(-max_age + c.end * 60 + 60, c.end)}),
            Case("an empty database (no oldest event)", {c.series(catalog.DB_UP.name): constant(1, c.end)})]


@scenario("DevFlowDatabaseFragmented")
def _fragmented(c: Context) -> list[Case]:
    page_size = 4096
    pages = 100 * math.ceil(4 * c.alert.min_size_bytes / page_size / 100)  # a multiple of 100: whole percents
    pct = min(100, percent_above(c.alert.max_free_ratio))
    series = {c.series(catalog.DB_PAGES.name): constant(pages, c.end),
              c.series(catalog.DB_PAGE_SIZE.name): constant(page_size, c.end)}
    freelist = c.series(catalog.DB_FREELIST_PAGES.name)
    small_pages = math.floor(c.alert.min_size_bytes / page_size / 2)
    small = {c.series(catalog.DB_PAGES.name): constant(small_pages, c.end),
             c.series(catalog.DB_PAGE_SIZE.name): constant(page_size, c.end),
             freelist: constant(math.floor(small_pages * pct / 100), c.end)}
    return [Case("a large file with many free pages",
                 {**series, freelist: steps(pages // 100, FAULT_AT, pages * pct // 100, c.end)},
                 FAULT_AT, c.labels(), f"{pct}%"),  # humanizePercentage
            Case("few free pages", {**series, freelist: constant(pages // 100, c.end)}),
            Case("a small file with many free pages", small)]


# --- probe ---------------------------------------------------------------------------------------

def _probe(c: Context, endpoint: str, state_from: str, state_to: str | None, minute: int) -> dict[str, str]:
    states = {}
    for state in ("ok", "no_listener", "timeout"):
        before = 1 if state == state_from else 0
        after = 1 if state == state_to else 0
        states[c.series(catalog.PROBE_STATE.name, endpoint=endpoint, state=state)] = steps(before, minute, after, c.end)
    success = steps(1 if state_from == "ok" else 0, minute, 1 if state_to == "ok" else 0, c.end)
    return {c.series(catalog.PROBE_SUCCESS.name, endpoint=endpoint): success, **states}


@scenario("DevFlowProbeFailing")
def _probe_failing(c: Context) -> list[Case]:
    cases = [Case("/health times out", _probe(c, "health", "ok", "timeout", FAULT_AT), FAULT_AT,
                  c.labels(endpoint="health", state="timeout")),
             Case("/health answers", _probe(c, "health", "ok", "ok", FAULT_AT))]
    no_listener = _probe(c, "health", "ok", "no_listener", FAULT_AT)
    if c.settings.app.expect_listener:
        cases.append(Case("nothing listens", no_listener, FAULT_AT, c.labels(endpoint="health", state="no_listener")))
    else:
        cases.append(Case("nothing listens, as in the public build", no_listener))
    return cases


@scenario("DevFlowProbeSlow")
def _probe_slow(c: Context) -> list[Case]:
    limit = c.alert.threshold
    slow = math.floor(limit) + 1  # whole seconds, humanizeDuration prints "Ns"
    bounds = (limit / 2, limit, slow, math.inf)

    def histogram(lower: float, begin: int | None) -> dict[str, str]:
        """60 probes a minute, all slower than `lower` and within the next bucket."""
        series = {}
        for bound in bounds:
            le = "+Inf" if math.isinf(bound) else number(bound)
            name = c.series(catalog.PROBE_DURATION.bucket, endpoint="status", le=le)
            counts = bound > lower
            series[name] = (counter_from(begin, 60, c.end) if begin else rising(60, c.end)) if counts \
                else constant(0, c.end)
        return series

    # Every probe slower than the last finite bucket: histogram_quantile returns that bucket's bound exactly.
    return [Case("/status slows down", histogram(slow, FAULT_AT), FAULT_AT, c.labels(endpoint="status"),
                 f"{slow}s"),  # humanizeDuration
            Case("/status answers within half the limit to the limit", histogram(limit / 2, None))]


# --- the test file -------------------------------------------------------------------------------

def _describe(text: str, labels: dict[str, str], value: str) -> str:
    """The description as Prometheus renders it for these labels and value."""
    text = re.sub(r"\{\{ with \$labels\.(\w+) \}\}\{\{ \. \}\}\{\{ else \}\}(.*?)\{\{ end \}\}",
                  lambda m: labels.get(m.group(1)) or m.group(2), text)
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)
    return re.sub(r"\{\{ \$value \| \w+ \}\}", value, text)


def _minutes(value: int) -> str:
    return f"{value}m"


def _silent(name: str, minute: int) -> dict:
    return {"eval_time": _minutes(minute), "alertname": name, "exp_alerts": []}


def _alert_tests(settings: Settings, name: str, rule: AlertRule) -> list[dict]:
    alert = settings.alerts[name]
    scenario_of = SCENARIOS.get(name)
    if scenario_of is None:
        raise AssertionError(f"no rule test scenario for {name}")
    for_minutes = math.ceil(seconds(alert.for_) / 60)
    window = max(1, seconds(settings.rate_window) // 60)
    end = for_minutes + 2 * window + 15
    context = Context(settings, alert, end, {**_selector_labels(settings), "instance": INSTANCE})
    cases = scenario_of(context)
    faults = [case for case in cases if case.active_at is not None]
    assert faults and len(faults) < len(cases), f"{name}: needs a fault case and a healthy case"
    tests = []
    for case in cases:
        # A healthy case is checked at the moments its alert's first fault case is.
        active_at = faults[0].active_at if case.active_at is None else case.active_at
        after = active_at + for_minutes
        assert after < end, f"{name}: {case.title} ends before its alert fires"
        evaluations = []
        if case.active_at:
            evaluations.append(_silent(name, case.active_at - STEP_MINUTES))
        evaluations.append(_silent(name, after - STEP_MINUTES))
        if case.active_at is None:
            evaluations += [_silent(name, after), _silent(name, end - STEP_MINUTES)]
        else:
            labels = {**case.labels, "severity": alert.severity}
            annotations = {
                "summary": rule.summary,
                "description": _describe(rule.description, labels, case.value),
                "runbook_url": settings.runbook(name),
            }
            evaluations.append({"eval_time": _minutes(after), "alertname": name,
                                "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}]})
        kind = "fires after its for" if case.active_at is not None else "stays silent"
        tests.append({
            "name": f"{name} {kind}: {case.title}",
            "interval": _minutes(STEP_MINUTES),
            "input_series": [{"series": series, "values": values} for series, values in case.series.items()],
            "alert_rule_test": evaluations,
        })
    return tests


def _recording_tests(settings: Settings) -> list[dict]:
    """The shared ratios, checked on their own: dashboards read them too."""
    names = recorded(settings)
    window = max(1, seconds(settings.rate_window) // 60)
    end = 2 * window + 10
    context = Context(settings, Alert(), end, {**_selector_labels(settings), "instance": INSTANCE})
    labels = context.labels()
    at = _minutes(window + 5)
    log = "/var/log/devflow/server.log"
    return [
        {"name": "recorded CPU ratio adds user and system time",
         "interval": _minutes(STEP_MINUTES),
         "input_series": [
             {"series": context.series(catalog.PROCESS_CPU.name, mode="user"), "values": rising(18, end)},
             {"series": context.series(catalog.PROCESS_CPU.name, mode="system"), "values": rising(12, end)}],
         "promql_expr_test": [{"expr": names.cpu_ratio, "eval_time": at,
                               "exp_samples": [{"labels": _labels(names.cpu_ratio, labels), "value": 0.5}]}]},
        {"name": "recorded error ratio is 0, not absent, while no error was logged",
         "interval": _minutes(STEP_MINUTES),
         "input_series": [{"series": _log_lines(context, log, "info"), "values": rising(60, end)}],
         "promql_expr_test": [{"expr": names.log_error_ratio, "eval_time": at,
                               "exp_samples": [{"labels": _labels(names.log_error_ratio, labels), "value": 0}]}]},
        {"name": "recorded ingest rate is 0 for a readable database without events, absent for an unreadable one",
         "interval": _minutes(STEP_MINUTES),
         "input_series": [
             {"series": context.series(catalog.DB_UP.name), "values": steps(1, window + 6, 0, end)}],
         "promql_expr_test": [
             {"expr": names.ingest_rate, "eval_time": at,
              "exp_samples": [{"labels": _labels(names.ingest_rate, labels), "value": 0}]},
             {"expr": names.ingest_rate, "eval_time": _minutes(window + 7), "exp_samples": []}]},
        {"name": "recorded memory ratio divides RSS by the machine's memory",
         "interval": _minutes(STEP_MINUTES),
         "input_series": [
             {"series": context.series(catalog.PROCESS_RSS.name), "values": constant(1024 ** 3, end)},
             {"series": context.series(catalog.HOST_MEMORY_TOTAL.name), "values": constant(4 * 1024 ** 3, end)}],
         "promql_expr_test": [{"expr": names.memory_ratio, "eval_time": at,
                               "exp_samples": [{"labels": _labels(names.memory_ratio, labels), "value": 0.25}]}]},
    ]


def _labels(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


def test_file(settings: Settings, rule_files: list[str], groups: list[str]) -> dict:
    """A promtool test file for `rule_files` (paths relative to the test file).

    `groups` fixes the evaluation order: recording rules first, so that an alert
    sees the ratio recorded at the same evaluation, not the one a minute older.
    """
    windows = {"rate_window": settings.rate_window}
    windows.update({f"alerts.{name}.window": getattr(alert, "window") for name, alert in settings.alerts.items()
                    if hasattr(alert, "window")})
    # A left-open range of a single step holds one sample, too few for rate() on Prometheus 3.
    short = [key for key, value in windows.items() if seconds(value) < 2 * 60 * STEP_MINUTES]
    if short:
        raise SettingsError(f"rule tests sample once a minute, so {', '.join(short)} must be at least 2m")
    tests = _recording_tests(settings)
    for name, rule in active_alerts(settings).items():
        tests.extend(_alert_tests(settings, name, rule))
    return {"rule_files": rule_files, "evaluation_interval": _minutes(STEP_MINUTES),
            "group_eval_order": groups, "tests": tests}
