"""Collectors: one module per thing watched, each failing alone.

Every collector is a `base.Collector`: a `name`, a `collect()` that yields fresh
metric families (built from `core.catalog` entries), its background `workers`
and a `healthy` flag. `CollectorSet` runs them for each scrape and adds
`devflow_exporter_collector_success` / `_duration_seconds`, so a collector that
raises (or is not healthy) costs its own series, never the scrape.

Next to the exporter's build info it publishes `devflow_target_mode`, whatever
collectors run, and it hands the logs collector's `fatal` counts to the process
collector, which tells a crash from a clean exit by them.
"""

from __future__ import annotations

import logging
import platform
import time

from devflow_monitor.core import __version__, catalog
from devflow_monitor.core.config import MODES
from devflow_monitor.exporter.collectors.base import Collector

log = logging.getLogger(__name__)


class CollectorSet:
    """The prometheus_client collector that wraps every enabled DevFlow collector."""

    def __init__(self, collectors: list[Collector], mode: str = "daemon"):
        self.collectors = list(collectors)
        self.mode = mode  # devflow.mode: how the watched server is run
        self.last_success: dict[str, bool] = {}

    def get(self, name: str):
        return next((c for c in self.collectors if c.name == name), None)

    def start(self) -> None:
        for collector in self.collectors:
            collector.start()

    def collect(self):
        success = catalog.COLLECTOR_SUCCESS.family()
        duration = catalog.COLLECTOR_DURATION.family()
        fatal = None  # the logs collector's fatal records by file, when it succeeded
        for collector in self.collectors:
            started = time.perf_counter()
            families, ok = [], True
            try:
                # Keep what was yielded before a failure: partial data beats none.
                for family in collector.collect():
                    families.append(family)
            except Exception:  # one collector's bug must not fail the scrape
                ok = False
                log.exception("collector %s failed", collector.name)
            ok = ok and collector.healthy
            self.last_success[collector.name] = ok
            if collector.name == "logs" and ok:
                fatal = fatal_by_file(families)
            yield from families
            success.add_metric([collector.name], 1.0 if ok else 0.0)
            duration.add_metric([collector.name], time.perf_counter() - started)
        yield success
        yield duration
        info = catalog.EXPORTER_BUILD_INFO.family()
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info
        mode = catalog.TARGET_MODE.family()
        for name in MODES:
            mode.add_metric([name], 1.0 if name == self.mode else 0.0)
        yield mode
        self._hand_over_log_records(fatal)

    def _hand_over_log_records(self, fatal: dict[str, float] | None) -> None:
        process = self.get("process")
        if process is None:
            return
        try:
            process.log_records(fatal)
        except Exception:  # costs the crash judgement its log evidence, never the scrape
            log.exception("handing the logs' fatal records to the process collector failed")

    def stop(self) -> None:
        for collector in self.collectors:
            collector.stop()


def fatal_by_file(families) -> dict[str, float]:
    """`devflow_log_lines_total{level="fatal"}` by file, from the logs collector's families of one scrape."""
    return {sample.labels["file"]: sample.value for family in families for sample in family.samples
            if sample.name == catalog.LOG_LINES.name and sample.labels.get("level") == "fatal"}
