"""The one settings object every rule, route and rule test is built from.

Defaults come from the operations guide (section 4.1 and its shell checks) and
from docs/devflow.md. Users change them without touching Python:

- YAML: a partial copy of `to_dict(Settings())`, e.g.

      alerts:
        DevFlowHighCpuUsage: {threshold: 0.9, for: 10m}
      app: {expect_listener: true}

- Jsonnet, the monitoring-mixin way: an object whose hidden `_config` field
  is merged over the defaults (available as `super`):

      { _config+:: { alerts+: { DevFlowHighCpuUsage+: { threshold: super.threshold + 0.1, 'for': '10m' } } } }

  (`for` is a Jsonnet keyword, hence the quotes.)

`load(path)` picks the format from the file name and merges it with the loader the
exporter's configuration uses (`core/loader.py`): the same types, hints and
one-line `ConfigError` (alias `SettingsError`), `FILE: key.path: problem`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

# The loader the exporter's configuration uses too: the same types, errors and hints for both files.
from devflow_monitor.core.config import RUNBOOK_PATH, WebConfig
from devflow_monitor.core.loader import (ConfigError, check_duration, merge, read_text, read_yaml, seconds,
                                         to_dict)
from devflow_monitor.core.logformat import ERROR_LEVELS, LEVELS

SEVERITIES = ("critical", "warning", "info")

SettingsError = ConfigError  # the name alerting's callers catch and raise

# An absolute link is clickable in Slack, e-mail and Alertmanager: the page the exporter serves at its default address.
DEFAULT_RUNBOOK_URL = f"http://{WebConfig.listen_address}{RUNBOOK_PATH}#{{anchor}}"


# --- alerts -----------------------------------------------------------------------
# Every alert has these three; subclasses add their thresholds. `for_` is `for` in YAML.

@dataclass
class Alert:
    severity: str = "warning"
    """The alert's `severity` label: critical, warning or info."""
    for_: str = "5m"
    """How long the condition must hold before the alert fires (`for` in the rule)."""
    enabled: bool = True
    """False leaves the alert out of the rule files."""


@dataclass
class Threshold(Alert):
    threshold: float = 0.0
    """The level the alert's measure crosses to fire: a ratio (0.8 is 80%), or seconds for DevFlowProbeSlow."""


@dataclass
class MemoryLeak(Alert):
    growth_bytes_per_hour: float = 10 * 1024 ** 2  # guide: "memory.trend > 10 MB/hour"
    """Growth of resident memory, in bytes per hour, above which the alert fires."""
    window: str = "1h"
    """The deriv() window of the growth, and the uptime before the rule looks at a new process."""


@dataclass
class Crashed(Alert):
    window: str = "10m"
    """How long the alert fires after the server's last crash: the increase() window of its crash count."""


@dataclass
class ErrorBurst(Alert):
    min_errors: int = 10  # guide: "more than 10 ERROR lines in the last 100 lines"
    """Error records within `window` above which the alert fires."""
    min_ratio: float = 0.1  # 10 of 100
    """The share of all records within `window` the error records must also reach."""
    window: str = "5m"  # the guide's script ran every 5 minutes
    """The window the records are counted over."""


@dataclass
class BacklogGrowing(Alert):
    window: str = "30m"
    """The deriv() window over which the pending outbox events must grow."""
    max_pending_age: str = "1h"
    """The age of the oldest pending event above which a growing backlog alerts."""


@dataclass
class DiskFillingUp(Alert):
    window: str = "6h"
    """The predict_linear() window of the free-space trend."""
    horizon: str = "24h"
    """How far ahead the trend must reach zero free bytes for the alert to fire."""
    max_free_ratio: float = 0.25  # only predict for a filesystem that is already fairly full
    """The free share of the filesystem below which the trend is looked at."""


@dataclass
class RetentionNotApplied(Alert):
    retention: str = "30d"  # the guide deletes events older than 7 or 30 days
    """The events' retention period: older events should have been deleted."""
    margin: str = "1d"
    """Extra age past `retention` allowed before the alert fires."""


@dataclass
class BackupAge(Alert):
    max_age: str = "26h"  # daily backups (guide 7.1) plus slack for a slow run
    """The age of the last backup (with none, of the oldest event) above which the alert fires."""


@dataclass
class Fragmented(Alert):
    max_free_ratio: float = 0.2
    """The share of free pages in the database file above which the alert fires."""
    min_size_bytes: float = 64 * 1024 ** 2  # VACUUM of a small file is not worth a notification
    """The database size below which free pages do not alert."""


@dataclass
class LogNotRotated(Alert):
    max_size_bytes: float = 100 * 1024 ** 2
    """The log file size above which a missing rotation alerts."""
    window: str = "2d"  # guide rotation is daily
    """How long no rotation may be seen before a large file alerts."""


def default_alerts() -> dict[str, Alert]:
    return {
        # The exporter and its collectors: without them every other rule is blind.
        "DevFlowExporterDown": Alert("critical", "2m"),
        "DevFlowExporterAbsent": Alert("critical", "5m"),
        "DevFlowCollectorFailing": Alert("warning", "5m"),
        # Process (guide 1.2, 1.3, 4.1, 4.3).
        # Down pages only where the server runs as a daemon (devflow.mode); a crash pages in either mode.
        "DevFlowProcessDown": Alert("critical", "1m"),
        "DevFlowServerCrashed": Crashed("critical", "15s"),  # an exit counted once: one more evaluation confirms it
        "DevFlowPortNotListening": Alert("critical", "2m"),
        "DevFlowHighCpuUsage": Threshold("warning", "5m", threshold=0.8),  # of one core, like ps %CPU
        "DevFlowHighMemoryUsage": Threshold("warning", "5m", threshold=0.5),  # of the machine
        "DevFlowMemoryLeak": MemoryLeak("critical", "30m"),
        # Logs (guide 2.2, 4.1, 4.3).
        "DevFlowHighErrorRate": Threshold("warning", "3m", threshold=0.05),
        "DevFlowErrorBurst": ErrorBurst("warning", "1m"),
        "DevFlowHttpErrorRate": Threshold("warning", "3m", threshold=0.05),
        "DevFlowLogNotRotated": LogNotRotated("warning", "1h"),
        # Database and event flow (guide 6.1, 6.2, 7, 8).
        "DevFlowDatabaseUnavailable": Alert("critical", "2m"),
        "DevFlowDatabaseIntegrityFailed": Alert("critical", "1m"),
        "DevFlowEventsNotPersisted": Alert("critical", "15m"),
        "DevFlowEventBacklogGrowing": BacklogGrowing("warning", "15m"),
        "DevFlowDiskFillingUp": DiskFillingUp("warning", "1h"),
        "DevFlowDiskSpaceLow": Threshold("critical", "5m", threshold=0.05),
        "DevFlowRetentionNotApplied": RetentionNotApplied("warning", "1h"),
        "DevFlowBackupStale": BackupAge("warning", "10m"),
        "DevFlowBackupMissing": BackupAge("warning", "1h"),
        "DevFlowDatabaseFragmented": Fragmented("info", "1h"),
        # The HTTP endpoints the guide promises (section 1.1).
        "DevFlowProbeFailing": Alert("warning", "2m"),
        "DevFlowProbeSlow": Threshold("warning", "5m", threshold=0.1),  # checklist: response time < 100 ms
    }


# --- the monitored application ------------------------------------------------------

@dataclass
class App:
    # The public build listens on no port (docs/devflow.md): then "no listener" is its normal state,
    # DevFlowPortNotListening is not generated and a probe finding no listener does not alert.
    expect_listener: bool = False
    """Whether the DevFlow server listens on a port."""
    error_levels: str = "|".join(sorted(ERROR_LEVELS))
    """The record levels counted as errors, `|`-separated, of those core/logformat.py gives a record."""

    @property
    def error_level_set(self) -> frozenset[str]:
        return frozenset(self.error_levels.split("|"))

    @property
    def error_selector(self) -> str:
        """The label matcher of error records, for PromQL."""
        return f'level=~"{self.error_levels}"'


# --- the guide's real-time checklist -------------------------------------------------

@dataclass
class Checklist:
    """Where the dashboards turn a value orange and `doctor` warns: the guide's real-time checklist.

    The red levels (CPU 80%, error ratio 5%, response time 100 ms, RSS 50% of the machine, free
    disk 5%, 10 errors in 100 log lines, backup age) are the alerts' thresholds above: one home each.
    """
    cpu_ratio: float = 0.70  # of one core, like ps %CPU ("CPU below 70%")
    memory_ratio: float = 0.80  # memory used of total, the app's and the machine's ("memory below 80%")
    error_ratio: float = 0.01  # error log records, and 5xx of HTTP responses ("error rate below 1%")
    open_files_ratio: float = 0.80  # open file descriptors of the process's limit
    disk_free_ratio: float = 0.10  # free share of the database's filesystem
    disk_free_min_bytes: float = 1024.0 ** 3  # SQLite needs room for its journal, a backup and VACUUM
    wal_size_bytes: float = 64 * 1024.0 ** 2  # a -wal file this large means checkpoints are held back


# --- Alertmanager -------------------------------------------------------------------

@dataclass
class Route:
    receivers: list[str] = field(default_factory=list)
    repeat_interval: str = "12h"


@dataclass
class Slack:
    api_url_file: str = "secrets/slack_api_url"  # relative to alertmanager.yml
    channel: str = "#devflow-alerts"
    send_resolved: bool = True


@dataclass
class Email:
    to: str = "devflow-oncall@example.com"
    from_: str = "devflow-monitor@example.com"
    smarthost: str = "smtp.example.com:587"
    auth_username: str = "devflow-monitor@example.com"  # empty: no SMTP authentication
    auth_password_file: str = "secrets/smtp_auth_password"
    require_tls: bool = True
    send_resolved: bool = True


def default_routes() -> dict[str, Route]:
    return {
        "critical": Route(["email", "slack"], "4h"),
        "warning": Route(["slack"], "12h"),
        "info": Route(["null"], "24h"),
    }


@dataclass
class Alertmanager:
    group_by: list[str] = field(default_factory=lambda: ["alertname", "instance"])
    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval: str = "12h"
    resolve_timeout: str = "5m"
    default_receiver: str = "slack"  # alerts without a known severity still reach someone
    routes: dict[str, Route] = field(default_factory=default_routes)
    slack: Slack = field(default_factory=Slack)
    email: Email = field(default_factory=Email)


# --- the whole object -----------------------------------------------------------

@dataclass
class Settings:
    selector: str = 'job="devflow"'
    """The label matchers of the exporter's scrape job."""
    rate_window: str = "5m"
    """The rate() window of the shared recording rules."""
    scrape_interval: str = "15s"
    """How often Prometheus scrapes the exporter (Grafana's timeInterval, the built-in dashboards' step)."""
    runbook_url: str = DEFAULT_RUNBOOK_URL
    """Each alert's runbook section; {anchor} is the lower-cased alert name."""
    app: App = field(default_factory=App)
    """The monitored DevFlow server."""
    alerts: dict[str, Alert] = field(default_factory=default_alerts)
    """Every alert's settings, by alert name."""
    checklist: Checklist = field(default_factory=Checklist)
    alertmanager: Alertmanager = field(default_factory=Alertmanager)

    def runbook(self, alertname: str) -> str:
        return self.runbook_url.format(anchor=alertname.lower())

    def runbook_on(self, alertname: str, exporter_url: str) -> str:
        """The alert's runbook section as served by the exporter at `exporter_url` (scheme://host:port), unless
        `runbook_url` was set to something other than the default: then that is where the user keeps it."""
        if self.runbook_url != DEFAULT_RUNBOOK_URL:
            return self.runbook(alertname)
        return f"{exporter_url.rstrip('/')}{RUNBOOK_PATH}#{alertname.lower()}"


def load(path: str | Path | None = None) -> Settings:
    """Defaults, overridden by a YAML (.yml/.yaml) or Jsonnet (.jsonnet/.libsonnet) file."""
    settings = Settings()
    if path is None:
        return settings
    path = Path(path)
    if path.suffix in (".jsonnet", ".libsonnet"):
        overrides = _read_jsonnet(path, to_dict(settings))
    elif path.suffix in (".yml", ".yaml"):
        overrides = read_yaml(path)
    else:
        raise ConfigError(f"{path}: settings file must end in .yml, .yaml, .jsonnet or .libsonnet")
    return apply(settings, overrides, str(path))


def apply(settings: Settings, overrides: dict, source: str = "overrides") -> Settings:
    """A copy of `settings` with `overrides` (nested plain data) merged in and checked."""
    result = copy.deepcopy(settings)
    merge(result, overrides, source)
    _validate(result, source)
    return result


def _read_jsonnet(path: Path, defaults: dict) -> dict:
    """Evaluate `{_config:: defaults} + (import path)` and return its `_config`."""
    try:
        import _jsonnet  # the `jsonnet` package's binding, only in the build extra
    except ImportError:
        raise ConfigError(f"{path}: Jsonnet settings need the jsonnet package: "
                          "pip install 'devflow-monitor[build]', or use a YAML file") from None
    read_text(path)  # the same "cannot read" error as for YAML
    snippet = f"({{ _config:: std.extVar('defaults') }} + (import {json.dumps(str(path.resolve()))}))._config"
    try:
        text = _jsonnet.evaluate_snippet(str(path), snippet, ext_codes={"defaults": json.dumps(defaults)})
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "evaluation failed"
        raise ConfigError(f"{path}: jsonnet: {first}") from None
    return json.loads(text)


def _validate(settings: Settings, source: str) -> None:
    """Checks the types cannot express; each message is `SOURCE: key.path: problem`."""
    def fail(dotted, problem):
        raise ConfigError(f"{source}: {dotted}: {problem}")

    window = check_duration(settings.rate_window, f"{source}: rate_window")
    scrape = check_duration(settings.scrape_interval, f"{source}: scrape_interval")
    if not 0 < scrape <= window / 2:
        fail("scrape_interval", f"must be above 0s and at most half of rate_window ({settings.rate_window}) so that "
                                f"rate() sees two samples, got {settings.scrape_interval!r}")
    unknown = settings.app.error_level_set - set(LEVELS)
    if unknown or not settings.app.error_levels:
        fail("app.error_levels", f"must be levels of {', '.join(LEVELS)} separated by |, got {settings.app.error_levels!r}")
    try:
        settings.runbook("")
    except (KeyError, IndexError, ValueError):  # str.format's complaints about other braces
        fail("runbook_url", f"may use no braces but {{anchor}}, got {settings.runbook_url!r}")
    if "{anchor}" not in settings.runbook_url:
        fail("runbook_url", "must contain {anchor}")
    for name, alert in settings.alerts.items():
        if alert.severity not in SEVERITIES:
            fail(f"alerts.{name}.severity", f"must be one of {', '.join(SEVERITIES)}, got {alert.severity!r}")
        for f in dataclasses.fields(alert):
            value = getattr(alert, f.name)
            if isinstance(value, str) and f.name != "severity":  # every other text field is a duration
                check_duration(value, f"{source}: alerts.{name}.{f.name.rstrip('_')}")
        if seconds(alert.for_) == 0:
            fail(f"alerts.{name}.for", "must be longer than 0s")
    am = settings.alertmanager
    for key in ("group_wait", "group_interval", "repeat_interval", "resolve_timeout"):
        check_duration(getattr(am, key), f"{source}: alertmanager.{key}")
    known = {"slack", "email", "null"}
    for severity, route in am.routes.items():
        check_duration(route.repeat_interval, f"{source}: alertmanager.routes.{severity}.repeat_interval")
        if not route.receivers or set(route.receivers) - known:
            fail(f"alertmanager.routes.{severity}.receivers",
                 f"must list some of {', '.join(sorted(known))}, got {route.receivers}")
    if am.default_receiver not in known:
        fail("alertmanager.default_receiver", f"must be one of {', '.join(sorted(known))}")

