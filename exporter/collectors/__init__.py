"""Collectors: one module per thing watched, each failing alone.

Every collector is a `base.Collector`: a `name`, a `collect()` that yields fresh
metric families (built from `core.catalog` entries), its background `workers`
and a `healthy` flag. `CollectorSet` runs them for each scrape and adds
`devflow_exporter_collector_success` / `_duration_seconds`, so a collector that
raises (or is not healthy) costs its own series, never the scrape.
"""

from __future__ import annotations

import logging
import platform
import time

from devflow_monitor.core import __version__, catalog
from devflow_monitor.exporter.collectors.base import Collector

log = logging.getLogger(__name__)


class CollectorSet:
    """The prometheus_client collector that wraps every enabled DevFlow collector."""

    def __init__(self, collectors: list[Collector]):
        self.collectors = list(collectors)
        self.last_success: dict[str, bool] = {}

    def get(self, name: str):
        return next((c for c in self.collectors if c.name == name), None)

    def start(self) -> None:
        for collector in self.collectors:
            collector.start()

    def collect(self):
        success = catalog.COLLECTOR_SUCCESS.family()
        duration = catalog.COLLECTOR_DURATION.family()
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
            yield from families
            success.add_metric([collector.name], 1.0 if ok else 0.0)
            duration.add_metric([collector.name], time.perf_counter() - started)
        yield success
        yield duration
        info = catalog.EXPORTER_BUILD_INFO.family()
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info

    def stop(self) -> None:
        for collector in self.collectors:
            collector.stop()
