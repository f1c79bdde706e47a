"""Write the dashboards' JSON to dashboards/json/ (`make dashboards`).

    python -m devflow_monitor.dashboards.build                     # regenerate; prints what changed
    python -m devflow_monitor.dashboards.build --check             # exit 1 if the committed JSON is stale
    python -m devflow_monitor.dashboards.build --settings my.yml   # thresholds from a YAML or Jsonnet override

The JSON is committed so Grafana (and people reviewing a change) see exactly what
the code produces; `--check` is how a test or CI notices code changed without it.
`--settings` takes the file `python -m devflow_monitor.alerting.build --settings` takes,
so the panels colour at the thresholds the alerts fire at.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from devflow_monitor.core.settings import Settings, SettingsError, load
from devflow_monitor.dashboards import DASHBOARDS
from devflow_monitor.dashboards.grafana import dumps, render
from devflow_monitor.generate.committed import sync

JSON_DIR = Path(__file__).resolve().parent / "json"


def render_all(settings: Settings | None = None) -> dict[str, str]:
    """File name -> JSON text for every dashboard, in DASHBOARDS order (default settings when None)."""
    settings = settings or Settings()
    return {f"{name}.json": dumps(render(importlib.import_module(f"devflow_monitor.dashboards.{name}")
                                         .dashboard(settings)))
            for name in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devflow_monitor.dashboards.build",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if dashboards/json is stale; write nothing")
    parser.add_argument("--out", type=Path, default=JSON_DIR, help="directory for the JSON (default: %(default)s)")
    parser.add_argument("--settings", metavar="FILE",
                        help="YAML or Jsonnet override of the thresholds (as for alerting.build; default: built in)")
    args = parser.parse_args(argv)
    try:
        settings = load(args.settings)
    except SettingsError as exc:
        print(f"dashboards.build: error: {exc}", file=sys.stderr)
        return 2
    return sync(render_all(settings), args.out, check=args.check, remake="make dashboards", orphans="*.json")


if __name__ == "__main__":
    sys.exit(main())
