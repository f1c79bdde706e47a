"""Every command's --help: the description is its `run` docstring (core/commands.py `add_command`)."""

from __future__ import annotations

import importlib
import inspect

import pytest

from conftest import cli
from devflow_monitor.cli import COMMANDS

DESCRIBED_BY_RUN = ("doctor", "backup", "restore", "maintain", "dashboard", "simulate", "webdash")


@pytest.mark.parametrize("command", DESCRIBED_BY_RUN)
def test_help_describes_the_command_with_its_run_docstring(command):
    described = inspect.getdoc(importlib.import_module(COMMANDS[command]).run)
    result = cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert " ".join(described.split()) in " ".join(result.stdout.split())
