"""`devflow-monitor COMMAND`: the one entry point for the daemon, the operator commands, the
simulator and the stack.

Only the chosen command's module is imported, so `serve` loads the daemon and nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import sys

from devflow_monitor.core import __version__
from devflow_monitor.core.config import ConfigError

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
    "webdash": "devflow_monitor.webdash.serve",
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


# What a shell reports for a program killed by SIGPIPE (128 + 13): `cmd | head` under `set -o pipefail`
# sees the output was cut, as with cat or grep, and no command claims a verdict it never finished printing.
EXIT_BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return run_command(sys.argv[1:] if argv is None else argv)
        finally:
            sys.stdout.flush()  # a reader that went away shows here, not in the interpreter's exit flush
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a socket's broken pipe is a bug to see, not a reader that stopped reading
        # The interpreter flushes stdout again at exit; point it at /dev/null so that flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def run_command(argv: list[str]) -> int:
    args = build_parser(argv).parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"devflow-monitor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _stdout_closed() -> bool:
    """Whether stdout is a pipe or socket whose reader has gone (poll reports an error or hang-up)."""
    poller = select.poll()
    poller.register(sys.stdout.fileno(), 0)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
