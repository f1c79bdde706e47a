"""Errors: the guide's `--view=errors` and its log analysis (section 2.2)."""

from grafanalib.core import Dashboard

from devflow_monitor.alerting.rules import percent
from devflow_monitor.core.settings import Settings
from devflow_monitor.core import catalog
from devflow_monitor.dashboards import grafana as G, queries, states as S
from devflow_monitor.dashboards.grafana import rate, row, series, target

SERVER_ERRORS = 'code=~"5.."'
HTTP_5XX_RATIO = (f"sum by (instance) ({rate(catalog.HTTP_REQUESTS, SERVER_ERRORS)}) / "
                  f"sum by (instance) ({rate(catalog.HTTP_REQUESTS)})")


def dashboard(settings: Settings) -> Dashboard:
    steps, checklist, high = G.steps(settings), settings.checklist, settings.alerts["DevFlowHighErrorRate"]
    no_listener, listener_note = S.listener_mapping(settings), S.listener_note(settings)
    return G.dashboard(
        "devflow-errors", "DevFlow / Errors",
        "Errors in the DevFlow logs, failed HTTP requests and failing health probes, against the guide's "
        f"checklist (error rate below {percent(checklist.error_ratio)}; an alert fires above "
        f"{percent(high.threshold)}).",
        row(
            "Log errors",
            G.stat("Error ratio", "ERROR and FATAL records as a share of all log records. Checklist: below "
                   f"{percent(checklist.error_ratio)}; an alert fires above {percent(high.threshold)} for {high.for_}.",
                   target(queries.log_error_ratio(settings), "{{instance}}"), unit="percentunit", thresholds=steps.log_error_ratio,
                   background=True, sparkline=True, w=6),
            G.stat("Last error", "When the exporter last read an ERROR or FATAL record, in any log file.",
                   # Grafana's dateTimeFromNow reads milliseconds.
                   target(f"max by (instance) ({series(catalog.LOG_LAST_ERROR)}) * 1000 > 0", "{{instance}}"),
                   unit="dateTimeFromNow", w=6),
            G.stat("Error records per minute", "ERROR and FATAL records per minute, all files.",
                   target(f"sum by (instance) ({rate(catalog.LOG_LINES, settings.app.error_selector)}) * 60", "{{instance}}"),
                   unit="cpm", thresholds=G.ANY_IS_BAD, sparkline=True, w=6),
            G.bargauge("Error records by file", "ERROR and FATAL records per second, by log file, now.",
                       target(f"sum by (file) ({rate(catalog.LOG_LINES, settings.app.error_selector)})", "{{file}}",
                              instant=True),
                       unit="cps", w=6, h=4),
            G.timeseries("Log records by level", "Log records per second by level, all files (a multi-line "
                         "dump counts once), as the guide's `awk '{print $3}' | uniq -c`.",
                         target(f"sum by (level) ({rate(catalog.LOG_LINES)})", "{{level}}"),
                         unit="cps", stack=True, bars=True, min=0),
            G.timeseries("Error ratio over time", "ERROR and FATAL records as a share of all log records.",
                         target(queries.log_error_ratio(settings), "{{instance}}"),
                         unit="percentunit", thresholds=steps.log_error_ratio, min=0),
        ),
        row(
            "HTTP errors (access log)",
            G.timeseries("5xx ratio", "Server errors as a share of all requests in the access log.",
                         target(HTTP_5XX_RATIO, "{{instance}}"), unit="percentunit",
                         thresholds=steps.http_error_ratio, min=0),
            G.timeseries("Requests by status class", "Requests per second in the access log, by status class.",
                         target(f"sum by (instance, code) ({rate(catalog.HTTP_REQUESTS)})", "{{code}} {{instance}}"),
                         unit="reqps", stack=True, min=0),
        ),
        row(
            "Health probes",
            G.state_stat("Probe", f"ok when the endpoint answered 200 with the expected JSON. {listener_note}",
                         target(S.probe_outcome(), "{{endpoint}} {{instance}}"),
                         mappings=G.value_mappings((0, "failed", "red"), (1, "ok", "green"), no_listener),
                         w=6, h=8),
            G.stat("HTTP status", "Status code of the last probe; \"no answer\" for a timeout or a connection "
                   f"closed without a status. {listener_note}",
                   target(S.probe_status(), "{{endpoint}} {{instance}}"), unit="none",
                   mappings=G.value_mappings((0, "no answer", "red"), no_listener),
                   thresholds=G.thresholds("red", (200, "green"), (300, "orange"), (500, "red")), w=6, h=8),
            G.state_timeline("Probe failures by state", "When each endpoint was failing, and how: timeout, "
                             f"http_error, invalid_json, unexpected_shape or error. {listener_note}",
                             target(S.probe_failures(), "{{endpoint}} {{state}} {{instance}}"),
                             mappings=G.value_mappings((0, "", "transparent"), (1, "failing", "red"), no_listener),
                             thresholds=G.ANY_IS_BAD, w=12, h=8),
        ),
        row(
            "Log reading",
            G.timeseries("Log read errors", "Problems the exporter met reading the log files, by reason "
                         "(permission denied, vanished, over-long line, invalid UTF-8, unparsed access line, ...).",
                         target(f"sum by (file, reason) ({rate(catalog.LOG_READ_ERRORS)})", "{{reason}} {{file}}"),
                         unit="cps", min=0, w=24, h=6),
        ),
    )
