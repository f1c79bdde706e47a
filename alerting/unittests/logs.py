"""Rule tests of the log alerts: error share, error bursts, HTTP 5xx, unrotated files."""

from __future__ import annotations

import math

from devflow_monitor.alerting.unittests.cases import (FAULT_AT, MIB, Case, Context, constant, count_text,
                                                      counter_from, log_lines, rising, scenario)
from devflow_monitor.core.settings import seconds
from devflow_monitor.core import catalog


@scenario("DevFlowHighErrorRate")
def _high_error_rate(c: Context) -> list[Case]:
    log = "/var/log/devflow/server.log"
    # Only error and fatal records from FAULT_AT on: the ratio is exactly 1 whatever the window holds.
    fault = {
        log_lines(c, log, "info"): constant(0, c.end),
        log_lines(c, log, "error"): counter_from(FAULT_AT, 60, c.end),
        log_lines(c, log, "fatal"): counter_from(FAULT_AT, 40, c.end),
    }
    low = c.alert.threshold / 5
    healthy = {
        log_lines(c, log, "info"): rising(1000 * (1 - low), c.end),
        log_lines(c, log, "error"): rising(1000 * low, c.end),
    }
    return [Case("the server starts logging only errors and fatal records", fault, FAULT_AT, c.labels(),
                 "100%"),  # humanizePercentage
            Case("errors at a fifth of the threshold", healthy),
            Case("no log records at all", {log_lines(c, log, "info"): constant(0, c.end)})]


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
    fault = {log_lines(c, log, "error"): counter_from(FAULT_AT, errors, c.end),
             log_lines(c, log, "info"): counter_from(FAULT_AT, others, c.end)}
    # Many errors in absolute numbers, but a small share of a busy log: not "10 of the last 100 lines".
    busy = {log_lines(c, log, "error"): rising(2 * errors, c.end),
            log_lines(c, log, "info"): rising(2 * errors / (burst.min_ratio / 4), c.end)}
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
