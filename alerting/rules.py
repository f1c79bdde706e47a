"""Prometheus recording and alert rules, built from `Settings` and the metric catalog.

Metric names come from core.catalog only (`up` is Prometheus' own series),
so renaming a metric breaks tests here instead of silently emptying a rule.
Recording rules are named `level:metric:operations` and serve the alerts. The
dashboards compute the same figures from the raw series over `$__rate_interval`
(dashboards/queries.py), so a panel follows the zoom and the $job / $instance
variables instead of this file's fixed window and selector.
"""

from __future__ import annotations

from dataclasses import dataclass

from devflow_monitor.core.settings import Settings
from devflow_monitor.core.settings import seconds as duration_seconds
from devflow_monitor.core import catalog

UP = "up"  # written by Prometheus for every scrape target, not by the exporter


# Go-template pieces of the annotations, rendered by Prometheus when the alert fires.
def label(name: str) -> str:
    return "{{ $labels." + name + " }}"


INSTANCE = label("instance")
VALUE = "{{ $value | humanize }}"
VALUE_PCT = "{{ $value | humanizePercentage }}"
VALUE_BYTES = "{{ $value | humanize1024 }}B"
VALUE_AGE = "{{ $value | humanizeDuration }}"
STATE_OR_UNKNOWN = "{{ with $labels.state }}{{ . }}{{ else }}unknown{{ end }}"

# Label matchers used inside f-strings (which cannot hold backslashes before Python 3.12).
SERVER_ERRORS = 'code="5xx"'
NOT_OK = 'state!="ok"'
ACTIVE = 'state="active"'
PENDING = 'status="pending"'
ON_DEMAND = 'mode="on_demand"'
CRASH = 'reason="crash"'
TARGET = "on (job, instance)"  # a rule's series and the exporter's process series share the target's labels


def number(value: float) -> str:
    """A threshold as PromQL reads it, without losing digits (10485760, not 1.04858e+07).

    15 significant digits: 0.8 + 0.15 (an override's arithmetic) reads 0.95, as Jsonnet prints it in the mixin.
    """
    if hasattr(value, "promql"):  # a reference into the mixin's `_config` (mixin/build.py)
        return value.promql()
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.15g}"


def seconds(duration: str) -> int:
    """Seconds in a duration such as "1h"; a reference into the mixin's `_config` stays one (mixin/build.py)."""
    return duration.seconds() if hasattr(duration, "seconds") else duration_seconds(duration)


def percent(ratio: float) -> str:
    return f"{ratio * 100:.6g}%"


def mebibytes(size: float) -> str:
    return f"{size / 1024 ** 2:g} MiB"


def per_second_name(metric: catalog.Metric) -> str:
    """A counter's name without `_total`, as Prometheus names the rate of it."""
    return metric.name.removesuffix("_total")


@dataclass(frozen=True)
class Recorded:
    """Names of the recorded series the alerts read (the name carries the rate window)."""
    cpu_ratio: str  # CPU of the DevFlow process as a fraction of one core (ps %CPU / 100)
    memory_ratio: str  # resident memory as a fraction of the machine's memory
    log_rate: str  # log records per second, all files and levels
    log_error_ratio: str  # error and fatal records over all records
    http_error_ratio: str  # 5xx responses over all responses (access log)
    http_p99: str  # 99th percentile response time (access log)
    ingest_rate: str  # events written to the database per second (0, not absent, when none)
    probe_p99: str  # 99th percentile of the /health and /status probe, per endpoint


def recorded(settings: Settings | None = None) -> Recorded:
    window = (settings or Settings()).rate_window
    return Recorded(
        cpu_ratio=f"instance:{per_second_name(catalog.PROCESS_CPU)}:ratio_rate{window}",
        memory_ratio=f"instance:{catalog.PROCESS_RSS.name}:ratio",
        log_rate=f"instance:{per_second_name(catalog.LOG_LINES)}:rate{window}",
        log_error_ratio=f"instance:{per_second_name(catalog.LOG_LINES)}_errors:ratio_rate{window}",
        http_error_ratio=f"instance:{per_second_name(catalog.HTTP_REQUESTS)}_5xx:ratio_rate{window}",
        http_p99=f"instance:{catalog.HTTP_DURATION.name}:p99_rate{window}",
        ingest_rate=f"instance:{per_second_name(catalog.EVENTS_INGESTED)}:rate{window}",
        probe_p99=f"instance_endpoint:{catalog.PROBE_DURATION.name}:p99_rate{window}",
    )


class Query:
    """Selectors bound to the exporter's job: `q(catalog.X.name, 'state="ok"')`."""

    def __init__(self, settings: Settings):
        self.selector = settings.selector

    def __call__(self, name: str, *matchers: str) -> str:
        return name + "{" + ",".join((self.selector, *matchers)) + "}"


def recording_rules(settings: Settings) -> list[dict]:
    q, names, window = Query(settings), recorded(settings), settings.rate_window
    errors = f'level=~"{settings.app.error_levels}"'
    log_rate = f"sum without (file, level) (rate({q(catalog.LOG_LINES.name)}[{window}]))"
    http_rate = f"sum without (code) (rate({q(catalog.HTTP_REQUESTS.name)}[{window}]))"
    rules = {
        names.cpu_ratio: f"sum without (mode) (rate({q(catalog.PROCESS_CPU.name)}[{window}]))",
        names.memory_ratio: f"{q(catalog.PROCESS_RSS.name)} / {q(catalog.HOST_MEMORY_TOTAL.name)}",
        names.log_rate: log_rate,
        # `or 0 * ...` makes the ratio 0 rather than absent while no error line was ever read.
        names.log_error_ratio: (
            f"(\n  sum without (file, level) (rate({q(catalog.LOG_LINES.name, errors)}[{window}]))\n"
            f"or\n  0 * {log_rate}\n)\n/ {log_rate}"),
        names.http_error_ratio: (
            f"(\n  sum without (code) (rate({q(catalog.HTTP_REQUESTS.name, SERVER_ERRORS)}[{window}]))\n"
            f"or\n  0 * {http_rate}\n)\n/ {http_rate}"),
        names.http_p99: f"histogram_quantile(0.99, rate({q(catalog.HTTP_DURATION.bucket)}[{window}]))",
        # A database without a single event has no `type` series at all: record 0 while it is readable.
        names.ingest_rate: (
            f"sum without (type) (rate({q(catalog.EVENTS_INGESTED.name)}[{window}]))\n"
            f"or\n0 * ({q(catalog.DB_UP.name)} == 1)"),
        names.probe_p99: f"histogram_quantile(0.99, rate({q(catalog.PROBE_DURATION.bucket)}[{window}]))",
    }
    return [{"record": name, "expr": expr} for name, expr in rules.items()]


@dataclass(frozen=True)
class AlertRule:
    group: str
    expr: str
    summary: str
    description: str


def _alert_rules(s: Settings) -> dict[str, AlertRule]:
    """Every alert this bundle knows, before `enabled` and `app.expect_listener` filter them."""
    q, r, a = Query(s), recorded(s), s.alerts
    window = s.rate_window
    errors = f'level=~"{s.app.error_levels}"'

    leak = a["DevFlowMemoryLeak"]
    burst = a["DevFlowErrorBurst"]
    backlog = a["DevFlowEventBacklogGrowing"]
    disk = a["DevFlowDiskFillingUp"]
    retention = a["DevFlowRetentionNotApplied"]
    fragmented = a["DevFlowDatabaseFragmented"]
    rotation = a["DevFlowLogNotRotated"]
    burst_errors = f"sum without (file, level) (increase({q(catalog.LOG_LINES.name, errors)}[{burst.window}]))"
    burst_all = f"sum without (file, level) (increase({q(catalog.LOG_LINES.name)}[{burst.window}]))"
    crashed = a["DevFlowServerCrashed"]
    crashes = q(catalog.PROCESS_EXITS.name, CRASH)
    # Without an expected listener, "no_listener" is the public build's normal state (docs/devflow.md).
    probe_failed = 'state!="ok"' if s.app.expect_listener else 'state!~"ok|no_listener"'
    # Alerts on what a running server does: silent while it is gone (an on-demand server's normal state), also
    # while the range of a rate() still holds its last samples. `unless ... == 0` keeps an exporter without
    # the process collector alerting; `and ... == 1` is for alerts whose series only that collector exports.
    running = f"and {TARGET}\n{q(catalog.PROCESS_UP.name)} == 1"
    not_gone = f"unless {TARGET}\n{q(catalog.PROCESS_UP.name)} == 0"

    return {
        "DevFlowExporterDown": AlertRule(
            "devflow.exporter", f"{q(UP)} == 0",
            "The DevFlow exporter cannot be scraped.",
            f"Prometheus has failed to scrape the DevFlow exporter at {INSTANCE} for "
            f"{a['DevFlowExporterDown'].for_}; every other DevFlow alert for it is blind."),
        "DevFlowExporterAbsent": AlertRule(
            "devflow.exporter", f"absent({q(UP)})",
            "No DevFlow exporter is being scraped.",
            f"Prometheus has had no scrape target of job {label('job')} for "
            f"{a['DevFlowExporterAbsent'].for_} (selector {{{s.selector}}}); check prometheus.yml and the "
            f"exporter service."),
        "DevFlowCollectorFailing": AlertRule(
            "devflow.exporter", f"{q(catalog.COLLECTOR_SUCCESS.name)} == 0",
            "A DevFlow exporter collector keeps failing.",
            f"The {label('collector')} collector of the exporter at {INSTANCE} has failed on every "
            f"scrape for {a['DevFlowCollectorFailing'].for_}; its metrics are missing or stale."),

        # Absence is an outage only for a daemon: an on-demand server is stopped by its client, and its crashes
        # are DevFlowServerCrashed's. An exporter that exports no mode (an older one) is taken for a daemon's.
        "DevFlowProcessDown": AlertRule(
            "devflow.process",
            f"{q(catalog.PROCESS_UP.name)} == 0\nunless {TARGET}\n{q(catalog.TARGET_MODE.name, ON_DEMAND)} == 1",
            "The DevFlow server process is not running.",
            f"No DevFlow server process has been found on {INSTANCE} for {a['DevFlowProcessDown'].for_}; "
            f"it is not run on demand, so its absence is an outage."),
        # The second operand is a crash count whose series the exporter created at its first crash (no
        # earlier sample for increase() to compare with).
        "DevFlowServerCrashed": AlertRule(
            "devflow.process",
            f"increase({crashes}[{crashed.window}]) > 0\nor\n{crashes} > 0\nunless\n{crashes} offset {crashed.window}",
            "The DevFlow server crashed.",
            f"The DevFlow server watched by {INSTANCE} exited with a crash in the last {crashed.window} (its "
            f"MCP client still ran, or its log ended in crash output), whether it runs as a daemon or on demand."),
        "DevFlowPortNotListening": AlertRule(
            "devflow.process",
            f"{q(catalog.PROCESS_PORT_LISTENING.name)} == 0\n"
            f"and ignoring (port)\n{q(catalog.PROCESS_UP.name)} == 1",
            "The DevFlow server runs but its port is not listening.",
            f"The DevFlow process on {INSTANCE} is up but nothing has listened on port "
            f"{label('port')} for {a['DevFlowPortNotListening'].for_}."),
        "DevFlowHighCpuUsage": AlertRule(
            "devflow.process", f"{r.cpu_ratio} > {number(a['DevFlowHighCpuUsage'].threshold)}\n{running}",
            "The DevFlow server uses a lot of CPU.",
            f"The DevFlow process on {INSTANCE} uses {VALUE_PCT} of one CPU core (over {window}); "
            f"above {percent(a['DevFlowHighCpuUsage'].threshold)} for {a['DevFlowHighCpuUsage'].for_}."),
        "DevFlowHighMemoryUsage": AlertRule(
            "devflow.process", f"{r.memory_ratio} > {number(a['DevFlowHighMemoryUsage'].threshold)}",
            "The DevFlow server uses a large share of the machine's memory.",
            f"The DevFlow process on {INSTANCE} holds {VALUE_PCT} of the machine's memory; above "
            f"{percent(a['DevFlowHighMemoryUsage'].threshold)} for {a['DevFlowHighMemoryUsage'].for_}."),
        "DevFlowMemoryLeak": AlertRule(
            "devflow.process",
            f"deriv({q(catalog.PROCESS_RSS.name)}[{leak.window}]) * 3600 > {number(leak.growth_bytes_per_hour)}\n"
            f"and\ntime() - {q(catalog.PROCESS_START_TIME.name)} > {seconds(leak.window)}",
            "The DevFlow server's memory keeps growing (potential memory leak).",
            f"Resident memory of the DevFlow process on {INSTANCE} grows by {VALUE_BYTES} per hour "
            f"(over the last {leak.window}); more than {mebibytes(leak.growth_bytes_per_hour)} per hour "
            f"for {leak.for_}."),

        "DevFlowHighErrorRate": AlertRule(
            "devflow.logs", f"{r.log_error_ratio} > {number(a['DevFlowHighErrorRate'].threshold)}",
            "The DevFlow server logs many errors.",
            f"{VALUE_PCT} of the log records the DevFlow server on {INSTANCE} wrote over {window} are "
            f"errors; above {percent(a['DevFlowHighErrorRate'].threshold)} for "
            f"{a['DevFlowHighErrorRate'].for_}."),
        "DevFlowErrorBurst": AlertRule(
            "devflow.logs",
            f"{burst_errors} > {burst.min_errors}\nand\n{burst_errors}\n/ {burst_all} > {number(burst.min_ratio)}",
            "A burst of ERROR lines in the DevFlow logs.",
            f"The DevFlow server on {INSTANCE} wrote {VALUE} error records in the last {burst.window}, "
            f"more than {burst.min_errors} and at least {percent(burst.min_ratio)} of its records."),
        "DevFlowHttpErrorRate": AlertRule(
            "devflow.logs", f"{r.http_error_ratio} > {number(a['DevFlowHttpErrorRate'].threshold)}",
            "The DevFlow server answers many requests with 5xx.",
            f"{VALUE_PCT} of the requests in the access log of {INSTANCE} were answered 5xx over "
            f"{window}; above {percent(a['DevFlowHttpErrorRate'].threshold)} for "
            f"{a['DevFlowHttpErrorRate'].for_}."),
        "DevFlowLogNotRotated": AlertRule(
            "devflow.logs",
            f"{q(catalog.LOG_FILE_SIZE.name)} > {number(rotation.max_size_bytes)}\nunless ignoring (kind)\n"
            f"increase({q(catalog.LOG_ROTATIONS.name)}[{rotation.window}]) > 0",
            "A DevFlow log file is large and has not been rotated.",
            f"{label('file')} on {INSTANCE} is {VALUE_BYTES} and no rotation was seen in "
            f"{rotation.window} (limit {mebibytes(rotation.max_size_bytes)})."),

        "DevFlowDatabaseUnavailable": AlertRule(
            "devflow.database",
            f"({q(catalog.DB_UP.name)} == 0)\n* ignoring (state) group_left (state)\n"
            f"({q(catalog.DB_STATE.name, NOT_OK)} == 1)\n"
            f"or ignoring (state)\n{q(catalog.DB_UP.name)} == 0",
            "The DevFlow database cannot be read.",
            f"The DevFlow database on {INSTANCE} has been unreadable for "
            f"{a['DevFlowDatabaseUnavailable'].for_} (state: {STATE_OR_UNKNOWN})."),
        "DevFlowDatabaseIntegrityFailed": AlertRule(
            "devflow.database", f"{q(catalog.DB_INTEGRITY_OK.name)} == 0",
            "The DevFlow database failed its integrity check.",
            f"The last scheduled integrity check of the DevFlow database on {INSTANCE} failed; "
            f"the file may be corrupt."),
        "DevFlowEventsNotPersisted": AlertRule(
            "devflow.database",
            # Activity is what the server does (it logs the file and git events it sees), not a monitor
            # reported "active": that is its resting state, and an idle developer must not page anyone.
            f"{r.ingest_rate} == 0\nand\n{q(catalog.PROCESS_UP.name)} == 1\nand\n{r.log_rate} > 0",
            "The DevFlow server is active but stores no events.",
            f"The DevFlow process on {INSTANCE} is up and active (it writes log records) but has written "
            f"no event to its database for {a['DevFlowEventsNotPersisted'].for_}."),
        "DevFlowEventBacklogGrowing": AlertRule(
            "devflow.database",
            f"deriv({q(catalog.OUTBOX_EVENTS.name, PENDING)}[{backlog.window}]) * 3600 > 0\n"
            f"and ignoring (status)\n"
            f"time() - {q(catalog.OUTBOX_OLDEST_PENDING.name)} > {seconds(backlog.max_pending_age)}",
            "The DevFlow event outbox backlog keeps growing.",
            f"Pending events in the outbox of {INSTANCE} grow by {VALUE} per hour (over {backlog.window}) "
            f"and the oldest has waited more than {backlog.max_pending_age}."),
        "DevFlowDiskFillingUp": AlertRule(
            "devflow.database",
            f"{q(catalog.DB_FS_FREE.name)} / {q(catalog.DB_FS_SIZE.name)} < {number(disk.max_free_ratio)}\n"
            f"and\npredict_linear({q(catalog.DB_FS_FREE.name)}[{disk.window}], {seconds(disk.horizon)}) < 0",
            "The DevFlow database's disk will fill up soon.",
            f"The filesystem of the DevFlow database on {INSTANCE} has {VALUE_PCT} free and, at the "
            f"rate of the last {disk.window}, fills up within {disk.horizon}."),
        "DevFlowDiskSpaceLow": AlertRule(
            "devflow.database",
            f"{q(catalog.DB_FS_FREE.name)} / {q(catalog.DB_FS_SIZE.name)}"
            f" < {number(a['DevFlowDiskSpaceLow'].threshold)}",
            "The DevFlow database's disk is almost full.",
            f"The filesystem of the DevFlow database on {INSTANCE} has only {VALUE_PCT} free "
            f"(below {percent(a['DevFlowDiskSpaceLow'].threshold)})."),
        "DevFlowRetentionNotApplied": AlertRule(
            "devflow.database",
            f"time() - {q(catalog.EVENTS_OLDEST.name)} > {seconds(retention.retention) + seconds(retention.margin)}",
            "Old DevFlow events are not being deleted.",
            f"The oldest event in the DevFlow database on {INSTANCE} is {VALUE_AGE} old; retention is "
            f"{retention.retention}, so maintenance has not run."),
        "DevFlowBackupStale": AlertRule(
            "devflow.database",
            f"time() - {q(catalog.BACKUP_LAST_SUCCESS.name)} > {seconds(a['DevFlowBackupStale'].max_age)}",
            "The last DevFlow backup is too old.",
            f"The last successful backup of the DevFlow database on {INSTANCE} finished {VALUE_AGE} ago "
            f"(limit {a['DevFlowBackupStale'].max_age})."),
        "DevFlowBackupMissing": AlertRule(
            "devflow.database",
            f"time() - {q(catalog.EVENTS_OLDEST.name)} > {seconds(a['DevFlowBackupMissing'].max_age)}\n"
            f"unless\n{q(catalog.BACKUP_LAST_SUCCESS.name)}",
            "The DevFlow database has never been backed up.",
            f"The DevFlow database on {INSTANCE} holds events from {VALUE_AGE} ago but no successful "
            f"backup is recorded."),
        "DevFlowDatabaseFragmented": AlertRule(
            "devflow.database",
            f"{q(catalog.DB_FREELIST_PAGES.name)} / {q(catalog.DB_PAGES.name)} > {number(fragmented.max_free_ratio)}\n"
            f"and\n{q(catalog.DB_PAGES.name)} * {q(catalog.DB_PAGE_SIZE.name)} > {number(fragmented.min_size_bytes)}",
            "The DevFlow database has many unused pages.",
            f"{VALUE_PCT} of the pages of the DevFlow database on {INSTANCE} are free; VACUUM would "
            f"return them to the filesystem."),

        "DevFlowProbeFailing": AlertRule(
            "devflow.probe",
            f"({q(catalog.PROBE_SUCCESS.name)} == 0)\n* ignoring (state) group_left (state)\n"
            f"({q(catalog.PROBE_STATE.name, probe_failed)} == 1)\n{not_gone}",
            "A DevFlow health endpoint fails.",
            f"GET /{label('endpoint')} on the DevFlow server behind {INSTANCE} has failed for "
            f"{a['DevFlowProbeFailing'].for_} ({label('state')})."),
        "DevFlowProbeSlow": AlertRule(
            "devflow.probe", f"{r.probe_p99} > {number(a['DevFlowProbeSlow'].threshold)}\n{not_gone}",
            "A DevFlow health endpoint answers slowly.",
            f"The 99th percentile of GET /{label('endpoint')} on the DevFlow server behind "
            f"{INSTANCE} is {VALUE_AGE} over {window}; above "
            f"{a['DevFlowProbeSlow'].threshold * 1000:g} ms for {a['DevFlowProbeSlow'].for_}."),
    }


def active_alerts(settings: Settings) -> dict[str, AlertRule]:
    """The alerts these settings generate, in file order."""
    rules = _alert_rules(settings)
    unknown = set(settings.alerts) ^ set(rules)
    assert not unknown, f"settings and rules disagree on {sorted(unknown)}"
    if not settings.app.expect_listener:
        rules.pop("DevFlowPortNotListening")
    return {name: rule for name, rule in rules.items() if settings.alerts[name].enabled}


def alert_rule(settings: Settings, name: str, rule: AlertRule) -> dict:
    alert = settings.alerts[name]
    return {
        "alert": name,
        "expr": rule.expr,
        "for": alert.for_,
        "labels": {"severity": alert.severity},
        "annotations": {
            "summary": rule.summary,
            "description": rule.description,
            "runbook_url": settings.runbook(name),
        },
    }


def rule_files(settings: Settings) -> dict[str, dict]:
    """File name -> Prometheus rule file content."""
    groups: dict[str, list[dict]] = {}
    for name, rule in active_alerts(settings).items():
        groups.setdefault(rule.group, []).append(alert_rule(settings, name, rule))
    return {
        "recording.yml": {"groups": [{"name": "devflow.recording", "rules": recording_rules(settings)}]},
        "alerts.yml": {"groups": [{"name": group, "rules": rules} for group, rules in groups.items()]},
    }
