"""The `devflow-monitor` entry point itself: what every command shares."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import NO_SERVER, ROOT


@pytest.mark.parametrize("command", [
    ("check-config",),
    ("doctor", "--quick", "--devflow.database", "/nonexistent/devflow.db", *NO_SERVER),
], ids=["check-config", "doctor"])
def test_reader_closing_the_pipe_early_exits_141_without_a_traceback(command):
    # A pipe whose reader is gone before the first write: what `cmd | head -1` becomes once head exits.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "devflow_monitor.cli", *command], cwd=ROOT,
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 141

