"""The event queue: the durable `sync_status` outbox, and the app's in-memory queues when it reports them.

Sample output:

    devflow_event_queue_outbox_events{status="pending"} 1520.0
    devflow_event_queue_oldest_pending_timestamp_seconds 1.7956e+09
    devflow_event_queue_size{queue="default"} 12.0
    devflow_event_queue_dropped_total{queue="default"} 0.0

The in-memory queues are only visible through the app's `/status` (read by the
probe collector); without it (the public build) only the outbox is published.
Ingest lag is `time() - devflow_events_newest_timestamp_seconds`.
"""

from __future__ import annotations

from devflow_monitor.core import catalog
from devflow_monitor.core.config import Config
from devflow_monitor.exporter.collectors.base import Collector
from devflow_monitor.exporter.collectors.dbwatcher import DatabaseWatcher

QUEUES = ("default", "priority", "batch", "failed")
QUEUE_FIGURES = (("size", catalog.QUEUE_SIZE), ("enqueued", catalog.QUEUE_ENQUEUED),
                 ("dequeued", catalog.QUEUE_DEQUEUED), ("dropped", catalog.QUEUE_DROPPED),
                 ("failed", catalog.QUEUE_FAILED))


class EventQueueCollector(Collector):
    name = "eventqueue"

    def __init__(self, config: Config, watcher: DatabaseWatcher, probe=None):
        super().__init__()
        self.watcher = watcher
        self.probe = probe
        # The database collector's read already fetched the oldest pending row when it is on.
        self.own_read = not config.collectors.database.enabled
        self.workers.append(watcher.worker)

    def collect(self):
        outbox = self.watcher.read_outbox(query=self.own_read)
        if outbox["refreshed"]:
            family = catalog.OUTBOX_EVENTS.family(extra_help=self.watcher.cached_help)
            for status in ("pending", "failed"):
                family.add_metric([status], outbox["counts"].get(status, 0))
            yield family
        if isinstance(outbox["oldest_pending_ms"], (int, float)):
            family = catalog.OUTBOX_OLDEST_PENDING.family()
            family.add_metric([], outbox["oldest_pending_ms"] / 1000)
            yield family
        yield from self._app_queues()

    def _app_queues(self):
        status = getattr(self.probe, "last_status", None)
        queues = status.get("queue") if isinstance(status, dict) else None
        if not isinstance(queues, dict):
            return
        # Unknown queues fold into "other", summed so each label has one series.
        totals: dict[str, dict[str, float]] = {key: {} for key, _ in QUEUE_FIGURES}
        for queue, figures in queues.items():
            if not isinstance(figures, dict):
                continue
            label = queue if queue in QUEUES else "other"
            for key, _ in QUEUE_FIGURES:
                value = figures.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    totals[key][label] = totals[key].get(label, 0) + value
        for key, metric in QUEUE_FIGURES:
            if totals[key]:
                family = metric.family()
                for label, value in sorted(totals[key].items()):
                    family.add_metric([label], value)
                yield family
