"""Rule tests of the health probe alerts: a failing endpoint and a slow one."""

from __future__ import annotations

import math

from devflow_monitor.alerting.rules import number
from devflow_monitor.alerting.unittests.cases import (FAULT_AT, Case, Context, constant, counter_from, rising,
                                                      scenario, steps, until)
from devflow_monitor.core import catalog


def _probe(c: Context, endpoint: str, state_from: str, state_to: str | None, minute: int) -> dict[str, str]:
    states = {}
    for state in ("ok", "no_listener", "timeout"):
        before = 1 if state == state_from else 0
        after = 1 if state == state_to else 0
        states[c.series(catalog.PROBE_STATE.name, endpoint=endpoint, state=state)] = steps(before, minute, after, c.end)
    success = steps(1 if state_from == "ok" else 0, minute, 1 if state_to == "ok" else 0, c.end)
    return {c.series(catalog.PROBE_SUCCESS.name, endpoint=endpoint): success, **states}


def _process(c: Context, up: str) -> dict[str, str]:
    return {c.series(catalog.PROCESS_UP.name): up}


@scenario("DevFlowProbeFailing")
def _probe_failing(c: Context) -> list[Case]:
    running = _process(c, constant(1, c.end))
    cases = [Case("/health times out", {**_probe(c, "health", "ok", "timeout", FAULT_AT), **running}, FAULT_AT,
                  c.labels(endpoint="health", state="timeout")),
             Case("/health times out on an exporter without the process collector",
                  _probe(c, "health", "ok", "timeout", FAULT_AT), FAULT_AT, c.labels(endpoint="health", state="timeout")),
             Case("/health answers", {**_probe(c, "health", "ok", "ok", FAULT_AT), **running})]
    no_listener = {**_probe(c, "health", "ok", "no_listener", FAULT_AT), **running}
    if c.settings.app.expect_listener:
        cases.append(Case("nothing listens", no_listener, FAULT_AT, c.labels(endpoint="health", state="no_listener")))
    else:
        cases.append(Case("nothing listens, as in the public build", no_listener))
    # The server is gone (its client closed it, or it crashed): what the probe finds then is not an alert of
    # its own. Nothing listens where a listener is expected; a probe caught by the exit fails otherwise.
    gone = "no_listener" if c.settings.app.expect_listener else "timeout"
    cases.append(Case("the server process exits", {**_probe(c, "health", "ok", gone, FAULT_AT),
                                                   **_process(c, steps(1, FAULT_AT, 0, c.end))}))
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

    # The process exits two minutes after the alert fires: no probe is timed any more, the slow ones stay in
    # the rate window, and the alert resolves at the exit.
    exit_at = FAULT_AT + c.for_minutes + 2
    exits = {name: until(values, exit_at, c.end) for name, values in histogram(slow, FAULT_AT).items()}
    running = _process(c, constant(1, c.end))
    # Every probe slower than the last finite bucket: histogram_quantile returns that bucket's bound exactly.
    return [Case("/status slows down", {**histogram(slow, FAULT_AT), **running}, FAULT_AT,
                 c.labels(endpoint="status"), f"{slow}s"),  # humanizeDuration
            Case("/status slows down, then the server process exits",
                 {**exits, **_process(c, steps(1, exit_at, 0, c.end))}, FAULT_AT, c.labels(endpoint="status"),
                 f"{slow}s", resolves_at=exit_at),  # humanizeDuration
            Case("/status answers within half the limit to the limit", {**histogram(limit / 2, None), **running})]
