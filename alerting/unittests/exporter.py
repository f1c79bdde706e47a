"""Rule tests of the exporter's own alerts: the scrape, the job's presence, each collector."""

from __future__ import annotations

from devflow_monitor.alerting.rules import UP
from devflow_monitor.alerting.unittests.cases import (FAULT_AT, INSTANCE, Case, Context, constant, drops_to_zero,
                                                      scenario, selector_labels, steps)
from devflow_monitor.core import catalog


drops_to_zero("DevFlowExporterDown", UP, "the scrape fails", "scrapes succeed")


@scenario("DevFlowExporterAbsent")
def _exporter_absent(c: Context) -> list[Case]:
    other = UP + '{job="node",instance="' + INSTANCE + '"}'
    return [Case("only other jobs are scraped", {other: constant(1, c.end)}, 0,
                 selector_labels(c.settings)),
            Case("the exporter is scraped", {other: constant(1, c.end), c.series(UP): constant(1, c.end)})]


@scenario("DevFlowCollectorFailing")
def _collector_failing(c: Context) -> list[Case]:
    ok = c.series(catalog.COLLECTOR_SUCCESS.name, collector="process")
    failing = c.series(catalog.COLLECTOR_SUCCESS.name, collector="database")
    return [Case("the database collector fails", {ok: constant(1, c.end), failing: steps(1, FAULT_AT, 0, c.end)}, FAULT_AT,
                 c.labels(collector="database")),
            Case("every collector succeeds", {ok: constant(1, c.end), failing: constant(1, c.end)})]
