"""Exporter: is the monitoring itself working? Scrapes, collectors and their background work."""

from grafanalib.core import Dashboard

from devflow_monitor.core.settings import Settings
from devflow_monitor.core import catalog
from devflow_monitor.dashboards import grafana as G
from devflow_monitor.dashboards.grafana import age, rate, row, series, target


def dashboard(settings: Settings) -> Dashboard:
    return G.dashboard(
        "devflow-exporter", "DevFlow / Exporter",
        "Health of devflow-monitor itself: whether Prometheus reaches it, what each scrape costs, which "
        "collectors fail, and how fresh its background counts, integrity checks and log offsets are.",
        row(
            "Scrapes",
            G.state_stat("Exporter", "Whether Prometheus' last scrape of the exporter succeeded.",
                         target(series(G.TARGET_UP), "{{instance}}")),
            G.stat("Version", "Exporter version and the Python running it.",
                   target(series(catalog.EXPORTER_BUILD_INFO), "{{version}} (Python {{python_version}})"),
                   unit="none", text="name", w=8),
            G.stat("Failing collectors", "Collectors whose last run failed (the scrape still succeeds).",
                   target(f"sum by (instance) (1 - {series(catalog.COLLECTOR_SUCCESS)})", "{{instance}}"),
                   unit="none", thresholds=G.ANY_IS_BAD, background=True),
            G.stat("Last scrape", "Time Prometheus' last scrape of the exporter took.",
                   target(series(G.SCRAPE_DURATION), "{{instance}}"), unit="s", sparkline=True),
            G.stat("Samples per scrape", "Samples in the last scrape; a jump means a label grew new values.",
                   target(series(G.SCRAPE_SAMPLES), "{{instance}}"), unit="short", sparkline=True),
            G.timeseries("Scrape duration", "Time each scrape of the exporter took, as Prometheus measured it.",
                         target(series(G.SCRAPE_DURATION), "{{instance}}"), unit="s", min=0),
            G.timeseries("Collector duration", "Time each collector's last run took within the scrape.",
                         target(series(catalog.COLLECTOR_DURATION), "{{collector}} {{instance}}"),
                         unit="s", stack=True, min=0),
            G.state_timeline("Collector success", "Each collector's result over time; a failing collector "
                             "costs only its own series.",
                             target(series(catalog.COLLECTOR_SUCCESS), "{{collector}} {{instance}}"),
                             mappings=G.OK_FAILED, thresholds=G.UP_IS_GOOD),
        ),
        row(
            "Background database work",
            G.stat("Counts refreshed", "Time since the background full count (rows per table, events per "
                   "type, outbox) last finished.",
                   target(age(catalog.DB_COUNTS_TIMESTAMP), "{{instance}}"), unit="dtdurations"),
            G.stat("Count duration", "How long the last background full count took.",
                   target(series(catalog.DB_COUNTS_DURATION), "{{instance}}"), unit="s"),
            G.state_stat("Integrity check", "Result of the last scheduled integrity check.",
                         target(series(catalog.DB_INTEGRITY_OK), "{{instance}}"), mappings=G.OK_FAILED),
            G.stat("Integrity checked", "Time since the last scheduled integrity check finished.",
                   target(age(catalog.DB_INTEGRITY_TIMESTAMP), "{{instance}}"), unit="dtdurations"),
            G.stat("Integrity check duration", catalog.DB_INTEGRITY_DURATION.help,
                   target(series(catalog.DB_INTEGRITY_DURATION), "{{instance}}"), unit="s"),
            G.stat("Last backup", "Time since `devflow-monitor backup` last succeeded.",
                   target(age(catalog.BACKUP_LAST_SUCCESS), "{{instance}}"), unit="dtdurations"),
            G.stat("Last backup size", "Size of the last successful backup.",
                   target(series(catalog.BACKUP_LAST_SIZE), "{{instance}}"), unit="bytes"),
            G.stat("Database pages", catalog.DB_PAGES.help,
                   target(series(catalog.DB_PAGES), "pages {{instance}}"), unit="short"),
            G.stat("Page size", catalog.DB_PAGE_SIZE.help,
                   target(series(catalog.DB_PAGE_SIZE), "{{instance}}"), unit="bytes"),
        ),
        row(
            "Log tailing",
            G.timeseries("Log bytes read", "Bytes per second the exporter read from each log file.",
                         target(f"sum by (file) ({rate(catalog.LOG_BYTES)})", "{{file}}"), unit="Bps", min=0, w=8),
            G.timeseries("Log file size", "Current size of each watched log file.",
                         target(series(catalog.LOG_FILE_SIZE), "{{file}}"), unit="bytes", min=0, w=8),
            G.timeseries("Log rotations", "Rotations the exporter followed, by file and kind (rename or "
                         "truncate), per second.",
                         target(f"sum by (file, kind) ({rate(catalog.LOG_ROTATIONS)})", "{{kind}} {{file}}"),
                         unit="ops", min=0, w=8),
            G.bargauge("Time since last write", "Time since each log file was last modified; a file that is "
                       "never rotated or never written shows here.",
                       target(age(catalog.LOG_FILE_MODIFIED), "{{file}}", instant=True), unit="dtdurations", w=24, h=6),
        ),
    )
