"""Performance: the guide's `--view=performance` and its analyze-performance.sh (section 3.2)."""

from grafanalib.core import Dashboard

from devflow_monitor.alerting.rules import mebibytes, percent
from devflow_monitor.core.settings import Settings
from devflow_monitor.core import catalog
from devflow_monitor.dashboards import grafana as G, queries, states as S
from devflow_monitor.dashboards.grafana import quantile, rate, row, series, target

FDS_OF_LIMIT = f"{series(catalog.PROCESS_OPEN_FDS)} / on (job, instance) {series(catalog.PROCESS_MAX_FDS)}"
FREE_DISK = f"{series(catalog.DB_FS_FREE)} / on (job, instance) {series(catalog.DB_FS_SIZE)}"
# The database as a person means it: the file with its -wal and -shm, where the public build keeps its data
# (it never checkpoints its WAL: 547 KiB of WAL beside a 4 KiB file after 20 minutes).
DATABASE_SIZE = f"sum without (file) ({series(catalog.DB_FILE_SIZE)})"


def dashboard(settings: Settings) -> Dashboard:
    steps, alerts, checklist = G.steps(settings), settings.alerts, settings.checklist
    cpu, leak = alerts["DevFlowHighCpuUsage"], alerts["DevFlowMemoryLeak"]
    response_time = f"{alerts['DevFlowProbeSlow'].threshold * 1000:g} ms"
    return G.dashboard(
        "devflow-performance", "DevFlow / Performance",
        "CPU, memory, threads, file descriptors, response times and database size of the DevFlow server, "
        f"against the guide's checklist: CPU below {percent(checklist.cpu_ratio)}, memory below "
        f"{percent(checklist.memory_ratio)}, responses below {response_time}.",
        row(
            "CPU",
            G.timeseries("CPU usage", "CPU time used per second by the DevFlow process, by mode (1 = one full "
                         f"core, as ps shows %CPU). Checklist: below {percent(checklist.cpu_ratio)}; an alert "
                         f"fires above {percent(cpu.threshold)} for {cpu.for_}.",
                         target(f"sum by (instance, mode) ({rate(catalog.PROCESS_CPU)})", "{{mode}} {{instance}}"),
                         unit="percentunit", thresholds=steps.cpu, stack=True, min=0, w=18),
            S.while_running(G.gauge("CPU now", "CPU used by the DevFlow process, all modes (1 = one full core).",
                                    target(queries.CPU, "{{instance}}"), unit="percentunit", thresholds=steps.cpu,
                                    w=6, h=8)),
        ),
        row(
            "Memory",
            G.timeseries("Memory", "Resident memory of the process and the heap used / total the app reports "
                         "on /status.",
                         target(series(catalog.PROCESS_RSS), "resident {{instance}}"),
                         target(series(catalog.APP_MEMORY_USED), "app used {{instance}}"),
                         target(series(catalog.APP_MEMORY_TOTAL), "app total {{instance}}"),
                         unit="bytes", min=0, w=8),
            G.timeseries("Memory growth per hour", f"Slope of resident memory over the last {leak.window}. An "
                         f"alert suspects a leak above {mebibytes(leak.growth_bytes_per_hour)} per hour.",
                         target(f"deriv({series(catalog.PROCESS_RSS)}[{leak.window}]) * 3600", "{{instance}}"),
                         unit="bytes", thresholds=steps.memory_growth, w=7),
            S.while_running(G.stat("Virtual memory", "Virtual memory of the DevFlow process (address space, "
                                   "mostly not in RAM).",
                                   target(series(catalog.PROCESS_VMS), "{{instance}}"), unit="bytes", w=3, h=8)),
            S.while_running(G.gauge("Memory of the machine", "Resident memory of the process as a share of the "
                                    "machine's memory. An alert fires above "
                                    f"{percent(alerts['DevFlowHighMemoryUsage'].threshold)}.",
                                    target(queries.RSS_OF_MACHINE, "{{instance}}"), unit="percentunit",
                                    thresholds=steps.rss_of_machine, w=6, h=8)),
        ),
        row(
            "Threads, files and connections",
            G.timeseries("Threads", "Threads of the DevFlow process (about 11 is normal for the Node server).",
                         target(series(catalog.PROCESS_THREADS), "{{instance}}"), unit="short", min=0, w=5),
            G.timeseries("Open file descriptors", "Files and sockets the process holds open.",
                         target(series(catalog.PROCESS_OPEN_FDS), "{{instance}}"), unit="short", min=0, w=5),
            G.timeseries("Connections", "Sockets held by the process and handles it holds on its database file.",
                         target(series(catalog.PROCESS_SOCKETS), "sockets {{instance}}"),
                         target(series(catalog.DB_CONNECTIONS), "database handles {{instance}}"),
                         unit="short", min=0, w=5),
            S.while_running(G.stat("File descriptors used", "Open file descriptors as a share of the process's "
                                   "limit.", target(FDS_OF_LIMIT, "{{instance}}"), unit="percentunit",
                                   thresholds=steps.open_files, w=3)),
            G.stat("Restarts", "Times the process started anew within the dashboard's time range.",
                   target(f"changes({series(catalog.PROCESS_START_TIME)}[$__range])", "{{instance}}", instant=True),
                   unit="none", thresholds=G.ANY_IS_BAD, w=3),
            G.stat("Matching processes", "Processes matching the pidfile, command line or port; more than one "
                   "means a second server is running against the same project.",
                   target(series(catalog.PROCESS_MATCHES), "{{instance}}"),
                   unit="none", thresholds=G.thresholds("red", (1, "green"), (2, "orange")), w=3),
        ),
        row(
            "Machine",
            G.stat("CPUs", "Logical CPUs of the machine; CPU usage above is per core.",
                   target(series(catalog.HOST_CPUS), "{{instance}}"), unit="none", w=4),
            G.stat("Machine memory", catalog.HOST_MEMORY_TOTAL.help,
                   target(series(catalog.HOST_MEMORY_TOTAL), "{{instance}}"), unit="bytes", w=4),
            G.timeseries("Machine memory used", "Share of the machine's memory not available to new processes "
                         f"(by every program, not only DevFlow). Checklist: below {percent(checklist.memory_ratio)}.",
                         target(f"1 - {series(catalog.HOST_MEMORY_AVAILABLE)} / on (job, instance) "
                                f"{series(catalog.HOST_MEMORY_TOTAL)}", "{{instance}}"),
                         unit="percentunit", thresholds=steps.memory, min=0, max=1, w=16, h=4),
        ),
        row(
            "Response time",
            G.timeseries("Health probe latency", "Time the app's /health and /status took to answer the "
                         f"exporter's probe: median and 99th percentile. Checklist: below {response_time}. "
                         "Only while an endpoint answers: a refused connection is no response time.",
                         target(S.answered_probes(quantile(0.5, catalog.PROBE_DURATION, "endpoint")),
                                "p50 {{endpoint}} {{instance}}"),
                         target(S.answered_probes(quantile(0.99, catalog.PROBE_DURATION, "endpoint")),
                                "p99 {{endpoint}} {{instance}}"),
                         unit="s", thresholds=steps.response_time, min=0, no_value=S.NO_REQUESTS, w=8),
            G.timeseries("HTTP response time", "Response times from the access log: median and 99th percentile. "
                         f"Checklist: below {response_time}. Only while requests are logged.",
                         target(S.answered_requests(quantile(0.5, catalog.HTTP_DURATION)), "p50 {{instance}}"),
                         target(S.answered_requests(quantile(0.99, catalog.HTTP_DURATION)), "p99 {{instance}}"),
                         unit="s", thresholds=steps.response_time, min=0, no_value=S.NO_REQUESTS, w=8),
            G.bargauge("HTTP response time distribution", "Requests per second in each response-time bucket "
                       "of the access log (upper bound in seconds), now.",
                       target(f"sum by (le) ({rate(catalog.HTTP_DURATION.bucket)})", "{{le}}",
                              instant=True, heatmap=True),
                       unit="reqps", w=8),
            G.timeseries("HTTP requests", "Requests per second in the access log, by status class.",
                         target(f"sum by (code) ({rate(catalog.HTTP_REQUESTS)})", "{{code}}"),
                         unit="reqps", stack=True, min=0, w=24, h=6),
        ),
        row(
            "Database",
            G.timeseries("Database files", "Size of the database as a whole and of each of its files: the "
                         "SQLite file and its -wal and -shm. A WAL that keeps growing means checkpoints are held "
                         "back; the public build never checkpoints, so its data lives in the WAL.",
                         target(DATABASE_SIZE, "total {{instance}}"),
                         target(series(catalog.DB_FILE_SIZE), "{{file}} {{instance}}"),
                         unit="bytes", min=0, w=12),
            G.stat("Free pages", "Unused pages in the database file; a large share means VACUUM would "
                   "give space back.",
                   target(f"{series(catalog.DB_FREELIST_PAGES)} / {series(catalog.DB_PAGES)}", "{{instance}}"),
                   unit="percentunit", thresholds=steps.free_pages, w=4, h=8),
            G.gauge("Free disk", "Free space on the database's filesystem, as a share of its size.",
                    target(FREE_DISK, "{{instance}}"), unit="percentunit", thresholds=steps.free_disk, w=4, h=8),
            G.stat("Database size", "Size of the database with its -wal and -shm files, as `du -ch devflow.db*`: "
                   "the file alone misses the data a server that never checkpoints keeps in its WAL. The parts "
                   "are in Database files.",
                   target(DATABASE_SIZE, "{{instance}}"), unit="bytes", sparkline=True, w=4, h=8),
        ),
    )
