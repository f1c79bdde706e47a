"""packaging/: systemd units verified by systemd-analyze, plists parsed by plistlib, every command line
they run accepted by the real CLI parser, and the logrotate file run by real logrotate under a writer."""

from __future__ import annotations

import gzip
import grp
import os
import plistlib
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import ROOT, requires, wait_until
from test_ops_support import start_fake_server

from devflow_monitor.cli import build_parser

PACKAGING = ROOT / "packaging"
UNITS = sorted((PACKAGING / "systemd").iterdir())
PLISTS = sorted((PACKAGING / "launchd").glob("*.plist"))
INSTALLED_BINARY = "/usr/local/bin/devflow-monitor"


def test_every_scheduled_job_and_service_has_its_files():
    names = {p.name for p in UNITS}
    assert names == {"devflow-monitor-exporter.service", "devflow-monitor-backup.service",
                     "devflow-monitor-backup.timer", "devflow-monitor-maintain.service",
                     "devflow-monitor-maintain.timer"}
    assert {p.stem for p in PLISTS} == {"com.devflow.monitor.exporter", "com.devflow.monitor.backup",
                                        "com.devflow.monitor.maintain"}


@requires("systemd-analyze")
def test_units_pass_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart exists: point it at this checkout's binary, the one change an
    # installer makes too (packaging/README.md).
    binary = shutil.which("devflow-monitor", path=str(Path(sys.executable).parent)) or INSTALLED_BINARY
    for unit in UNITS:
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED_BINARY, binary))
    result = subprocess.run(["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and re.search(r"bus|Failed to (initialize|connect)|container", result.stderr, re.I) \
            and "devflow-monitor" not in result.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"systemd-analyze warned: {result.stderr}"


@requires("systemd-analyze")
@pytest.mark.parametrize("timer, weekday", [("devflow-monitor-backup.timer", None),
                                            ("devflow-monitor-maintain.timer", "Sun")])
def test_timers_run_daily_backup_and_weekly_maintenance(timer, weekday):
    calendar = _key(PACKAGING / "systemd" / timer, "OnCalendar")
    result = subprocess.run(["systemd-analyze", "calendar", "--iterations", "3", calendar],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    elapses = re.findall(r"(?:Next elapse|Iter\. #\d+): (\w{3}) (\d{4}-\d\d-\d\d)", result.stdout)
    days = [time.mktime(time.strptime(d, "%Y-%m-%d")) for _, d in elapses]
    gaps = {round((b - a) / 86400) for a, b in zip(days, days[1:])}
    assert gaps == ({7} if weekday else {1}), result.stdout
    if weekday:
        assert {day for day, _ in elapses} == {weekday}
    assert _key(PACKAGING / "systemd" / timer, "Persistent") == "true"


@pytest.mark.parametrize("unit", [u for u in UNITS if u.suffix == ".service"], ids=lambda p: p.name)
def test_unit_command_lines_are_accepted_by_the_cli(unit):
    argv = shlex.split(_key(unit, "ExecStart"))
    assert argv[0] == INSTALLED_BINARY
    args = build_parser().parse_args(argv[1:])
    assert args.command in ("serve", "backup", "maintain")
    assert args.config_file == "/etc/devflow-monitor/devflow-monitor.yml"


@pytest.mark.parametrize("path", PLISTS, ids=lambda p: p.name)
def test_plists_parse_and_run_commands_the_cli_accepts(path):
    with open(path, "rb") as handle:
        plist = plistlib.load(handle)
    assert plist["Label"] == path.stem
    program = plist["ProgramArguments"]
    assert program[0] == INSTALLED_BINARY, "launchd needs an absolute path"
    build_parser().parse_args(program[1:])
    assert plist["StandardErrorPath"].startswith("/")
    if "exporter" in path.stem:
        assert plist["RunAtLoad"] is True and plist["KeepAlive"] == {"SuccessfulExit": False}
    else:
        when = plist["StartCalendarInterval"]
        assert 0 <= when["Hour"] <= 23 and 0 <= when["Minute"] <= 59
        assert ("Weekday" in when) == ("maintain" in path.stem), "backup daily, maintenance weekly"


@requires("logrotate")
def test_logrotate_rotates_under_a_writer_without_losing_a_line_and_spares_the_exporter(spawn, tmp_path):
    logs = tmp_path / "log"
    logs.mkdir()
    pidfile = tmp_path / "devflow.pid"
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    # The shipped file with only its paths and its user changed, as an installer on this machine would.
    config = (PACKAGING / "logrotate" / "devflow").read_text() \
        .replace("/var/log/devflow", str(logs)).replace("/run/devflow/devflow.pid", str(pidfile)) \
        .replace("devflow devflow", f"{user} {group}") \
        .replace("'(^|/)node .*server", f"'(^|/)node {tmp_path}/devflow/server")  # never anyone else's process
    assert str(pidfile) in config and str(tmp_path / "devflow" / "server") in config
    conf = tmp_path / "devflow.logrotate"
    conf.write_text(config)
    server = start_fake_server(spawn, tmp_path, pidfile=pidfile, log=logs / "server.log")
    # Stands in for `devflow-monitor serve`: the guide's `pkill -USR1 -f devflow-monitor` would end it.
    exporter = spawn([sys.executable, "-c", "import time; time.sleep(120)", "devflow-monitor", "serve"])
    state = tmp_path / "logrotate.state"

    for rotation in range(2):
        time.sleep(0.3)
        result = subprocess.run(["logrotate", "--force", "--state", str(state), str(conf)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        wait_until(lambda: (logs / "server.log").exists() and (logs / "server.log").stat().st_size > 0,
                   message="the server to reopen its log after SIGUSR1")
    time.sleep(0.3)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=10)

    assert exporter.poll() is None, "the exporter must not be signalled"
    assert oct((logs / "server.log").stat().st_mode & 0o777) == "0o640"
    assert (logs / "server.log.1").exists(), "delaycompress: the newest rotated file stays readable"
    assert (logs / "server.log.2.gz").exists()
    text = gzip.decompress((logs / "server.log.2.gz").read_bytes()).decode() \
        + (logs / "server.log.1").read_text() + (logs / "server.log").read_text()
    numbers = [int(m) for m in re.findall(r"^\[INFO\] line (\d+)$", text, re.M)]
    assert numbers == list(range(len(numbers))), "every line once, in order, across the rotations"
    assert len(numbers) > 100


@requires("pgrep")
def test_logrotate_fallback_pattern_matches_the_server_and_not_the_exporter_or_the_shell(spawn, tmp_path):
    script = (PACKAGING / "logrotate" / "devflow").read_text()
    pattern = re.search(r"pkill -USR1 -f '([^']+)'", script).group(1)
    server = start_fake_server(spawn, tmp_path)
    exporter = spawn([sys.executable, "-c", "import time; time.sleep(120)", "devflow-monitor", "serve"])
    # pgrep only lists: it signals nothing, so other processes on this machine are safe.
    shell = subprocess.run(["sh", "-c", f"pgrep -f '{pattern}'; echo shell=$$"], capture_output=True, text=True)
    pids = {int(line) for line in shell.stdout.split() if line.isdigit()}
    shell_pid = int(shell.stdout.split("shell=")[1])
    assert server.pid in pids
    assert exporter.pid not in pids and shell_pid not in pids
    assert all("node" in " ".join(psutil.Process(p).cmdline()) for p in pids if psutil.pid_exists(p))


def _key(path: Path, key: str) -> str:
    values = [line.split("=", 1)[1].strip() for line in path.read_text().splitlines() if line.startswith(f"{key}=")]
    assert len(values) == 1, (path, key, values)
    return values[0]
