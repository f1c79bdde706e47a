"""The exporter's configuration flags (Prometheus style), shared by `serve` and every command that
reads the exporter's configuration, and `add_command`, the shape every command's parser starts from."""

from __future__ import annotations

import argparse
import inspect

from devflow_monitor.core.config import load

COLLECTORS = ("process", "database", "eventqueue", "logs", "probe", "host")

# flag -> dotted config key; flags win over the config file and the environment.
CONFIG_FLAGS = {
    "--web.listen-address": ("web.listen_address", "HOST:PORT", "address to serve on (default 127.0.0.1:9764)"),
    "--web.telemetry-path": ("web.telemetry_path", "PATH", "path of the metrics endpoint (default /metrics)"),
    "--web.config.file": ("web.config_file", "FILE", "exporter-toolkit web config for TLS and basic auth"),
    "--log.level": ("log_level", "LEVEL", "debug, info, warning or error"),
    "--devflow.mode": ("devflow.mode", "MODE", "daemon (absence is an outage, default) or on_demand (an MCP "
                       "client starts and stops the server: only a crash is a fault)"),
    "--devflow.database": ("devflow.database", "PATH", "DevFlow SQLite database"),
    "--devflow.workdir": ("devflow.workdir", "DIR", "public build's working directory (DIR/data/devflow.db)"),
    "--devflow.pidfile": ("devflow.pidfile", "FILE", "pidfile of the DevFlow server"),
    "--devflow.process-pattern": ("devflow.process_pattern", "REGEX", "regex over the server's command line"),
    "--devflow.port": ("devflow.port", "PORT", "port the DevFlow server listens on (default 3000)"),
    "--devflow.url": ("devflow.url", "URL", "base URL for /health and /status probes"),
}


def add_command(subparsers, name: str, func, *, help: str, config: bool = True,
                **options) -> argparse.ArgumentParser:
    """The parser of command `name`, which runs `func(args)` and is described by its docstring (as click
    does); with `config`, it takes the exporter's configuration flags."""
    parser = subparsers.add_parser(name, help=help, description=inspect.getdoc(func), **options)
    if config:
        add_config_arguments(parser)
    parser.set_defaults(func=func)
    return parser


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every command that reads the exporter's configuration accepts."""
    group = parser.add_argument_group(
        "configuration", "Flags override the config file and DEVFLOW_MONITOR_* environment variables. "
        "--collector.NAME / --no-collector.NAME switch a collector on or off; NAME is one of "
        + ", ".join(COLLECTORS) + ".")
    group.add_argument("--config.file", dest="config_file", metavar="FILE", help="YAML configuration file")
    for flag, (dotted, metavar, help_text) in CONFIG_FLAGS.items():
        group.add_argument(flag, dest=_dest(dotted), metavar=metavar, help=help_text)
    group.add_argument("--devflow.log-files", dest="devflow__log_files", metavar="GLOB", nargs="+",
                       help="log files or globs to tail")
    group.add_argument("--devflow.match-port", dest="devflow__match_port", action="store_true", default=None,
                       help="also take the process listening on --devflow.port for the server")
    for name in COLLECTORS:
        group.add_argument(f"--collector.{name}", dest=f"collector_{name}", action="store_true", default=None,
                           help=argparse.SUPPRESS)
        group.add_argument(f"--no-collector.{name}", dest=f"collector_{name}", action="store_false",
                           help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace):
    """Load the configuration the parsed flags describe; raises ConfigError."""
    overrides: dict[str, object] = {}
    for dotted, _, _ in CONFIG_FLAGS.values():
        value = getattr(args, _dest(dotted), None)
        if value is not None:
            overrides[dotted] = value
    if getattr(args, "devflow__log_files", None):
        overrides["devflow.log_files"] = list(args.devflow__log_files)
    if getattr(args, "devflow__match_port", None):
        overrides["devflow.match_port"] = True
    for name in COLLECTORS:
        enabled = getattr(args, f"collector_{name}", None)
        if enabled is not None:
            overrides[f"collectors.{name}.enabled"] = enabled
    return load(args.config_file, overrides=overrides)


def _dest(dotted: str) -> str:
    return dotted.replace(".", "__")
