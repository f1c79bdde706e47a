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


MINUTE, HOUR, DAY = 60, 3600, 86400
# Paths the exporter serves besides its metrics (exporter/http.py): a telemetry_path among them hides the metrics.
RUNBOOK_PATH = "/runbook"  # where the exporter serves docs/runbook.md
SERVED_PATHS = ("/", "/health", "/status", RUNBOOK_PATH)
# RFC 3986 path characters without percent-encoding: the server compares the request path as sent, undecoded.
_TELEMETRY_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@/-]*")


def between(low: float, high: float, default: float, *, zero_is_off: bool = False):
    """A duration field valid from `low` to `high` (and at 0 when 0 turns its work off). Both ends matter: a
    sleep of 1e-9 s spins a core, and one past about 9.2e9 s raises OverflowError in the thread that sleeps."""
    return field(default=default, metadata={"between": (low, high), "zero_is_off": zero_is_off})


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
    # 10 ms to 1 day: a look is a walk of /proc, cheap at 100 a second, pointless when rarer than daily.
    scan_interval_seconds: float = between(0.01, DAY, 5.0)
    # on_demand: how long the server's MCP client may outlive it before its exit counts as a crash (a client
    # that closes stops its server first, then exits itself). 10 ms to 1 hour: a client closes within seconds.
    exit_grace_seconds: float = between(0.01, HOUR, 5.0)


@dataclass
class DatabaseCollectorConfig:
    enabled: bool = True
    busy_timeout_ms: int = between(0, MINUTE * 1000, 100)  # a scrape waits no more than a minute for a lock
    # Background full count of rows, types, outbox: 100 ms to 1 day (it runs at least 10 times its own duration apart).
    counts_interval_seconds: float = between(0.1, DAY, 60.0)
    # 0 turns the scheduled check off; else 1 second to 1 week (each check reads the whole file).
    integrity_interval_seconds: float = between(1, 7 * DAY, 3600.0, zero_is_off=True)
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
    # Stat interval where inotify is unavailable, else read at each scrape: 10 ms (a stat) to 1 hour.
    poll_interval_seconds: float = between(0.01, HOUR, 2.0)
    access_log_pattern: str = DEFAULT_ACCESS_LOG_PATTERN


@dataclass
class ProbeCollectorConfig:
    enabled: bool = True
    timeout_seconds: float = between(0.01, 5 * MINUTE, 2.0)  # a /health slower than 5 minutes is down
    interval_seconds: float = between(0.01, DAY, 15.0, zero_is_off=True)  # 0 probes on every scrape


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
    retention_days: int = between(1, 100 * 366, 30, zero_is_off=True)  # 0 keeps every backup; a century at most
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


def _fields(tree, prefix: str = ""):
    """(dotted name, field, value) for every setting, e.g. collectors.database.busy_timeout_ms."""
    for f in dataclasses.fields(tree):
        value = getattr(tree, f.name)
        if dataclasses.is_dataclass(value):
            yield from _fields(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f, value


def _leaves(tree) -> dict[str, object]:
    """Every setting by its dotted name, e.g. collectors.database.busy_timeout_ms -> 100."""
    return {dotted: value for dotted, _, value in _fields(tree)}


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
    telemetry_path = config.web.telemetry_path
    if not _TELEMETRY_PATH.fullmatch(telemetry_path):
        fail("web.telemetry_path", "must be a path like /metrics, of letters, digits and -._~!$&'()*+,;=:@/, "
                                   f"got {telemetry_path!r}")
    if telemetry_path in SERVED_PATHS:
        fail("web.telemetry_path", f"{telemetry_path!r} is a page the exporter serves itself "
                                   f"({', '.join(SERVED_PATHS)}): choose another, like /metrics")
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
        port = url.port  # None when absent; ValueError when out of range or not a number
    except ValueError:  # an unclosed [IPv6 host, a port like :abc or :99999
        valid_url, port = False, None
    if not valid_url or port == 0:
        fail("devflow.url", f"must be an http(s) URL with a port from 1 to 65535 if any, got {config.devflow.url!r}")
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
    for dotted, (value, (low, high), zero_is_off) in _bounded(config).items():
        if not (low <= value <= high or (zero_is_off and value == 0)):
            off = "0 (off) or " if zero_is_off else ""
            fail(dotted, f"must be {off}between {low:g} and {high:g}, got {value:g}")


def _bounded(tree) -> dict[str, tuple]:
    """Every field declared with `between()`, by dotted name: (value, (low, high), zero_is_off)."""
    return {dotted: (value, f.metadata["between"], f.metadata["zero_is_off"])
            for dotted, f, value in _fields(tree) if "between" in f.metadata}


def parse_listen_address(address: str, source: str = "listen address") -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 <= int(port) < 65536:
        raise ConfigError(f"{source}: must be HOST:PORT, got {address!r}")
    return host or "0.0.0.0", int(port)
