"""Every metric the exporter publishes: name, type, help and labels, in one place.

Collectors build their families from these entries; dashboards/ and alerting/
import the same objects, so renaming a metric here breaks their tests instead
of silently emptying a panel or a rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "gauge", "counter" or "histogram"
    help: str
    labels: tuple[str, ...] = ()

    # Sample names as PromQL sees them, so rules never build names from strings.
    @property
    def bucket(self) -> str:
        return self.name + "_bucket"

    @property
    def sum(self) -> str:
        return self.name + "_sum"

    @property
    def count(self) -> str:
        return self.name + "_count"

    def family(self, *, extra_help: str = ""):
        """A fresh, empty metric family for one scrape."""
        doc = self.help + extra_help
        if self.kind == "gauge":
            return GaugeMetricFamily(self.name, doc, labels=self.labels)
        if self.kind == "counter":
            return CounterMetricFamily(self.name, doc, labels=self.labels)
        if self.kind == "histogram":
            return HistogramMetricFamily(self.name, doc, labels=self.labels)
        raise ValueError(f"unknown metric kind {self.kind!r}")


def _gauge(name, help, *labels):
    return Metric(name, "gauge", help, labels)


def _counter(name, help, *labels):
    assert name.endswith("_total"), name
    return Metric(name, "counter", help, labels)


def _histogram(name, help, *labels):
    return Metric(name, "histogram", help, labels)


# --- exporter itself -------------------------------------------------------
EXPORTER_BUILD_INFO = _gauge(
    "devflow_exporter_build_info", "Exporter version; always 1.", "version", "python_version")
COLLECTOR_SUCCESS = _gauge(
    "devflow_exporter_collector_success",
    "1 if the collector's last run succeeded, 0 if it failed (the scrape still succeeds).", "collector")
COLLECTOR_DURATION = _gauge(
    "devflow_exporter_collector_duration_seconds", "Time the collector's last run took.", "collector")

# --- process ----------------------------------------------------------------
PROCESS_UP = _gauge("devflow_process_up", "1 if a DevFlow server process was found, else 0.")
TARGET_MODE = _gauge(
    "devflow_target_mode",
    "1 for how the watched server is run (devflow.mode): daemon, a unit whose absence is an outage, or "
    "on_demand, started and stopped by its MCP client, whose absence is normal; 0 for the other.", "mode")
PROCESS_EXITS = _counter(
    "devflow_process_exits_total",
    "Exits of the server seen since the exporter started: clean, or crash (its client still running after it, "
    "or crash output in its log at the exit).", "reason")
PROCESS_LAST_EXIT = _gauge(
    "devflow_process_last_exit_timestamp_seconds", "When the server was last seen to exit, since the epoch.")
PROCESS_MATCHES = _gauge(
    "devflow_process_matches",
    "Processes matching the pidfile, command-line pattern or port (while one runs, a second is looked for "
    "every 10 scan intervals).")
PROCESS_CPU = _counter(
    "devflow_process_cpu_seconds_total", "CPU time used by the DevFlow process, by mode.", "mode")
PROCESS_RSS = _gauge("devflow_process_resident_memory_bytes", "Resident memory of the DevFlow process.")
PROCESS_VMS = _gauge("devflow_process_virtual_memory_bytes", "Virtual memory of the DevFlow process.")
PROCESS_THREADS = _gauge("devflow_process_threads", "Threads of the DevFlow process.")
PROCESS_OPEN_FDS = _gauge("devflow_process_open_fds", "Open file descriptors of the DevFlow process.")
PROCESS_MAX_FDS = _gauge("devflow_process_max_fds", "File descriptor limit of the DevFlow process.")
PROCESS_START_TIME = _gauge(
    "devflow_process_start_time_seconds", "Start time of the DevFlow process since the epoch.")
PROCESS_SOCKETS = _gauge(
    "devflow_process_open_sockets",
    "Sockets (TCP, UDP and Unix) the DevFlow process holds open, counted from its fds: reading "
    "/proc/net/tcp instead would cost milliseconds per scrape.")
PROCESS_PORT_LISTENING = _gauge(
    "devflow_process_port_listening",
    "1 if something listens on the DevFlow port (checked at each scrape).", "port")
DB_CONNECTIONS = _gauge(
    "devflow_db_connections", "Handles the DevFlow process holds open on its database file.")

# --- database ---------------------------------------------------------------
DB_UP = _gauge("devflow_db_up", "1 if the database could be read on this scrape, else 0.")
DB_STATE = _gauge(
    "devflow_db_state",
    "1 for the database's current state: ok, missing, locked, corrupt or unreadable.", "state")
DB_FILE_SIZE = _gauge(
    "devflow_db_file_size_bytes", "Size of the database file and its -wal and -shm files.", "file")
DB_PAGES = _gauge("devflow_db_pages", "Pages in the database file (PRAGMA page_count).")
DB_PAGE_SIZE = _gauge("devflow_db_page_size_bytes", "Database page size (PRAGMA page_size).")
DB_FREELIST_PAGES = _gauge(
    "devflow_db_freelist_pages", "Unused pages in the database file (PRAGMA freelist_count).")
DB_TABLE_ROWS = _gauge("devflow_db_table_rows", "Rows per table.", "table")
DB_COUNTS_TIMESTAMP = _gauge(
    "devflow_db_counts_refresh_timestamp_seconds",
    "When the background count (rows per table, events per type, outbox) of the current file last finished.")
DB_COUNTS_DURATION = _gauge(
    "devflow_db_counts_refresh_duration_seconds", "How long the last background count took.")
EVENTS_STORED = _gauge("devflow_events_stored", "Rows in the events table, by event type.", "type")
EVENTS_INGESTED = _counter(
    "devflow_events_ingested_total",
    "Events written to the events table since the exporter first saw the file, by type, read "
    "incrementally by id. Deletions never decrease it.", "type")
EVENTS_NEWEST = _gauge(
    "devflow_events_newest_timestamp_seconds", "Timestamp of the newest stored event.")
EVENTS_OLDEST = _gauge(
    "devflow_events_oldest_timestamp_seconds", "Timestamp of the oldest stored event.")
DB_INTEGRITY_OK = _gauge(
    "devflow_db_integrity_check_ok",
    "1 if the last scheduled integrity check of the current file passed, 0 if it found corruption; absent while "
    "the file is missing, unreadable or replaced and not yet checked.")
DB_INTEGRITY_TIMESTAMP = _gauge(
    "devflow_db_integrity_check_timestamp_seconds", "When the last scheduled integrity check finished.")
DB_INTEGRITY_DURATION = _gauge(
    "devflow_db_integrity_check_duration_seconds", "How long the last integrity check took.")
DB_FS_FREE = _gauge(
    "devflow_db_filesystem_free_bytes", "Free bytes, for unprivileged users, on the database's filesystem.")
DB_FS_SIZE = _gauge("devflow_db_filesystem_size_bytes", "Size of the database's filesystem.")
BACKUP_LAST_SUCCESS = _gauge(
    "devflow_backup_last_success_timestamp_seconds",
    "When `devflow-monitor backup` last succeeded (from its status file).")
BACKUP_LAST_SIZE = _gauge(
    "devflow_backup_last_size_bytes", "Size of the last successful backup (from its status file).")

# --- event queue -------------------------------------------------------------
OUTBOX_EVENTS = _gauge(
    "devflow_event_queue_outbox_events",
    "Events waiting in the sync_status outbox, by status (pending or failed).", "status")
OUTBOX_OLDEST_PENDING = _gauge(
    "devflow_event_queue_oldest_pending_timestamp_seconds",
    "Timestamp of the oldest event still pending in the outbox.")
QUEUE_SIZE = _gauge(
    "devflow_event_queue_size", "Entries in the app's in-memory queue (from its /status).", "queue")
QUEUE_ENQUEUED = _counter(
    "devflow_event_queue_enqueued_total", "Entries enqueued (from the app's /status).", "queue")
QUEUE_DEQUEUED = _counter(
    "devflow_event_queue_dequeued_total", "Entries dequeued (from the app's /status).", "queue")
QUEUE_DROPPED = _counter(
    "devflow_event_queue_dropped_total", "Entries dropped because the queue was full (from the app's /status).",
    "queue")
QUEUE_FAILED = _counter(
    "devflow_event_queue_failed_total", "Entries that failed processing (from the app's /status).", "queue")

# --- host ---------------------------------------------------------------------
HOST_MEMORY_TOTAL = _gauge("devflow_host_memory_total_bytes", "Physical memory of the machine.")
HOST_MEMORY_AVAILABLE = _gauge(
    "devflow_host_memory_available_bytes", "Memory available to new processes without swapping.")
HOST_CPUS = _gauge("devflow_host_cpus", "Logical CPUs of the machine.")

# --- logs -----------------------------------------------------------------------
LOG_LINES = _counter(
    "devflow_log_lines_total", "Log records read, by file and level (multi-line dumps count once).",
    "file", "level")
LOG_PROTOCOL_MESSAGES = _counter(
    "devflow_log_protocol_messages_total",
    "MCP JSON-RPC messages (JSON lines with a \"jsonrpc\" key) read from the log file; not log records.", "file")
LOG_BYTES = _counter("devflow_log_read_bytes_total", "Bytes read from the log file.", "file")
LOG_LAST_ERROR = _gauge(
    "devflow_log_last_error_timestamp_seconds",
    "When the newest ERROR or FATAL record was written (the file's modification time when it was read).",
    "file")
LOG_READ_ERRORS = _counter(
    "devflow_log_read_errors_total", "Problems reading the log file, by reason.", "file", "reason")
LOG_FILE_SIZE = _gauge("devflow_log_file_size_bytes", "Current size of the log file.", "file")
LOG_ROTATIONS = _counter(
    "devflow_log_rotations_total", "Rotations seen, by kind (rename or truncate).", "file", "kind")
LOG_FILE_MODIFIED = _gauge(
    "devflow_log_file_modified_timestamp_seconds", "Last modification time of the log file.", "file")
HTTP_REQUESTS = _counter(
    "devflow_http_requests_total", "Requests in the access log, by status class (2xx, 4xx, ...).", "code")
HTTP_DURATION = _histogram(
    "devflow_http_request_duration_seconds", "Response times from the access log.")

# --- probe ------------------------------------------------------------------------
PROBE_SUCCESS = _gauge(
    "devflow_probe_success", "1 if the endpoint answered 200 with the expected JSON.", "endpoint")
PROBE_STATE = _gauge(
    "devflow_probe_state",
    "1 for the endpoint's current probe state: ok, no_listener, timeout, http_error, "
    "invalid_json, unexpected_shape or error.", "endpoint", "state")
PROBE_DURATION = _histogram(
    "devflow_probe_duration_seconds", "Time the probe's request took.", "endpoint")
PROBE_HTTP_STATUS = _gauge(
    "devflow_probe_http_status_code", "HTTP status of the last probe (0 when there was none).", "endpoint")
APP_BUILD_INFO = _gauge("devflow_app_build_info", "Version the app reports on /status, or else in its MCP "
                        "initialize reply in its logs; always 1.", "version")
APP_UPTIME = _gauge("devflow_app_uptime_seconds", "Uptime the app reports on /status.")
APP_HEALTHY = _gauge("devflow_app_healthy", "1 if the app reports status healthy.")
APP_MONITOR_STATE = _gauge(
    "devflow_app_monitor_state", "1 for each monitor's reported state (active, idle, stopped, error, unknown): "
    "on /status, or else its last start or stop line in the logs.", "monitor", "state")
APP_DB_CONNECTED = _gauge("devflow_app_database_connected", "1 if the app reports its database connected.")
APP_MEMORY_USED = _gauge("devflow_app_memory_used_bytes", "Memory the app reports used.")
APP_MEMORY_TOTAL = _gauge("devflow_app_memory_total_bytes", "Memory the app reports available to it.")


def all_metrics() -> list[Metric]:
    return [value for value in globals().values() if isinstance(value, Metric)]


def by_name(name: str) -> Metric:
    """The catalog entry whose metric or sample name is `name`."""
    for metric in all_metrics():
        samples = {metric.name}
        if metric.kind == "histogram":
            samples |= {metric.bucket, metric.sum, metric.count}
        if name in samples:
            return metric
    raise KeyError(name)
