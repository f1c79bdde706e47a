"""Configuration: defaults from the operations guide, then a YAML file, then
environment variables, then command-line flags (each layer wins over the last).

`load()` returns a valid `Config` or raises `ConfigError` with one readable
line, `SOURCE: key.path: problem` (core/loader.py, shared with the alert
settings); the CLI prints it and exits 2.
"""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from devflow_monitor.core.loader import ConfigError, merge, nested, read_yaml, show, suggest

ENV_PREFIX = "DEVFLOW_MONITOR_"
LOG_LEVELS = ("debug", "info", "warning", "error")

# `node .../server/index.js`, the way both the guide's install and the public build run.
DEFAULT_PROCESS_PATTERN = r"\bnode\b.*\bserver/index\.js\b"
# Common log format plus a response time in seconds or milliseconds at the end.
DEFAULT_ACCESS_LOG_PATTERN = (
    r'^\S+ \S+ \S+ \[[^\]]+\] "[^"]*" (?P<status>\d{3}) \S+(?: "[^"]*" "[^"]*")?'
    r" (?P<duration>[\d.]+)(?P<unit>ms|s)?$"
)


@dataclass
class WebConfig:
    listen_address: str = "127.0.0.1:9764"
    telemetry_path: str = "/metrics"
    config_file: str | None = None  # exporter-toolkit web config: TLS and basic auth


MODES = ("daemon", "on_demand")


@dataclass
class DevflowConfig:
    # How the server is run: daemon (the guide's launchd/systemd unit: its absence is an outage) or on_demand
    # (the public build's real use: an MCP client starts and stops it over stdio; only a crash is a fault).
    mode: str = "daemon"
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
    # Pace of the background look for the server while none runs; 10 times slower for a second one.
    scan_interval_seconds: float = 5.0
    # on_demand: how long the server's MCP client may outlive it before its exit counts as a crash (a client
    # that closes stops its server first, then exits itself).
    exit_grace_seconds: float = 5.0


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
    # Read offsets and counters. {database} is a short hash of the watched database's path: exporters of two
    # DevFlow projects never share one file. Unset (null): offsets kept in memory only.
    state_file: str | None = "~/.local/state/devflow-monitor/log-offsets-{database}.json"
    poll_interval_seconds: float = 2.0  # stat interval where inotify is unavailable; else read at each scrape
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
    # One entry per database backed up (core/backup_status.py): shared by several DevFlows, each exporter reads its own.
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
    config, origins = Config(), {}
    if path is not None:
        merge(config, read_yaml(path), str(path), origins=origins)
    variables = {ENV_PREFIX + dotted.replace(".", "_").upper(): dotted for dotted in _leaves(config)}
    for key, raw in sorted((os.environ if env is None else env).items()):
        if key.startswith(ENV_PREFIX):
            source = f"environment variable {show(key)}"
            if key not in variables:
                raise ConfigError(f"{source}: no such setting{suggest(key, variables)}")
            merge(config, nested(variables[key], raw), source, text=True, origins=origins)
    for dotted, value in (overrides or {}).items():
        merge(config, nested(dotted, value), "command line", text=True, origins=origins)
    _validate(config, origins)
    return config


def _leaves(tree, prefix: str = "") -> dict[str, object]:
    """Every setting by its dotted name, e.g. collectors.database.busy_timeout_ms -> 100."""
    leaves = {}
    for f in dataclasses.fields(tree):
        value = getattr(tree, f.name)
        if dataclasses.is_dataclass(value):
            leaves.update(_leaves(value, f"{prefix}{f.name}."))
        else:
            leaves[prefix + f.name] = value
    return leaves


def _validate(config: Config, origins: dict[str, str]) -> None:
    """Checks across settings; each message names the setting and the layer that set it."""
    def where(dotted):
        return f"{origins.get(dotted, 'defaults')}: {dotted}"

    def fail(dotted, problem):
        raise ConfigError(f"{where(dotted)}: {problem}")

    def path_test(dotted, test) -> bool:
        try:
            return test()
        except (OSError, RuntimeError) as exc:  # a name too long, an unknown ~user
            fail(dotted, f"not a usable path: {exc}")

    for dotted, value in _leaves(config).items():
        if value == "":  # optional settings are None when unset, so empty text is a mistake
            fail(dotted, "must not be empty")
    if config.log_level not in LOG_LEVELS:
        fail("log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {config.log_level!r}")
    parse_listen_address(config.web.listen_address, where("web.listen_address"))
    if not config.web.telemetry_path.startswith("/") or config.web.telemetry_path in ("/", "/health", "/status"):
        fail("web.telemetry_path", f"must be a path like /metrics, got {config.web.telemetry_path!r}")
    web_config = config.web.config_file
    if web_config and not path_test("web.config_file", lambda: Path(web_config).expanduser().is_file()):
        fail("web.config_file", f"{web_config!r} does not exist")
    for dotted, pattern in (("devflow.process_pattern", config.devflow.process_pattern),
                            ("collectors.logs.access_log_pattern", config.collectors.logs.access_log_pattern)):
        try:
            re.compile(pattern)
            re.compile(pattern.encode())  # log lines are matched as bytes
        except (re.error, OverflowError, RecursionError) as exc:
            fail(dotted, f"not a valid regular expression: {exc}")
    if "status" not in re.compile(config.collectors.logs.access_log_pattern).groupindex:
        fail("collectors.logs.access_log_pattern", "needs a named group (?P<status>...)")
    if config.devflow.mode not in MODES:
        fail("devflow.mode", f"must be one of {', '.join(MODES)}, got {config.devflow.mode!r}")
    if not 0 < config.devflow.port < 65536:
        fail("devflow.port", f"must be between 1 and 65535, got {config.devflow.port}")
    try:
        url = urlparse(config.devflow.url)
        valid_url = url.scheme in ("http", "https") and url.hostname
    except ValueError:  # an unclosed [IPv6 host
        valid_url = False
    if not valid_url:
        fail("devflow.url", f"must be an http(s) URL, got {config.devflow.url!r}")
    workdir = config.devflow.workdir
    if workdir and not path_test("devflow.workdir", lambda: Path(workdir).expanduser().is_dir()):
        fail("devflow.workdir", f"{workdir!r} is not a directory")
    database = "devflow.workdir" if workdir else "devflow.database"
    if path_test(database, lambda: config.devflow.database_path.is_dir()):
        fail(database, f"'{config.devflow.database_path}' is a directory, not a database file")
    collectors = config.collectors
    if collectors.database.integrity_check not in ("quick", "full"):
        fail("collectors.database.integrity_check",
             f"must be quick or full, got {collectors.database.integrity_check!r}")
    if collectors.database.max_event_types < 1:
        fail("collectors.database.max_event_types", "must be at least 1")
    for dotted, value in (("collectors.process.scan_interval_seconds", collectors.process.scan_interval_seconds),
                          ("collectors.process.exit_grace_seconds", collectors.process.exit_grace_seconds),
                          ("collectors.database.counts_interval_seconds", collectors.database.counts_interval_seconds),
                          ("collectors.logs.poll_interval_seconds", collectors.logs.poll_interval_seconds),
                          ("collectors.probe.timeout_seconds", collectors.probe.timeout_seconds)):
        if value <= 0:
            fail(dotted, f"must be positive, got {value:g}")


def parse_listen_address(address: str, source: str = "listen address") -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise ConfigError(f"{source}: must be HOST:PORT, got {address!r}")
    return host or "0.0.0.0", int(port)
