"""Overview: the guide's `/status` answer at a glance (section 1.1), plus firing alerts."""

from grafanalib.core import Dashboard

from devflow_monitor.alerting.rules import percent
from devflow_monitor.core.settings import Settings
from devflow_monitor.core import catalog
from devflow_monitor.dashboards import grafana as G, queries, states as S
from devflow_monitor.dashboards.grafana import age, quantile, row, series, target

# Alerts fired by absent() or by host rules carry no job/instance: `|` keeps them in view.
FIRING = f'{G.ALERTS}{{alertstate="firing", job=~"$job|", instance=~"$instance|"}}'

# Colours for the monitor states the app reports (file / git / test).
MONITOR_COLOURS = [G.fixed_colour("byRegexp", f".*: {state}", colour)
                   for state, colour in (("active", "green"), ("idle", "blue"), ("stopped", "orange"),
                                         ("error", "red"), ("unknown", "red"))]


def dashboard(settings: Settings) -> Dashboard:
    steps, alerts, checklist = G.steps(settings), settings.alerts, settings.checklist
    return G.dashboard(
        "devflow-overview", "DevFlow / Overview",
        "Is DevFlow up and doing its work? The guide's /status fields, the database, memory, event ingest, "
        "the outbox and firing alerts. Follow the links to Performance, Errors, Activity and Exporter.",
        row(
            "Status (the guide's /status)",
            G.state_stat("Process", "Whether a DevFlow server process was found (pidfile, command line or port). "
                         "An on-demand server (devflow.mode on_demand: its MCP client starts and stops it) that is "
                         "not running is its normal state, not an outage.",
                         target(queries.PROCESS_BY_MODE, "{{instance}}"), mappings=G.PROCESS_BY_MODE),
            G.state_stat("App health", "What the app's /health says. The public build serves no HTTP port, "
                         "so this stays empty there; see the probe panels on the Errors dashboard.",
                         target(series(catalog.APP_HEALTHY), "{{instance}}"),
                         mappings=G.value_mappings((0, "unhealthy", "red"), (1, "healthy", "green"))),
            S.while_running(G.stat(
                "Uptime", "Uptime the app reports on /status, or else the time since the process started; "
                "\"not running\" while no server process is found.",
                target(f"{series(catalog.APP_UPTIME)} or ({age(catalog.PROCESS_START_TIME)})", "{{instance}}"),
                unit="dtdurations")),
            G.stat("Version", "Version the app reports on /status.",
                   target(series(catalog.APP_BUILD_INFO), "{{version}}"), unit="none", text="name"),
            G.stat("Database", "State of the SQLite database as the exporter reads it: ok, missing, locked, "
                   "corrupt or unreadable. Green only when it could be read.",
                   target(f"{series(catalog.DB_UP)} * on (job, instance) group_left (state) "
                          f"({series(catalog.DB_STATE)} == 1)", "{{state}}"),
                   unit="none", thresholds=G.UP_IS_GOOD, text="name", background=True),
            G.stat("Monitors", "State of each monitor the app reports on /status (file, git, test).",
                   target(f"{series(catalog.APP_MONITOR_STATE)} == 1", "{{monitor}}: {{state}}"),
                   unit="none", text="name", overrides=MONITOR_COLOURS),
        ),
        row(
            "Resources and work",
            S.while_running(G.stat("Memory used", f"{catalog.PROCESS_RSS.help} \"not running\" while no server "
                                   "process is found; the Performance dashboard has its history.",
                                   target(series(catalog.PROCESS_RSS), "{{instance}}"), unit="bytes")),
            G.gauge("App memory used of total", "Memory used / total as the app reports them on /status; "
                    f"the guide's checklist wants it below {percent(checklist.memory_ratio)}.",
                    target(f"{series(catalog.APP_MEMORY_USED)} / {series(catalog.APP_MEMORY_TOTAL)}", "{{instance}}"),
                    unit="percentunit", thresholds=steps.memory, h=4),
            G.stat("Event ingest", "Events written to the database per minute. Zero while the process is up "
                   "and its monitors are active is the public build's known storage defect.",
                   target(S.zero_while_readable(queries.EVENTS_PER_MINUTE), "{{instance}}"),
                   unit="cpm", sparkline=True),
            G.stat("Outbox backlog", "Events waiting in the sync_status outbox (pending). Nothing marks rows "
                   "synced in the public build, so expect steady growth there.",
                   target(series(catalog.OUTBOX_EVENTS, 'status="pending"'), "{{instance}}"),
                   unit="short", sparkline=True),
            G.stat("Firing alerts", "Alerts firing now for the selected instances (and alerts with no instance).",
                   target(f"count({FIRING}) or vector(0)", "firing"),
                   unit="none", thresholds=G.ANY_IS_BAD, background=True),
            G.stat("Newest event", "Time since the newest stored event.",
                   target(age(catalog.EVENTS_NEWEST), "{{instance}}"), unit="dtdurations"),
        ),
        row(
            "Checklist (the guide's real-time checks and daily review)",
            S.while_running(G.stat(
                "CPU", "CPU used by the DevFlow process (1 = one core). Checklist: below "
                f"{percent(checklist.cpu_ratio)}.",
                target(queries.CPU, "{{instance}}"), unit="percentunit", thresholds=steps.cpu, background=True)),
            S.while_running(G.stat(
                "Memory of the machine", "Resident memory as a share of the machine's. An alert fires "
                f"above {percent(alerts['DevFlowHighMemoryUsage'].threshold)}.",
                target(queries.RSS_OF_MACHINE, "{{instance}}"),
                unit="percentunit", thresholds=steps.rss_of_machine, background=True)),
            G.stat("Response time", "99th percentile of the /health and /status probes' response times, for "
                   "endpoints that answer: \"no requests\" when none does (the stdio build has no endpoint). "
                   f"Checklist: below {alerts['DevFlowProbeSlow'].threshold * 1000:g} ms.",
                   target(S.answered_probes(quantile(0.99, catalog.PROBE_DURATION, "endpoint")),
                          "{{endpoint}} {{instance}}"),
                   unit="s", thresholds=steps.response_time, background=True, no_value=S.NO_REQUESTS),
            G.stat("Log error ratio", "ERROR and FATAL log records as a share of all records. Checklist: below "
                   f"{percent(checklist.error_ratio)}.",
                   target(queries.log_error_ratio(settings), "{{instance}}"),
                   unit="percentunit", thresholds=steps.log_error_ratio, background=True),
            G.state_stat("Integrity check", "Result of the last scheduled database integrity check "
                         "(PRAGMA quick_check, or integrity_check when configured).",
                         target(series(catalog.DB_INTEGRITY_OK), "{{instance}}"), mappings=G.OK_FAILED),
            G.stat("Last backup", "Time since `devflow-monitor backup` last succeeded (daily review).",
                   target(age(catalog.BACKUP_LAST_SUCCESS), "{{instance}}"), unit="dtdurations"),
        ),
        row(
            "Over time",
            G.state_timeline(
                "Availability", "Process found, app healthy, its port listening (the guide's `lsof -i :3000`), "
                f"database readable by the exporter and connected as the app reports, each probe succeeding. "
                f"{S.listener_note(settings)}",
                target(series(catalog.PROCESS_UP), "process {{instance}}"),
                target(series(catalog.APP_HEALTHY), "app healthy {{instance}}"),
                target(S.port_outcome(), "port {{port}} listening {{instance}}"),
                target(series(catalog.DB_UP), "database readable {{instance}}"),
                target(series(catalog.APP_DB_CONNECTED), "app database connected {{instance}}"),
                target(S.probe_outcome(), "probe {{endpoint}} {{instance}}"),
                mappings=G.value_mappings((0, "down", "red"), (1, "up", "green"), S.listener_mapping(settings)),
                thresholds=G.UP_IS_GOOD, h=8),
            G.timeseries("Events ingested", "Events written to the database per minute, by instance.",
                         target(S.zero_while_readable(queries.EVENTS_PER_MINUTE), "{{instance}}"),
                         unit="cpm"),
            G.timeseries("Outbox", "Events in the sync_status outbox, by status.",
                         target(series(catalog.OUTBOX_EVENTS), "{{status}} {{instance}}"), unit="short"),
        ),
        row(
            "Firing alerts",
            G.table("Alerts firing now", "Every alert firing now, from Prometheus' ALERTS series; the runbook "
                    "link is in each alert's annotations in Alertmanager.",
                    target(FIRING, table=True),
                    unit="none", columns=["alertname", "severity", "instance", "job"],
                    hidden=("Time", "Value", "__name__", "alertstate"), h=6),
        ),
    )
