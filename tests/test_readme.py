"""The README stays true: every command and make target it shows exists and answers."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

from conftest import ROOT, cli
from devflow_monitor.cli import build_parser
from devflow_monitor.stack.options import TARGET_VARIABLES, Target, settings_from_args

README = (ROOT / "README.md").read_text()


def test_every_subcommand_the_readme_shows_exists():
    subcommands = set(re.findall(r"devflow-monitor ([a-z][a-z-]+)", README))
    assert {"serve", "check-config", "doctor", "backup", "restore", "maintain", "dashboard", "simulate"} <= subcommands
    for name in sorted(subcommands):
        result = cli(name, "--help")
        assert result.returncode == 0, f"`devflow-monitor {name}` in the README: {result.stderr}"


def test_every_make_target_the_readme_shows_exists():
    targets = set(re.findall(r"`make ([a-z]+)`", README)) | set(re.findall(r"^make ([a-z]+)", README, re.M))
    assert {"demo", "test", "up", "down", "bench", "rules"} <= targets
    for target in sorted(targets):
        result = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, f"`make {target}` in the README: {result.stderr}"


def test_readme_config_example_validates():
    result = cli("check-config", "--config.file", "devflow-monitor.yml")
    assert result.returncode == 0, result.stderr


def test_readme_public_build_command_and_its_make_form_point_the_exporter_at_the_same_target(tmp_path, monkeypatch):
    make_line = next(line for line in README.splitlines() if line.startswith("make up DEVFLOW_WORKDIR="))
    command = re.search(r"`\.venv/bin/devflow-monitor (stack up --devflow\.[^`]+)`", README).group(1).split()
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in TARGET_VARIABLES.values():
        monkeypatch.delenv(variable, raising=False)
    workdir = tmp_path / "src" / "project"
    workdir.mkdir(parents=True)
    make = subprocess.run(["make", "--no-print-directory", "-n", *shlex.split(make_line)[1:]], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert make.returncode == 0, make.stderr
    printed = shlex.split(make.stdout.splitlines()[-1])
    assert printed[0].endswith("devflow-monitor")

    def target_of(argv: list[str]) -> Target:
        return settings_from_args(build_parser(argv).parse_args(argv)).target

    assert target_of(printed[1:]) == target_of(command) == Target(
        workdir=str(workdir), log_files=(f"{workdir}/devflow.out", f"{workdir}/devflow.err"), mode="on_demand")
