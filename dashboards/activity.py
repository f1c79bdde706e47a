"""Activity: the guide's `--view=activity`: what DevFlow recorded, and what waits to be synced."""

from grafanalib.core import Dashboard

from devflow_monitor.core.settings import Settings
from devflow_monitor.core import catalog
from devflow_monitor.dashboards import grafana as G, states as S
from devflow_monitor.dashboards.grafana import age, rate, row, series, target

# Per instance (job and instance), with one "(none)" bar of 0 while the database holds no events.
STORED_BY_TYPE = S.zero_while_readable(series(catalog.EVENTS_STORED), by=("job", "instance"), label="type")


def dashboard(settings: Settings) -> Dashboard:
    steps, retention = G.steps(settings), settings.alerts["DevFlowRetentionNotApplied"].retention
    return G.dashboard(
        "devflow-activity", "DevFlow / Activity",
        "Events DevFlow stored (file, git, test and AI events, by type), how fresh the newest one is, the "
        "sync_status outbox and the in-memory queues the app reports on /status.",
        row(
            "Events",
            G.timeseries("Events ingested by type", "Events written to the database per minute, by type "
                         "(unknown types fold into one value); 0 while the database is readable and no event "
                         "was ever written.",
                         target(S.zero_while_readable(f"sum by (type) ({rate(catalog.EVENTS_INGESTED)}) * 60",
                                                      by=(), label="type"), "{{type}}"),
                         unit="cpm", stack=True, bars=True, min=0, w=16),
            G.stat("Newest event", "Time since the newest stored event. It keeps growing while the app runs "
                   "and its monitors log events if storage is broken (the public build's defect).",
                   target(age(catalog.EVENTS_NEWEST), "{{instance}}"), unit="dtdurations", w=4),
            G.stat("Oldest event", f"Age of the oldest stored event; above {retention} the guide's retention "
                   "(maintenance) has not run.",
                   target(age(catalog.EVENTS_OLDEST), "{{instance}}"), unit="dtdurations",
                   thresholds=steps.event_age, w=4),
            G.stat("Events stored", "Rows in the events table: 0 while the database is readable and holds "
                   "none, which a running server with active monitors should never show (the public build's "
                   "storage defect).",
                   target(S.zero_while_readable(f"sum by (instance) ({series(catalog.EVENTS_STORED)})"),
                          "{{instance}}"),
                   unit="short", sparkline=True, w=4),
            G.stat("Events per hour", "Events written per hour at the current pace: the guide's "
                   "analyze-performance.sh figure.",
                   target(S.zero_while_readable(f"sum by (instance) ({rate(catalog.EVENTS_INGESTED)}) * 3600"),
                          "{{instance}}"),
                   unit="short", w=4),
            G.bargauge("Events stored by type", "Rows in the events table per event type; one bar of 0, "
                       f"\"{S.NONE}\", while the database is readable and holds no events.",
                       target(f"sort_desc({STORED_BY_TYPE})", "{{type}}"),
                       unit="short", w=12),
            G.bargauge("Rows per table", "Rows in each table of the DevFlow database.",
                       target(f"sort_desc({series(catalog.DB_TABLE_ROWS)})", "{{table}}", instant=True),
                       unit="short", w=12),
        ),
        row(
            "Outbox (sync_status)",
            G.timeseries("Outbox", "Events waiting to be synced (pending) and events whose sync failed.",
                         target(series(catalog.OUTBOX_EVENTS), "{{status}} {{instance}}"),
                         unit="short", min=0, w=16),
            G.stat("Oldest pending", "Time the oldest pending event has waited in the outbox.",
                   target(age(catalog.OUTBOX_OLDEST_PENDING), "{{instance}}"), unit="dtdurations", w=8),
            G.stat("Sync failed", "Events marked failed in the outbox.",
                   target(series(catalog.OUTBOX_EVENTS, 'status="failed"'), "{{instance}}"),
                   unit="short", thresholds=G.ANY_IS_BAD, w=8),
        ),
        row(
            "In-memory queues (from the app's /status)",
            G.timeseries("Queue size", "Entries in each in-memory queue (default 5000, priority 1000, "
                         "batch 10000, failed 1000 entries before the oldest are dropped).",
                         target(series(catalog.QUEUE_SIZE), "{{queue}} {{instance}}"), unit="short", min=0, w=8),
            G.timeseries("Queue throughput", "Entries enqueued and dequeued per second, by queue.",
                         target(f"sum by (instance, queue) ({rate(catalog.QUEUE_ENQUEUED)})",
                                "enqueued {{queue}} {{instance}}"),
                         target(f"sum by (instance, queue) ({rate(catalog.QUEUE_DEQUEUED)})",
                                "dequeued {{queue}} {{instance}}"),
                         unit="ops", min=0, w=8),
            G.timeseries("Queue losses", "Entries dropped because a queue was full, and entries that failed "
                         "processing, per second.",
                         target(f"sum by (instance, queue) ({rate(catalog.QUEUE_DROPPED)})",
                                "dropped {{queue}} {{instance}}"),
                         target(f"sum by (instance, queue) ({rate(catalog.QUEUE_FAILED)})",
                                "failed {{queue}} {{instance}}"),
                         unit="ops", min=0, w=8),
        ),
    )
