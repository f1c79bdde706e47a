"""The metric catalog: Prometheus naming rules, and the generated reference kept fresh."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT

from devflow_monitor.core import catalog

NAME = re.compile(r"devflow_[a-z0-9_]+")
BASE_UNIT_SUFFIXES = ("_bytes", "_seconds", "_total", "_info", "_ratio")


def test_names_follow_prometheus_practice():
    names = [m.name for m in catalog.all_metrics()]
    assert len(names) == len(set(names)), "duplicate metric names"
    for metric in catalog.all_metrics():
        assert NAME.fullmatch(metric.name), metric.name
        assert metric.name.endswith("_total") == (metric.kind == "counter"), metric.name
        assert not re.search(r"_(ms|milliseconds|mb|kb|percent)(_|$)", metric.name), "use base units"
        assert "timestamp" not in metric.name or metric.name.endswith("_timestamp_seconds"), metric.name
        assert metric.help and not metric.help[0].islower() and metric.help.endswith("."), metric.name
        assert "instance" not in metric.labels and "job" not in metric.labels


def test_metrics_reference_is_fresh():
    result = subprocess.run([sys.executable, "-m", "devflow_monitor.generate.metrics_doc", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
