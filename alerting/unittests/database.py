"""Rule tests of the database and event-flow alerts: availability, integrity, persistence, backlog,
disk, retention, backups and fragmentation."""

from __future__ import annotations

import math

from devflow_monitor.alerting.unittests.cases import (DAY, FAULT_AT, Case, Context, constant, counter_from,
                                                      drops_to_zero, log_lines, percent_above, rising, scenario,
                                                      steps, whole_days_above)
from devflow_monitor.core.settings import seconds
from devflow_monitor.core import catalog


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


drops_to_zero("DevFlowDatabaseIntegrityFailed", catalog.DB_INTEGRITY_OK.name, "the integrity check fails",
               "the integrity check passes")


@scenario("DevFlowEventsNotPersisted")
def _events_not_persisted(c: Context) -> list[Case]:
    # "Events stop while the server keeps logging" is not a case: the ingest rate reaches 0 when the last
    # increment leaves the window, which Prometheus 3 sees one step before Prometheus 2.
    up = c.series(catalog.PROCESS_UP.name)
    db_up = c.series(catalog.DB_UP.name)
    events = c.series(catalog.EVENTS_INGESTED.name, type="file:changed")
    logs = log_lines(c, "/tmp/devflow-monitor.err", "debug")
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
