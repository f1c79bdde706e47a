"""The README stays true: every command and make target it shows exists and answers."""

from __future__ import annotations

import re
import subprocess

from conftest import ROOT, cli

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
