"""`python -m devflow_monitor.generate.metrics_doc [--check]`: docs/metrics.md from the metric catalog."""

from __future__ import annotations

import sys
from pathlib import Path

from devflow_monitor.core import catalog
from devflow_monitor.generate.committed import sync

DOCS = Path(__file__).resolve().parent.parent / "docs"


def markdown() -> str:
    """The metrics reference, generated so it cannot drift from the catalog."""
    lines = ["# Metrics", "", "Generated from `core/catalog.py` by `make docs`; do not edit.", "",
             "| Metric | Type | Labels | Meaning |", "| --- | --- | --- | --- |"]
    for metric in catalog.all_metrics():
        labels = ", ".join(f"`{label}`" for label in metric.labels)
        lines.append(f"| `{metric.name}` | {metric.kind} | {labels} | {metric.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(sync({"metrics.md": markdown()}, DOCS, check="--check" in sys.argv, remake="make docs"))
