"""Write the dashboards' JSON to dashboards/json/ (`make dashboards`).

    python -m dashboards.build            # regenerate; prints what changed
    python -m dashboards.build --check    # exit 1 if the committed JSON is stale

The JSON is committed so Grafana (and people reviewing a change) see exactly what
the code produces; `--check` is how a test or CI notices code changed without it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from dashboards import DASHBOARDS
from dashboards.grafana import dumps, render

JSON_DIR = Path(__file__).resolve().parent / "json"


def render_all() -> dict[str, str]:
    """File name -> JSON text for every dashboard, in DASHBOARDS order."""
    return {f"{name}.json": dumps(render(importlib.import_module(f"dashboards.{name}").dashboard))
            for name in DASHBOARDS}


def stale_files(json_dir: Path = JSON_DIR) -> list[str]:
    """Files that differ from the code's output, are missing, or belong to no dashboard."""
    wanted = render_all()
    stale = [name for name, text in wanted.items()
             if not (json_dir / name).is_file() or (json_dir / name).read_text() != text]
    orphans = sorted(p.name for p in json_dir.glob("*.json") if p.name not in wanted)
    return stale + orphans


def write(json_dir: Path = JSON_DIR) -> list[str]:
    """Bring json_dir up to date; return the names written or removed."""
    changed = stale_files(json_dir)
    json_dir.mkdir(parents=True, exist_ok=True)
    wanted = render_all()
    for name in changed:
        if name in wanted:
            (json_dir / name).write_text(wanted[name])
        else:  # a renamed or dropped dashboard: Grafana would keep loading the old file
            (json_dir / name).unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if dashboards/json is stale; write nothing")
    parser.add_argument("--out", type=Path, default=JSON_DIR, help="directory for the JSON (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        for name in stale:
            print(f"stale: {args.out / name}", file=sys.stderr)
        if stale:
            print("run `make dashboards` and commit dashboards/json/", file=sys.stderr)
        return 1 if stale else 0
    changed = write(args.out)
    for name in changed:
        print(f"{'wrote' if (args.out / name).exists() else 'removed'} {args.out / name}")
    if not changed:
        print(f"{args.out}: {len(DASHBOARDS)} dashboards up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
