"""The DevFlow SQLite database: its state, files, event counts, integrity check and last backup.

Sample output:

    devflow_db_up 1.0
    devflow_db_state{state="ok"} 1.0
    devflow_db_file_size_bytes{file="wal"} 4.1e+06
    devflow_events_ingested_total{type="git:commit"} 1520.0
    devflow_events_stored{type="git:commit"} 1498.0
    devflow_events_newest_timestamp_seconds 1.795693182961e+09

The figures come from `dbwatcher.DatabaseWatcher`, which reads the database without
ever getting in the writer's way; its docstring (and `dbcounts`') gives the measured
reason for each way it reads. Counts and the check result describe one file: they
disappear when the file is missing, unreadable or replaced, until the new file is
counted. A failed check publishes 0 only for corruption; an unreadable file is state
`unreadable`, not a failed check.
"""

from __future__ import annotations

from devflow_monitor.core import catalog
from devflow_monitor.core.config import Config
from devflow_monitor.core.devflow_db import EVENT_TYPES
from devflow_monitor.exporter.collectors.base import Collector
from devflow_monitor.exporter.collectors.dbcounts import Counts
from devflow_monitor.exporter.collectors.dbwatcher import STATES, DatabaseWatcher, Integrity


class DatabaseCollector(Collector):
    name = "database"

    def __init__(self, config: Config, watcher: DatabaseWatcher | None = None):
        super().__init__()
        self.watcher = watcher or DatabaseWatcher(config)
        self.workers.append(self.watcher.worker)

    def collect(self):
        data = self.watcher.read_scrape()
        state = data["state"]
        yield _gauge(catalog.DB_UP, 1.0 if state == "ok" else 0.0)
        states = catalog.DB_STATE.family()
        for name in STATES:
            states.add_metric([name], 1.0 if name == state else 0.0)
        yield states
        sizes = catalog.DB_FILE_SIZE.family()
        for name, size in data["files"].items():
            sizes.add_metric([name], size)
        yield sizes
        if data["filesystem"]:
            free, total = data["filesystem"]
            yield _gauge(catalog.DB_FS_FREE, free)
            yield _gauge(catalog.DB_FS_SIZE, total)
        if state == "ok":
            yield _gauge(catalog.DB_PAGES, data["pages"])
            yield _gauge(catalog.DB_PAGE_SIZE, data["page_size"])
            yield _gauge(catalog.DB_FREELIST_PAGES, data["freelist"])
            # Timestamps are integers in milliseconds; anything else in the column is not a time.
            for metric, value in ((catalog.EVENTS_NEWEST, data["newest_ms"]), (catalog.EVENTS_OLDEST, data["oldest_ms"])):
                if isinstance(value, (int, float)):
                    yield _gauge(metric, value / 1000)
        counts: Counts = data["counts"]
        if state == "ok" or data["ingested"]:
            # Known types and the types the table holds start at 0, so rate() sees their first increase.
            totals = {**dict.fromkeys(EVENT_TYPES, 0), **dict.fromkeys(counts.types, 0), **data["ingested"]}
            ingested = catalog.EVENTS_INGESTED.family()
            for label, total in sorted(totals.items()):
                ingested.add_metric([label], total)
            yield ingested
        if counts.timestamp:
            stored = catalog.EVENTS_STORED.family(extra_help=self.watcher.cached_help)
            for label, n in sorted(counts.types.items()):
                stored.add_metric([label], n)
            yield stored
            tables = catalog.DB_TABLE_ROWS.family(extra_help=self.watcher.cached_help)
            for table, n in sorted(counts.tables.items()):
                tables.add_metric([table], n)
            yield tables
            yield _gauge(catalog.DB_COUNTS_TIMESTAMP, counts.timestamp)
            yield _gauge(catalog.DB_COUNTS_DURATION, counts.duration)
        integrity: Integrity | None = data["integrity"]
        if integrity:
            yield _gauge(catalog.DB_INTEGRITY_OK, 1.0 if integrity.ok else 0.0)
            yield _gauge(catalog.DB_INTEGRITY_TIMESTAMP, integrity.timestamp)
            yield _gauge(catalog.DB_INTEGRITY_DURATION, integrity.duration)
        backup = self.watcher.backup_status()
        if backup:
            yield _gauge(catalog.BACKUP_LAST_SUCCESS, backup["timestamp"])
            yield _gauge(catalog.BACKUP_LAST_SIZE, backup["size_bytes"])


def _gauge(metric: catalog.Metric, value: float):
    family = metric.family()
    family.add_metric([], value)
    return family
