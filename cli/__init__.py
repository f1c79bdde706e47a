"""`devflow-monitor COMMAND`: the one entry point for the daemon, the operator commands, the
simulator and the stack.

Only the chosen command's module is imported, so `serve` loads the daemon and nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from devflow_monitor.exporter import __version__
from devflow_monitor.exporter.config import ConfigError

# command -> module defining `register(subparsers)`; its parser's `func(args)` returns the exit status.
COMMANDS = {
    "serve": "devflow_monitor.exporter.serve",
    "check-config": "devflow_monitor.exporter.serve",
    "simulate": "devflow_monitor.simulator.simulate",
    "stack": "devflow_monitor.stack.runner",
    "doctor": "devflow_monitor.ops.doctor",
    "backup": "devflow_monitor.ops.backup",
    "restore": "devflow_monitor.ops.restore",
    "maintain": "devflow_monitor.ops.maintain",
    "dashboard": "devflow_monitor.ops.dashboard",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`'s command alone, or for every command when none is named (help, typos)."""
    parser = argparse.ArgumentParser(
        prog="devflow-monitor",
        description="Prometheus exporter and operator tools for the DevFlow Monitor MCP server.")
    parser.add_argument("--version", action="version", version=f"devflow-monitor {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    named = next((arg for arg in argv or [] if not arg.startswith("-")), None)
    modules = [COMMANDS[named]] if named in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for module_name in modules:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"devflow-monitor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
