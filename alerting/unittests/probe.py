"""Rule tests of the health probe alerts: a failing endpoint and a slow one."""

from __future__ import annotations

import math

from devflow_monitor.alerting.rules import number
from devflow_monitor.alerting.unittests.cases import (FAULT_AT, Case, Context, constant, counter_from, rising,
                                                      scenario, steps)
from devflow_monitor.core import catalog


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
