"""The one settings object every rule, route and rule test is built from.

Defaults come from the operations guide (section 4.1 and its shell checks) and
from ../shared/devflow/FACTS.md. Users change them without touching Python:

- YAML: a partial copy of `to_dict(Settings())`, e.g.

      alerts:
        DevFlowHighCpuUsage: {threshold: 0.9, for: 10m}
      app: {expect_listener: true}

- Jsonnet, the monitoring-mixin way: an object whose hidden `_config` field
  is merged over the defaults (available as `super`):

      { _config+:: { alerts+: { DevFlowHighCpuUsage+: { threshold: super.threshold + 0.1, 'for': '10m' } } } }

  (`for` is a Jsonnet keyword, hence the quotes.)

`load(path)` picks the format from the file name and raises `SettingsError`
(one line) on anything it does not understand.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SEVERITIES = ("critical", "warning", "info")
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNITS = (7 * 86400, 86400, 3600, 60, 1)


class SettingsError(Exception):
    """A settings problem, phrased for the person who wrote the override."""


def seconds(duration: str) -> int:
    """Seconds in a Prometheus duration such as "1h30m" (weeks down to seconds)."""
    match = _DURATION.match(duration)
    if not duration or not match:
        raise SettingsError(f"'{duration}' is not a duration like 30s, 5m, 1h or 2d")
    return sum(int(part or 0) * unit for part, unit in zip(match.groups(), _UNITS))


def duration(total_seconds: int) -> str:
    """The shortest Prometheus duration for a whole number of seconds."""
    if total_seconds == 0:
        return "0s"
    parts = []
    for suffix, unit in zip("wdhms", _UNITS):
        count, total_seconds = divmod(total_seconds, unit)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts)


# --- alerts -----------------------------------------------------------------------
# Every alert has these three; subclasses add their thresholds. `for_` is `for` in YAML.

@dataclass
class Alert:
    severity: str = "warning"
    for_: str = "5m"
    enabled: bool = True


@dataclass
class Threshold(Alert):
    threshold: float = 0.0


@dataclass
class MemoryLeak(Alert):
    growth_bytes_per_hour: float = 10 * 1024 ** 2  # guide: "memory.trend > 10 MB/hour"
    window: str = "1h"  # deriv() window; also the uptime before the rule looks at a new process


@dataclass
class ErrorBurst(Alert):
    min_errors: int = 10  # guide: "more than 10 ERROR lines in the last 100 lines"
    min_ratio: float = 0.1  # 10 of 100
    window: str = "5m"  # the guide's script ran every 5 minutes


@dataclass
class BacklogGrowing(Alert):
    window: str = "30m"
    max_pending_age: str = "1h"


@dataclass
class DiskFillingUp(Alert):
    window: str = "6h"
    horizon: str = "24h"
    max_free_ratio: float = 0.25  # only predict for a filesystem that is already fairly full


@dataclass
class RetentionNotApplied(Alert):
    retention: str = "30d"  # the guide deletes events older than 7 or 30 days
    margin: str = "1d"


@dataclass
class BackupAge(Alert):
    max_age: str = "26h"  # daily backups (guide 7.1) plus slack for a slow run


@dataclass
class Fragmented(Alert):
    max_free_ratio: float = 0.2
    min_size_bytes: float = 64 * 1024 ** 2  # VACUUM of a small file is not worth a notification


@dataclass
class LogNotRotated(Alert):
    max_size_bytes: float = 100 * 1024 ** 2
    window: str = "2d"  # guide rotation is daily


def default_alerts() -> dict[str, Alert]:
    return {
        # The exporter and its collectors: without them every other rule is blind.
        "DevFlowExporterDown": Alert("critical", "2m"),
        "DevFlowExporterAbsent": Alert("critical", "5m"),
        "DevFlowCollectorFailing": Alert("warning", "5m"),
        # Process (guide 1.2, 1.3, 4.1, 4.3).
        "DevFlowProcessDown": Alert("critical", "1m"),
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
    # The public build listens on no port (FACTS.md): then "no listener" is its normal state,
    # DevFlowPortNotListening is not generated and a probe finding no listener does not alert.
    expect_listener: bool = False
    error_levels: str = "error|fatal"  # `level` label values counted as errors


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
    selector: str = 'job="devflow"'  # label matchers of the exporter's scrape job
    rate_window: str = "5m"  # rate() window of the shared recording rules
    # Where each alert's runbook section lives; {anchor} is the lower-cased alert name.
    runbook_url: str = "docs/runbook.md#{anchor}"
    app: App = field(default_factory=App)
    alerts: dict[str, Alert] = field(default_factory=default_alerts)
    alertmanager: Alertmanager = field(default_factory=Alertmanager)

    def runbook(self, alertname: str) -> str:
        return self.runbook_url.format(anchor=alertname.lower())


def to_dict(settings: Settings) -> dict:
    """Plain data with the YAML / Jsonnet key names (`for`, `from`)."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name.rstrip("_"): plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value
    return plain(settings)


def load(path: str | Path | None = None) -> Settings:
    """Defaults, overridden by a YAML (.yml/.yaml) or Jsonnet (.jsonnet/.libsonnet) file."""
    settings = Settings()
    if path is None:
        return settings
    path = Path(path)
    if path.suffix in (".jsonnet", ".libsonnet"):
        overrides = _read_jsonnet(path, to_dict(settings))
    elif path.suffix in (".yml", ".yaml"):
        overrides = _read_yaml(path)
    else:
        raise SettingsError(f"{path}: settings file must end in .yml, .yaml, .jsonnet or .libsonnet")
    return apply(settings, overrides, str(path))


def apply(settings: Settings, overrides: dict, source: str = "overrides") -> Settings:
    """A copy of `settings` with `overrides` (nested plain data) merged in and checked."""
    result = copy.deepcopy(settings)
    _merge(result, overrides, source, "")
    _validate(result, source)
    return result


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise SettingsError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _read_jsonnet(path: Path, defaults: dict) -> dict:
    """Evaluate `{_config:: defaults} + (import path)` and return its `_config`."""
    import _jsonnet  # the `jsonnet` package's binding

    if not path.is_file():
        raise SettingsError(f"{path}: no such file")
    snippet = f"({{ _config:: std.extVar('defaults') }} + (import {json.dumps(str(path.resolve()))}))._config"
    try:
        text = _jsonnet.evaluate_snippet(str(path), snippet, ext_codes={"defaults": json.dumps(defaults)})
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "evaluation failed"
        raise SettingsError(f"{path}: jsonnet: {first}") from None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: _config must be an object, got {type(data).__name__}")
    return data


def _merge(target, mapping, source: str, prefix: str) -> None:
    if not isinstance(mapping, dict):
        raise SettingsError(f"{source}: '{prefix.rstrip('.') or 'top level'}' must be a mapping")
    if isinstance(target, dict):
        for key, value in mapping.items():
            if key not in target:
                raise SettingsError(f"{source}: unknown key '{prefix}{key}'{_suggest(key, target)}")
            _merge(target[key], value, source, f"{prefix}{key}.")
        return
    names = {f.name.rstrip("_"): f.name for f in dataclasses.fields(target)}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise SettingsError(f"{source}: unknown key '{dotted}'{_suggest(key, names)}")
        current = getattr(target, names[key])
        if dataclasses.is_dataclass(current) or isinstance(current, dict):
            _merge(current, value, source, dotted + ".")
        else:
            setattr(target, names[key], _convert(current, value, f"{source}: '{dotted}'"))


def _convert(current, value, where: str):
    """`value` if it has the type of the default it replaces (an int may stand for a float)."""
    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(current, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(current, list):
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise SettingsError(f"{where}: expected {_kind(current)}, got {type(value).__name__} {value!r}")
    return value


def _validate(settings: Settings, source: str) -> None:
    def check_duration(text, where):
        try:
            seconds(text)
        except SettingsError as exc:
            raise SettingsError(f"{source}: {where}: {exc}") from None

    check_duration(settings.rate_window, "rate_window")
    if "{anchor}" not in settings.runbook_url:
        raise SettingsError(f"{source}: runbook_url must contain {{anchor}}")
    for name, alert in settings.alerts.items():
        if alert.severity not in SEVERITIES:
            raise SettingsError(f"{source}: alerts.{name}.severity must be one of {', '.join(SEVERITIES)}, "
                                f"got '{alert.severity}'")
        for f in dataclasses.fields(alert):
            value = getattr(alert, f.name)
            if isinstance(value, str) and f.name != "severity":  # every other text field is a duration
                check_duration(value, f"alerts.{name}.{f.name.rstrip('_')}")
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise SettingsError(f"{source}: alerts.{name}.{f.name} must not be negative")
        if seconds(alert.for_) == 0:
            raise SettingsError(f"{source}: alerts.{name}.for must be longer than 0s")
    am = settings.alertmanager
    for where in ("group_wait", "group_interval", "repeat_interval", "resolve_timeout"):
        check_duration(getattr(am, where), f"alertmanager.{where}")
    known = {"slack", "email", "null"}
    for severity, route in am.routes.items():
        check_duration(route.repeat_interval, f"alertmanager.routes.{severity}.repeat_interval")
        unknown = set(route.receivers) - known
        if not route.receivers or unknown:
            raise SettingsError(f"{source}: alertmanager.routes.{severity}.receivers must list some of "
                                f"{', '.join(sorted(known))}, got {route.receivers}")
    if am.default_receiver not in known:
        raise SettingsError(f"{source}: alertmanager.default_receiver must be one of {', '.join(sorted(known))}")


def _suggest(key, names) -> str:
    close = difflib.get_close_matches(str(key), list(names), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _kind(value) -> str:
    return {bool: "true or false", float: "a number", int: "an integer", list: "a list of text"}.get(
        type(value), "text")
