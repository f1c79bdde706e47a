"""The terminal dashboard's views (overview, performance, errors, activity): rows of label, value, level, trend.

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
condition as `core/persistence.py` judges it for `/status` and `doctor` too: yellow
"pending (3 of 15 min)" while the alert would be pending, red once it would fire.
Errors are the records whose level matches the settings' `app.error_levels`, as
in the rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from devflow_monitor.core.settings import Settings, seconds
from devflow_monitor.core import catalog as c
from devflow_monitor.core import persistence
from devflow_monitor.ops import common
from devflow_monitor.ops.dashboard_history import History, ratio
from devflow_monitor.ops.dashboard_sources import Snapshot

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
                             window=persistence.Window.from_settings(settings),
                             process_start=s.value(c.PROCESS_START_TIME.name))


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
        _event_storage_row(events),
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


def _event_storage_row(events: persistence.Verdict) -> Row:
    """Red once DevFlowEventsNotPersisted would fire, yellow while it is pending (its summary says how long)."""
    if events.state == persistence.NOT_PERSISTING:
        return Row("event storage", "NOT PERSISTING: " + events.summary, "crit")
    if events.state == persistence.PENDING:
        return Row("event storage", events.summary, "warn")
    return Row("event storage", f"{events.state}: {events.summary}",
               None if events.state == persistence.UNKNOWN else "ok")


def performance(h: History, settings: Settings) -> list[Row]:
    s, alerts, checklist = h.last, settings.alerts, settings.checklist
    cpu_trend = [None if v is None else 100 * v for v in h.rate_trend(c.PROCESS_CPU.name)]
    cpu = cpu_trend[-1] if cpu_trend else None
    rss = s.value(c.PROCESS_RSS.name)
    machine = s.value(c.HOST_MEMORY_TOTAL.name)
    rss_share = ratio(rss, machine)
    latency = h.ratio_trend((c.HTTP_DURATION.sum, {}), (c.HTTP_DURATION.count, {}))
    probe = h.ratio_trend((c.PROBE_DURATION.sum, {}), (c.PROBE_DURATION.count, {}))
    rss_percent = None if rss_share is None else 100 * rss_share
    rss_level = level_for(rss_percent, None, 100 * alerts["DevFlowHighMemoryUsage"].threshold)
    slow_ms = 1000 * alerts["DevFlowProbeSlow"].threshold
    wal = s.value(c.DB_FILE_SIZE.name, file="wal")
    pages, free_pages = s.value(c.DB_PAGES.name), s.value(c.DB_FREELIST_PAGES.name)
    free_disk = ratio(s.value(c.DB_FS_FREE.name), s.value(c.DB_FS_SIZE.name))
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
        Row("database", _database_size(s)
            + (f", {100 * free_pages / pages:.0f}% free pages" if pages and free_pages is not None else ""),
            level_for(wal, checklist.wal_size_bytes, None)),
        Row("free disk", _fmt(None if free_disk is None else 100 * free_disk, "{:.1f}%"),
            level_below(free_disk, checklist.disk_free_ratio, alerts["DevFlowDiskSpaceLow"].threshold)),
    ]


def _database_size(s: Snapshot) -> str:
    """The whole size first (the file with its -wal and -shm: a server that never checkpoints keeps its data
    in the WAL), then the parts."""
    parts = {labels.get("file"): value for labels, value in s.series(c.DB_FILE_SIZE.name)}
    if not parts:
        return "-"
    names = {"db": "file", "wal": "WAL", "shm": "SHM"}
    return (f"{common.human_bytes(sum(parts.values()))} ("
            + ", ".join(f"{names.get(f, f)} {common.human_bytes(v)}" for f, v in parts.items()) + ")")


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
    share = ratio(used, total)
    if share is None:
        return Row("memory (app)", "unknown (no /status)")
    return Row("memory (app)", f"{common.human_bytes(used)} of {common.human_bytes(total)} ({100 * share:.0f}%)",
               level_for(share, settings.checklist.memory_ratio, None), [ratio(u, t) for u, t in zip(
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
