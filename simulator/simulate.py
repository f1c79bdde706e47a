"""`devflow-monitor simulate`: a stand-in for the DevFlow Monitor MCP server.

This is NOT the DevFlow server. It imitates what the monitoring bundle can see
of it (docs/devflow.md), so that demos and tests have a live target whose faults can be
switched on and off:

- a real SQLite database in WAL mode with the server's schema
  (core/devflow_db.py), receiving events of the real types at --rate events
  per second, and a sync worker that marks rows 'synced' (engine.py);
- log lines in the real formats in --log-dir, following rotation (logs.py);
- the guide's GET /health and GET /status JSON, and fault switches:
  POST /faults/NAME, DELETE /faults/NAME, GET /faults (http.py);
- the faults themselves (faults.py) and the process's lifecycle (server.py).

This module is the command: its flags and their checks. The simulator's modules are imported
only when it runs, so `devflow-monitor --help` loads none of them but faults.py.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from devflow_monitor.core.commands import add_command
from devflow_monitor.core.config import ConfigError
from devflow_monitor.simulator.faults import FAULTS


def register(subparsers) -> None:
    parser = add_command(subparsers, "simulate", run, config=False,
                         help="run a stand-in DevFlow server (demo and test target, not the real server)",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="faults:\n" + "\n".join(f"  {name:<15} {text}" for name, text in FAULTS.items()))
    parser.add_argument("--database", metavar="PATH", help="SQLite database to write (created when missing)")
    parser.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:3000",
                        help="HTTP address for /health, /status and /faults, or 'none' for no HTTP at all "
                             "like the public build (default 127.0.0.1:3000)")
    parser.add_argument("--log-dir", metavar="DIR", help="directory for the log files (default: write none)")
    parser.add_argument("--rate", metavar="EVENTS_PER_SECOND", default="5",
                        help="events per second across all types (default 5)")
    parser.add_argument("--fault", metavar="NAME", nargs="+", action="extend", default=[],
                        help="faults active from the start: " + ", ".join(FAULTS))
    parser.add_argument("--pidfile", metavar="FILE", help="write the process id here; removed at exit")
    parser.add_argument("--seed", metavar="N", help="seed for the event mix, to repeat a run")


def run(args: argparse.Namespace) -> int:
    """Run a stand-in for the DevFlow Monitor MCP server, for demos and tests; it is not the
    real server. It writes events of the real types into a real SQLite database (WAL, real
    schema), writes log lines in the real formats, serves the guide's /health and /status,
    and injects faults on request: POST /faults/NAME switches one on, DELETE /faults/NAME
    off, GET /faults lists them."""
    options = _check_arguments(args)
    import sqlite3

    from devflow_monitor.simulator.server import Simulator

    try:
        simulator = Simulator(**options)
    except (OSError, sqlite3.Error) as exc:
        print(f"devflow-monitor simulate: error: {exc}", file=sys.stderr)
        return 1
    return simulator.run()


def _check_arguments(args: argparse.Namespace) -> dict:
    """Turn the flags into Simulator arguments; raises ConfigError (one line, exit 2)."""
    if not args.database:
        raise ConfigError("simulate: --database PATH is required")
    unknown = [name for name in args.fault if name not in FAULTS]
    if unknown:
        raise ConfigError(f"simulate: unknown fault '{unknown[0]}' (known: {', '.join(FAULTS)})")
    try:
        rate = float(args.rate)
    except ValueError:
        rate = -1.0
    if not (math.isfinite(rate) and 0 <= rate <= 100_000):
        raise ConfigError(f"simulate: --rate must be a number of events per second from 0 to 100000, "
                          f"not '{args.rate}'")
    seed = None
    if args.seed is not None:
        try:
            seed = int(args.seed)
        except ValueError:
            raise ConfigError(f"simulate: --seed must be an integer, not '{args.seed}'") from None
    return {"database": Path(args.database).expanduser(), "listen": _parse_listen(args.listen),
            "log_dir": Path(args.log_dir).expanduser() if args.log_dir else None, "rate": rate,
            "faults": args.fault, "pidfile": Path(args.pidfile).expanduser() if args.pidfile else None,
            "seed": seed}


def _parse_listen(value: str) -> tuple[str, int] | None:
    if value.lower() == "none":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"simulate: --listen must be HOST:PORT or 'none', not '{value}'")
    return host.strip("[]") or "127.0.0.1", int(port)
