"""Configuration: layered loading, and one clear line with exit 2 for every kind of bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import ROOT, cli

from devflow_monitor.core.config import Config, ConfigError, load


def test_documented_example_is_exactly_the_defaults():
    assert load(ROOT / "devflow-monitor.yml", env={}) == Config()


def test_environment_beats_file_and_flags_beat_environment(tmp_path):
    config_file = tmp_path / "c.yml"
    config_file.write_text("devflow:\n  port: 4000\ncollectors:\n  database:\n    busy_timeout_ms: 5\n")
    env = {"DEVFLOW_MONITOR_DEVFLOW_PORT": "5000", "DEVFLOW_MONITOR_COLLECTORS_PROBE_ENABLED": "false",
           "DEVFLOW_MONITOR_DEVFLOW_LOG_FILES": "/a.log,/b/*.log"}
    config = load(config_file, env=env, overrides={"devflow.port": "6000"})
    assert config.devflow.port == 6000
    assert config.collectors.database.busy_timeout_ms == 5
    assert config.collectors.probe.enabled is False
    assert config.devflow.log_files == ["/a.log", "/b/*.log"]
    assert load(config_file, env=env).devflow.port == 5000


def test_workdir_means_the_public_build_layout(tmp_path):
    config = load(env={}, overrides={"devflow.workdir": str(tmp_path)})
    assert config.devflow.database_path == tmp_path / "data" / "devflow.db"


BAD_CONFIGS = {
    "malformed yaml": ("devflow: [unclosed\n", "line"),
    "not a mapping": ("- a\n- b\n", "bad.yml: top level: expected a mapping, got list"),
    "unknown key": ("colectors: {}\n", "bad.yml: colectors: unknown key (did you mean 'collectors'?)"),
    "unknown nested key": ("collectors:\n  database:\n    busy_timeout: 5\n",
                           "collectors.database.busy_timeout: unknown key (did you mean 'busy_timeout_ms'?)"),
    "wrong type": ("devflow:\n  port: three thousand\n", "devflow.port: expected an integer, got str 'three thousand'"),
    "section not a mapping": ("web: 8080\n", "web: expected a mapping, got int 8080"),
    "bad duration": ("collectors:\n  probe:\n    interval_seconds: soon\n",
                     "collectors.probe.interval_seconds: 'soon' is not a duration like 30s, 5m, 1h or 2d"),
    "NUL in text": ('devflow:\n  database: "a\\0b"\n', "devflow.database: text must not contain NUL characters"),
    "key that would break the line": ('"a\\nb": 1\n', "bad.yml: 'a\\nb': unknown key"),
    "impossible date": ("log_level: 2001-13-01\n", "invalid YAML: month must be in 1..12"),
    "nested too deep": ("a: " + "[" * 5000 + "\n", "invalid YAML"),
    "bad listen address": ("web:\n  listen_address: localhost\n", "HOST:PORT"),
    "bad regex": ("devflow:\n  process_pattern: '(unclosed'\n", "not a valid regular expression"),
    "port out of range": ("devflow:\n  port: 70000\n", "between 1 and 65535"),
    "missing web config": ("web:\n  config_file: /no/such/web.yml\n", "does not exist"),
    "workdir missing": ("devflow:\n  workdir: /no/such/dir\n", "is not a directory"),
    "database is a directory": ("devflow:\n  database: /tmp\n", "is a directory"),
    "bad url": ("devflow:\n  url: localhost:3000\n", "http(s) URL"),
    "negative interval": ("collectors:\n  process:\n    scan_interval_seconds: -1\n", "must not be negative, got -1"),
    "zero interval": ("collectors:\n  process:\n    scan_interval_seconds: 0\n",
                      "collectors.process.scan_interval_seconds: must be between 0.01 and 86400, got 0"),
    "interval that would overflow a sleep": ("collectors:\n  database:\n    counts_interval_seconds: 300y\n",
                                             "counts_interval_seconds: must be between 0.1 and 86400, got 9.4608e+09"),
    "duplicate key": ("devflow:\n  port: 3000\nlog_level: info\ndevflow:\n  port: 4000\n",
                      "bad.yml: line 4, column 1: invalid YAML: duplicate key 'devflow' (first on line 1)"),
    "duplicate nested key": ("collectors:\n  probe:\n    timeout_seconds: 1\n    timeout_seconds: 2\n",
                             "line 4, column 5: invalid YAML: duplicate key 'timeout_seconds' (first on line 3)"),
    "url port out of range": ("devflow:\n  url: http://127.0.0.1:99999\n", "devflow.url: must be an http(s) URL with a port"),
    "url port not a number": ("devflow:\n  url: http://127.0.0.1:abc\n", "got 'http://127.0.0.1:abc'"),
    "url port zero": ("devflow:\n  url: http://127.0.0.1:0/\n", "port from 1 to 65535"),
    "telemetry path with a query": ("web:\n  telemetry_path: /metrics?x=1\n", "web.telemetry_path: must be a path like"),
    "telemetry path with a fragment": ("web:\n  telemetry_path: '/metrics#x'\n", "got '/metrics#x'"),
    "telemetry path with a space": ("web:\n  telemetry_path: /my metrics\n", "got '/my metrics'"),
    "telemetry path of the health page": ("web:\n  telemetry_path: /health\n",
                                          "web.telemetry_path: '/health' is a page the exporter serves itself"),
    "infinite interval": ("collectors:\n  database:\n    counts_interval_seconds: .inf\n", "expected a number"),
    "fractional port": ("devflow:\n  port: 3000.9\n", "expected an integer"),
    "empty pattern": ("devflow:\n  process_pattern: ''\n", "bad.yml: devflow.process_pattern: must not be empty"),
    "unknown home directory": ("devflow:\n  database: ~no-such-user-here/devflow.db\n", "devflow.database: not a usable path"),
    "pattern only valid as text": ("collectors:\n  logs:\n    access_log_pattern: '(?P<status>\\u0020)'\n", "not a valid regular expression"),
    "bad log level": ("log_level: loud\n", "bad.yml: log_level: must be one of debug, info, warning, error, got 'loud'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_and_exit_2(tmp_path, case):
    text, expected = BAD_CONFIGS[case]
    config_file = tmp_path / "bad.yml"
    config_file.write_text(text)
    result = cli("check-config", "--config.file", str(config_file))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("devflow-monitor: error: ") and expected in lines[0]
    assert Path(config_file).read_text() == text, "a bad config file is never rewritten"


def test_missing_config_file_and_bad_flag_value_fail_cleanly(tmp_path):
    result = cli("check-config", "--config.file", str(tmp_path / "absent.yml"))
    assert result.returncode == 2 and "absent.yml: cannot read: No such file or directory" in result.stderr
    result = cli("serve", "--devflow.port", "abc")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "command line: devflow.port: expected an integer, got str 'abc'" in result.stderr
    result = cli("check-config", env={"DEVFLOW_MONITOR_DEVFLOW_PROT": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert ("environment variable DEVFLOW_MONITOR_DEVFLOW_PROT: no such setting "
            "(did you mean 'DEVFLOW_MONITOR_DEVFLOW_PORT'?)") in result.stderr


def test_check_config_prints_the_effective_settings():
    result = cli("check-config", "--config.file", "devflow-monitor.yml", "--no-collector.probe")
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    assert "probe" not in result.stdout.split("collectors", 1)[1]


def test_config_error_type_is_raised_not_printed():
    with pytest.raises(ConfigError, match="expected true or false"):
        load(env={"DEVFLOW_MONITOR_COLLECTORS_HOST_ENABLED": "maybe"})


def test_empty_pattern_from_the_environment_is_refused():
    with pytest.raises(ConfigError, match="must not be empty"):
        load(env={"DEVFLOW_MONITOR_DEVFLOW_PROCESS_PATTERN": ""})


def test_a_check_after_loading_names_the_layer_that_set_the_value(tmp_path):
    config_file = tmp_path / "c.yml"
    config_file.write_text("log_level: loud\n")
    with pytest.raises(ConfigError) as raised:
        load(config_file, env={"DEVFLOW_MONITOR_LOG_LEVEL": "louder"})
    assert str(raised.value).startswith("environment variable DEVFLOW_MONITOR_LOG_LEVEL: log_level: must be one of")
    with pytest.raises(ConfigError, match=r"^command line: devflow\.port: must be between 1 and 65535, got 0$"):
        load(config_file, env={}, overrides={"log_level": "info", "devflow.port": "0"})


def test_seconds_take_a_duration_and_empty_optional_text_unsets(tmp_path):
    config_file = tmp_path / "c.yml"
    config_file.write_text("collectors:\n  probe:\n    interval_seconds: 2m\ndevflow:\n  access_log: ''\n")
    config = load(config_file, env={"DEVFLOW_MONITOR_COLLECTORS_PROCESS_SCAN_INTERVAL_SECONDS": "1m30s"})
    assert config.collectors.probe.interval_seconds == 120.0
    assert config.collectors.process.scan_interval_seconds == 90.0
    assert config.devflow.access_log is None


def test_a_telemetry_path_flag_that_would_hide_the_metrics_is_refused():
    for path in ("/runbook", "/status", "/"):
        result = cli("check-config", "--web.telemetry-path", path)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert f"command line: web.telemetry_path: {path!r} is a page the exporter serves itself" in result.stderr


# The attack run's values: past about 9.2e9 s a sleep raises OverflowError, 1e-9 s spins a core, nan and inf.
OUT_OF_RANGE = ("1e12", "9.3e9", "1e-9", "nan", "inf")


def _fields(tree=Config(), prefix=""):
    for f in dataclasses.fields(tree):
        value = getattr(tree, f.name)
        if dataclasses.is_dataclass(value):
            yield from _fields(value, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f.metadata.get("between"), value


def test_every_duration_setting_has_both_bounds():
    bounded = {dotted: (bounds, default) for dotted, bounds, default in _fields() if bounds}
    durations = {dotted for dotted, _, _ in _fields() if dotted.endswith(("_seconds", "_ms", "_days"))}
    assert set(bounded) == durations and len(durations) == 9
    for dotted, ((low, high), default) in bounded.items():
        for outside in (low / 2, high * 2, 1e12, 9.3e9, 1e-9):
            if outside and not low <= outside <= high and (isinstance(default, float) or float(outside).is_integer()):
                with pytest.raises(ConfigError, match=rf"^command line: {dotted}: must be .*between "):
                    load(env={}, overrides={dotted: repr(outside)})


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_an_out_of_range_duration_fails_check_config_in_one_line(tmp_path, value):
    config_file = tmp_path / "c.yml"
    config_file.write_text(f"collectors:\n  probe:\n    timeout_seconds: {value}\n")
    from_file = cli("check-config", "--config.file", str(config_file))
    variable = "DEVFLOW_MONITOR_COLLECTORS_PROCESS_SCAN_INTERVAL_SECONDS"
    from_env = cli("check-config", env={variable: value, "PATH": "/usr/bin:/bin"})
    for result, where in ((from_file, f"{config_file}: collectors.probe.timeout_seconds: "),
                          (from_env, f"environment variable {variable}: collectors.process.scan_interval_seconds: ")):
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"devflow-monitor: error: {where}")
        problem = result.stderr.split(where, 1)[1]
        assert problem.startswith("must be between " if value[0].isdigit() else "expected a number"), problem
