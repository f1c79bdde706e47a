"""One loader for the exporter's configuration and the alert settings: the same bad input gets the
same one-line error from both, and no input at all gets a traceback."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, cli
from hypothesis import HealthCheck, example, given, settings as hypothesis_settings, strategies as st

from devflow_monitor.core import settings
from devflow_monitor.core import config
from devflow_monitor.core.loader import ConfigError

# The same mistake in each file: (exporter YAML, expected error), (alert settings YAML, expected error).
SAME_MISTAKES = {
    "unknown key with a hint": (
        ("colectors: {}", "colectors: unknown key (did you mean 'collectors'?)"),
        ("alertz: {}", "alertz: unknown key (did you mean 'alerts'?)")),
    "wrong type": (
        ("devflow: {port: high}", "devflow.port: expected an integer, got str 'high'"),
        ("alerts: {DevFlowErrorBurst: {min_errors: high}}",
         "alerts.DevFlowErrorBurst.min_errors: expected an integer, got str 'high'")),
    "bad duration": (
        ("collectors: {probe: {interval_seconds: soon}}",
         "collectors.probe.interval_seconds: 'soon' is not a duration like 30s, 5m, 1h or 2d"),
        ("alerts: {DevFlowProcessDown: {for: soon}}",
         "alerts.DevFlowProcessDown.for: 'soon' is not a duration like 30s, 5m, 1h or 2d")),
    "not finite": (
        ("collectors: {probe: {timeout_seconds: .nan}}", "collectors.probe.timeout_seconds: expected a number, got float nan"),
        ("alerts: {DevFlowHighCpuUsage: {threshold: .nan}}",
         "alerts.DevFlowHighCpuUsage.threshold: expected a number, got float nan")),
    "negative": (
        ("backup: {retention_days: -3}", "backup.retention_days: must not be negative, got -3"),
        ("alerts: {DevFlowErrorBurst: {min_errors: -3}}", "alerts.DevFlowErrorBurst.min_errors: must not be negative, got -3")),
    "section not a mapping": (
        ("web: [a]", "web: expected a mapping, got list"),
        ("app: [a]", "app: expected a mapping, got list")),
}


@pytest.mark.parametrize("case", sorted(SAME_MISTAKES))
def test_same_mistake_same_message_from_both_commands(tmp_path, case):
    (exporter_text, exporter_error), (settings_text, settings_error) = SAME_MISTAKES[case]
    exporter_file, settings_file = tmp_path / "exporter.yml", tmp_path / "settings.yml"
    exporter_file.write_text(exporter_text + "\n")
    settings_file.write_text(settings_text + "\n")
    exporter = cli("check-config", "--config.file", str(exporter_file))
    alerting = subprocess.run([sys.executable, "-m", "devflow_monitor.alerting.build", "--settings", str(settings_file),
                               "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert exporter.returncode == alerting.returncode == 2
    assert exporter.stderr == f"devflow-monitor: error: {exporter_file}: {exporter_error}\n"
    assert alerting.stderr == f"alerting.build: error: {settings_file}: {settings_error}\n"


def test_environment_and_flags_report_a_bad_duration_like_the_files():
    where = "collectors.probe.interval_seconds: 'soon' is not a duration like 30s, 5m, 1h or 2d"
    with pytest.raises(ConfigError) as from_env:
        config.load(env={"DEVFLOW_MONITOR_COLLECTORS_PROBE_INTERVAL_SECONDS": "soon"})
    assert str(from_env.value) == f"environment variable DEVFLOW_MONITOR_COLLECTORS_PROBE_INTERVAL_SECONDS: {where}"
    with pytest.raises(ConfigError) as from_flag:
        config.load(env={}, overrides={"collectors.probe.interval_seconds": "soon"})
    assert str(from_flag.value) == f"command line: {where}"


def test_sizes_and_durations_are_parsed_for_bytes_and_seconds_fields():
    loaded = settings.apply(settings.Settings(), {"alerts": {"DevFlowLogNotRotated": {"max_size_bytes": "64MiB"},
                                                             "DevFlowDatabaseFragmented": {"min_size_bytes": "1GB"}}})
    assert loaded.alerts["DevFlowLogNotRotated"].max_size_bytes == 64 * 2 ** 20
    assert loaded.alerts["DevFlowDatabaseFragmented"].min_size_bytes == 10 ** 9
    with pytest.raises(ConfigError, match=r"^x\.yml: alerts\.DevFlowLogNotRotated\.max_size_bytes: 'big' is not a size"):
        settings.apply(settings.Settings(), {"alerts": {"DevFlowLogNotRotated": {"max_size_bytes": "big"}}}, "x.yml")


def test_runbook_url_with_other_braces_is_refused_when_loaded_not_when_rendered():
    with pytest.raises(ConfigError, match=r"^x\.yml: runbook_url: may use no braces but \{anchor\}"):
        settings.apply(settings.Settings(), {"runbook_url": "docs/{section}#{anchor}"}, "x.yml")


# --- no input gives a traceback ------------------------------------------------------------------------

# Odd values that have broken loaders: surrogates (from a non-UTF-8 environment), NUL, unknown ~user.
ODD_TEXT = st.sampled_from(["5m", "1h30m", "64MiB", "0", "-1", "1e999", "nan", "", "~no-such-user/x", "/",
                            "a\0b", "\udcff", "http://[", "(unclosed", "9764\u00b2", "{0}{anchor}"])
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-10 ** 30, max_value=10 ** 30) | st.floats()
           | st.text(max_size=12) | ODD_TEXT)
ANYTHING = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
OF_TYPE = {bool: st.booleans(), int: st.integers(min_value=-5, max_value=70000), str: st.text(max_size=12) | ODD_TEXT,
           float: st.floats(allow_nan=True) | st.integers(min_value=-5, max_value=10 ** 6)}


def shaped_like(tree) -> st.SearchStrategy:
    """Mostly well-typed data over the real keys, so examples get past the types to the checks after them."""
    if dataclasses.is_dataclass(tree):
        children = {f.name.rstrip("_"): getattr(tree, f.name) for f in dataclasses.fields(tree)}
    elif isinstance(tree, dict):
        children = dict(tree)
    elif isinstance(tree, list):
        return st.lists(OF_TYPE[str], max_size=3)
    else:
        return OF_TYPE.get(type(tree), OF_TYPE[str])
    optional = {key: shaped_like(child) | ANYTHING if child is None else shaped_like(child)
                for key, child in children.items()}
    return st.fixed_dictionaries({}, optional=optional)


def yaml_documents(tree) -> st.SearchStrategy:
    data = shaped_like(tree) | ANYTHING
    return (data.map(lambda data: yaml.safe_dump(data, allow_unicode=True).encode())
            | st.text(max_size=80).map(str.encode) | st.binary(max_size=40))


ENV_NAMES = [config.ENV_PREFIX + dotted.replace(".", "_").upper() for dotted in config._leaves(config.Config())]
ENVIRONMENTS = st.dictionaries(st.sampled_from(ENV_NAMES) | st.text(max_size=10).map(config.ENV_PREFIX.__add__),
                               st.text(max_size=20) | ODD_TEXT,
                               max_size=4)
PROPERTY = hypothesis_settings(max_examples=300, deadline=None,
                               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _assert_loads_or_one_line_error(load, expected_type):
    try:
        loaded = load()
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message, repr(message)
        return
    assert isinstance(loaded, expected_type)


@PROPERTY
@given(document=yaml_documents(config.Config()), env=ENVIRONMENTS)
# Inputs that once gave a traceback: a non-ASCII digit, an unknown ~user, an unclosed IPv6 URL, a surrogate
# that cannot be encoded for the byte pattern, a date YAML cannot construct, a name longer than the OS allows.
@example(b"", {"DEVFLOW_MONITOR_WEB_LISTEN_ADDRESS": "127.0.0.1:9764\u00b2"})
@example(b"", {"DEVFLOW_MONITOR_DEVFLOW_DATABASE": "~no-such-user/devflow.db"})
@example(b"", {"DEVFLOW_MONITOR_DEVFLOW_URL": "http://["})
@example(b"", {"DEVFLOW_MONITOR_DEVFLOW_PROCESS_PATTERN": "node\udcff"})
@example(b"log_level: 2001-13-01\n", {})
@example(b"", {"DEVFLOW_MONITOR_WEB_CONFIG_FILE": "x" * 5000})
def test_any_exporter_file_and_environment_load_or_fail_in_one_line(tmp_path, document, env):
    config_file = tmp_path / "any.yml"
    config_file.write_bytes(document)
    _assert_loads_or_one_line_error(lambda: config.load(config_file, env=env), config.Config)


@PROPERTY
@given(document=yaml_documents(settings.Settings()))
def test_any_alert_settings_file_loads_or_fails_in_one_line(tmp_path, document):
    settings_file = tmp_path / "any.yml"
    settings_file.write_bytes(document)
    _assert_loads_or_one_line_error(lambda: settings.load(settings_file), settings.Settings)


@PROPERTY
@given(number=st.floats() | st.integers(min_value=-10 ** 400, max_value=10 ** 400))
def test_a_number_loads_exactly_when_finite_and_within_its_bounds(number):
    try:
        as_float = float(number)
    except OverflowError:
        as_float = math.inf
    low, high = next(f for f in dataclasses.fields(config.ProbeCollectorConfig)
                     if f.name == "interval_seconds").metadata["between"]
    acceptable = as_float == 0 or low <= as_float <= high  # 0 probes inside every scrape
    try:
        loaded = config.load(env={}, overrides={"collectors.probe.interval_seconds": number})
    except ConfigError:
        assert not acceptable
        return
    assert acceptable and loaded.collectors.probe.interval_seconds == as_float


def test_jsonnet_settings_without_the_build_extra_fail_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "_jsonnet", None)  # what `import _jsonnet` meets without the extra
    override = tmp_path / "override.jsonnet"
    override.write_text("{}")
    with pytest.raises(ConfigError) as raised:
        settings.load(override)
    assert str(raised.value) == (f"{override}: Jsonnet settings need the jsonnet package: "
                                 "pip install 'devflow-monitor[build]', or use a YAML file")


def _build_alerts(tmp_path, text):
    settings_file = tmp_path / "settings.yml"
    settings_file.write_text(text)
    result = subprocess.run([sys.executable, "-m", "devflow_monitor.alerting.build", "--settings", str(settings_file),
                             "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    return settings_file, result


@pytest.mark.parametrize("duration", ["367d", "300y", "9999999999999s"])
def test_a_settings_duration_beyond_a_year_fails_in_one_line(tmp_path, duration):
    settings_file, result = _build_alerts(tmp_path, f"alerts: {{DevFlowProcessDown: {{for: {duration}}}}}\n")
    assert result.returncode == 2
    assert result.stderr == (f"alerting.build: error: {settings_file}: alerts.DevFlowProcessDown.for: "
                             f"must be between 0s and 366d, got '{duration}'\n")


def test_a_duplicate_key_in_the_alert_settings_fails_in_one_line(tmp_path):
    settings_file, result = _build_alerts(tmp_path, "rate_window: 5m\nrate_window: 10m\n")
    assert result.returncode == 2
    assert result.stderr == (f"alerting.build: error: {settings_file}: line 2, column 1: "
                             "invalid YAML: duplicate key 'rate_window' (first on line 1)\n")


def test_keys_merged_in_with_yaml_anchors_may_still_be_overridden(tmp_path):
    config_file = tmp_path / "c.yml"
    config_file.write_text("collectors:\n  process: &on {enabled: true}\n  probe:\n    <<: *on\n    enabled: false\n")
    assert config.load(config_file, env={}).collectors.probe.enabled is False
