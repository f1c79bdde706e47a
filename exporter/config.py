"""Configuration: defaults from the operations guide, then a YAML file, then
environment variables, then command-line flags (each layer wins over the last).

`load()` returns a valid `Config` or raises `ConfigError` with one readable
line; the CLI prints it and exits 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import yaml

ENV_PREFIX = "DEVFLOW_MONITOR_"
LOG_LEVELS = ("debug", "info", "warning", "error")

# `node .../server/index.js`, the way both the guide's install and the public build run.
DEFAULT_PROCESS_PATTERN = r"\bnode\b.*\bserver/index\.js\b"
# Common log format plus a response time in seconds or milliseconds at the end.
DEFAULT_ACCESS_LOG_PATTERN = (
    r'^\S+ \S+ \S+ \[[^\]]+\] "[^"]*" (?P<status>\d{3}) \S+(?: "[^"]*" "[^"]*")?'
    r" (?P<duration>[\d.]+)(?P<unit>ms|s)?$"
)


class ConfigError(Exception):
    """A configuration problem, phrased for the person who wrote the config."""


@dataclass
class WebConfig:
    listen_address: str = "127.0.0.1:9764"
    telemetry_path: str = "/metrics"
    config_file: str | None = None  # exporter-toolkit web config: TLS and basic auth


@dataclass
class DevflowConfig:
    database: str = "~/.config/mcp/devflow-monitor/devflow.db"
    workdir: str | None = None  # public build: the database is always <workdir>/data/devflow.db
    pidfile: str | None = None
    process_pattern: str = DEFAULT_PROCESS_PATTERN
    port: int = 3000
    match_port: bool = False  # also take the process listening on `port` for the server
    url: str = "http://127.0.0.1:3000"
    log_files: list[str] = field(default_factory=lambda: [
        "/var/log/devflow/server.log", "/var/log/devflow/error.log",
        "/tmp/devflow-monitor.out", "/tmp/devflow-monitor.err"])
    access_log: str | None = "/var/log/devflow/access.log"

    @property
    def database_path(self) -> Path:
        if self.workdir:
            return Path(self.workdir).expanduser() / "data" / "devflow.db"
        return Path(self.database).expanduser()


@dataclass
class ProcessCollectorConfig:
    enabled: bool = True
    scan_interval_seconds: float = 5.0  # background scan for new or additional matches


@dataclass
class DatabaseCollectorConfig:
    enabled: bool = True
    busy_timeout_ms: int = 100
    counts_interval_seconds: float = 60.0  # background full count of rows, types, outbox
    integrity_interval_seconds: float = 3600.0
    integrity_check: str = "quick"  # quick_check or the full integrity_check
    max_event_types: int = 64  # distinct type labels before the rest fold into "other"


@dataclass
class EventQueueCollectorConfig:
    enabled: bool = True


@dataclass
class LogsCollectorConfig:
    enabled: bool = True
    state_file: str = "~/.local/state/devflow-monitor/log-offsets.json"
    poll_interval_seconds: float = 2.0  # stat safety net behind watchdog's events
    access_log_pattern: str = DEFAULT_ACCESS_LOG_PATTERN


@dataclass
class ProbeCollectorConfig:
    enabled: bool = True
    timeout_seconds: float = 2.0
    interval_seconds: float = 15.0  # 0 probes on every scrape


@dataclass
class HostCollectorConfig:
    enabled: bool = True


@dataclass
class CollectorsConfig:
    process: ProcessCollectorConfig = field(default_factory=ProcessCollectorConfig)
    database: DatabaseCollectorConfig = field(default_factory=DatabaseCollectorConfig)
    eventqueue: EventQueueCollectorConfig = field(default_factory=EventQueueCollectorConfig)
    logs: LogsCollectorConfig = field(default_factory=LogsCollectorConfig)
    probe: ProbeCollectorConfig = field(default_factory=ProbeCollectorConfig)
    host: HostCollectorConfig = field(default_factory=HostCollectorConfig)


@dataclass
class BackupConfig:
    directory: str = "~/.config/mcp/devflow-monitor/backups"
    retention_days: int = 30
    status_file: str = "~/.local/state/devflow-monitor/backup-status.json"


@dataclass
class Config:
    log_level: str = "info"
    web: WebConfig = field(default_factory=WebConfig)
    devflow: DevflowConfig = field(default_factory=DevflowConfig)
    collectors: CollectorsConfig = field(default_factory=CollectorsConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)


def load(path: str | os.PathLike | None = None, *, env: typing.Mapping[str, str] | None = None,
         overrides: typing.Mapping[str, object] | None = None) -> Config:
    """Build a Config from defaults, the YAML file, the environment and flag overrides."""
    config = Config()
    if path is not None:
        _apply_mapping(config, _read_yaml(path), str(path))
    env = os.environ if env is None else env
    for key, raw in sorted(env.items()):
        if key.startswith(ENV_PREFIX):
            dotted = _env_key_to_path(config, key)
            _set(config, dotted, raw, f"environment variable {key}", from_text=True)
    for dotted, value in (overrides or {}).items():
        _set(config, dotted, value, f"command-line flag for '{dotted}'", from_text=isinstance(value, str))
    _validate(config)
    return config


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def _read_yaml(path) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: {problem}{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _apply_mapping(obj, mapping: dict, source: str, prefix: str = "") -> None:
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        key = str(key).replace("-", "_")
        if key not in names:
            raise ConfigError(f"{source}: unknown key '{dotted}'{_suggest(key, names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{dotted}' must be a mapping, got {_describe(value)}")
            _apply_mapping(current, value, source, dotted + ".")
        else:
            _set(config=obj, dotted=key, value=value, source=f"{source}: '{dotted}'", from_text=False)


def _set(config, dotted: str, value, source: str, *, from_text: bool) -> None:
    *parents, leaf = dotted.split(".")
    obj = config
    for part in parents:
        obj = getattr(obj, part)
    hints = typing.get_type_hints(type(obj))
    if leaf not in hints:
        raise ConfigError(f"{source}: unknown setting '{dotted}'")
    setattr(obj, leaf, _convert(value, hints[leaf], source, from_text))


def _convert(value, hint, source: str, from_text: bool):
    args = typing.get_args(hint)
    optional = (typing.get_origin(hint) in (typing.Union, types.UnionType)) and type(None) in args
    if optional:
        if value is None or (from_text and value == ""):
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_text and str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if from_text and str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{source}: expected true or false, got {_describe(value)}")
    if hint in (int, float):
        expected = "an integer" if hint is int else "a number"
        if isinstance(value, bool) or not (isinstance(value, (int, float)) or from_text):
            raise ConfigError(f"{source}: expected {expected}, got {_describe(value)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: expected {expected}, got {_describe(value)}") from None
        if not math.isfinite(number) or (hint is int and not number.is_integer()):
            raise ConfigError(f"{source}: expected {expected}, got {_describe(value)}")
        if number < 0:
            raise ConfigError(f"{source}: must not be negative, got {value}")
        return hint(number)
    if hint is str:
        if not isinstance(value, str) or (not from_text and value == ""):
            raise ConfigError(f"{source}: expected text, got {_describe(value)}")
        return value
    if typing.get_origin(hint) is list:
        if from_text and isinstance(value, str):
            value = [part for part in value.split(",") if part]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{source}: expected a list of text, got {_describe(value)}")
        return list(value)
    raise AssertionError(f"unsupported config type {hint}")


def _env_key_to_path(config: Config, key: str) -> str:
    """DEVFLOW_MONITOR_COLLECTORS_DATABASE_BUSY_TIMEOUT_MS -> collectors.database.busy_timeout_ms"""
    rest = key[len(ENV_PREFIX):].lower()
    obj, path = config, []
    while True:
        names = sorted((f.name for f in dataclasses.fields(obj)), key=len, reverse=True)
        match = next((n for n in names if rest == n or rest.startswith(n + "_")), None)
        if match is None:
            raise ConfigError(f"environment variable {key}: no such setting")
        path.append(match)
        rest = rest[len(match) + 1:]
        value = getattr(obj, match)
        if not dataclasses.is_dataclass(value):
            if rest:
                raise ConfigError(f"environment variable {key}: no such setting")
            return ".".join(path)
        obj = value


def _validate(config: Config) -> None:
    """Checks across settings; each message names the setting, whichever layer set it."""
    def fail(message):
        raise ConfigError(f"invalid configuration: {message}")

    if config.log_level not in LOG_LEVELS:
        fail(f"log_level must be one of {', '.join(LOG_LEVELS)}, got '{config.log_level}'")
    parse_listen_address(config.web.listen_address, "web.listen_address")
    if not config.web.telemetry_path.startswith("/") or config.web.telemetry_path in ("/", "/health", "/status"):
        fail(f"web.telemetry_path must be a path like /metrics, got '{config.web.telemetry_path}'")
    if config.web.config_file and not Path(config.web.config_file).expanduser().is_file():
        fail(f"web.config_file '{config.web.config_file}' does not exist")
    for name, pattern in (("devflow.process_pattern", config.devflow.process_pattern),
                          ("collectors.logs.access_log_pattern", config.collectors.logs.access_log_pattern)):
        if not pattern:
            fail(f"{name} must not be empty (it would match everything)")
        try:
            re.compile(pattern)
            re.compile(pattern.encode())  # log lines are matched as bytes
        except re.error as exc:
            fail(f"{name} is not a valid regular expression: {exc}")
    if "status" not in re.compile(config.collectors.logs.access_log_pattern).groupindex:
        fail("collectors.logs.access_log_pattern needs a named group (?P<status>...)")
    if not 0 < config.devflow.port < 65536:
        fail(f"devflow.port must be between 1 and 65535, got {config.devflow.port}")
    url = urlparse(config.devflow.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        fail(f"devflow.url must be an http(s) URL, got '{config.devflow.url}'")
    if config.devflow.workdir and not Path(config.devflow.workdir).expanduser().is_dir():
        fail(f"devflow.workdir '{config.devflow.workdir}' is not a directory")
    if config.devflow.database_path.is_dir():
        fail(f"devflow.database '{config.devflow.database_path}' is a directory, not a database file")
    database = config.collectors.database
    if database.integrity_check not in ("quick", "full"):
        fail(f"collectors.database.integrity_check must be quick or full, got '{database.integrity_check}'")
    if database.max_event_types < 1:
        fail("collectors.database.max_event_types must be at least 1")
    for name, value in (("collectors.process.scan_interval_seconds", config.collectors.process.scan_interval_seconds),
                        ("collectors.database.counts_interval_seconds", database.counts_interval_seconds),
                        ("collectors.logs.poll_interval_seconds", config.collectors.logs.poll_interval_seconds),
                        ("collectors.probe.timeout_seconds", config.collectors.probe.timeout_seconds)):
        if value <= 0:
            fail(f"{name} must be positive, got {value:g}")


def parse_listen_address(address: str, source: str = "listen address") -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{source}: listen address must be HOST:PORT, got '{address}'")
    return host or "0.0.0.0", int(port)


def _suggest(key: str, names) -> str:
    close = difflib.get_close_matches(key, list(names), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _describe(value) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__
