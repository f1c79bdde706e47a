"""Write the dashboards' JSON to dashboards/json/ (`make dashboards`).

    python -m devflow_monitor.dashboards.build            # regenerate; prints what changed
    python -m devflow_monitor.dashboards.build --check    # exit 1 if the committed JSON is stale

The JSON is committed so Grafana (and people reviewing a change) see exactly what
the code produces; `--check` is how a test or CI notices code changed without it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from devflow_monitor.dashboards import DASHBOARDS
from devflow_monitor.dashboards.grafana import dumps, render
from devflow_monitor.generate.files import sync

JSON_DIR = Path(__file__).resolve().parent / "json"


def render_all() -> dict[str, str]:
    """File name -> JSON text for every dashboard, in DASHBOARDS order."""
    return {f"{name}.json": dumps(render(importlib.import_module(f"dashboards.{name}").dashboard))
            for name in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devflow_monitor.dashboards.build", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if dashboards/json is stale; write nothing")
    parser.add_argument("--out", type=Path, default=JSON_DIR, help="directory for the JSON (default: %(default)s)")
    args = parser.parse_args(argv)
    return sync(render_all(), args.out, check=args.check, remake="make dashboards", orphans="*.json")


if __name__ == "__main__":
    sys.exit(main())
