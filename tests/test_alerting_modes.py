"""How the server is run (devflow.mode) decides what its absence pages, through the whole generated rule set.

One exporter's series, an hour long, as promtool input: the server runs busy for five minutes, then goes,
and every other fact stays healthy (database, disk, backups, logs). Every alert of the rule files is checked
at moments after every `for` has run out, so an alert that one scenario alone would miss (a rate that keeps
its last samples for a window, a probe that finds nothing listening) shows here:

- an on-demand server closed by its client: no alert at all;
- a daemon that stops: DevFlowProcessDown and nothing else;
- an on-demand server that crashes: DevFlowServerCrashed, until its window has passed.
"""

from __future__ import annotations

import pytest
import yaml

from devflow_monitor.alerting import build
from devflow_monitor.alerting.unittests.cases import constant, rising, steps, until
from devflow_monitor.core import catalog, settings
from devflow_monitor.generate import committed as generated
from conftest import requires
from test_alerting import run

pytestmark = requires("promtool")

INSTANCE = "devflow-host:9764"
GONE_AT = 10  # minute the server goes: long enough for its CPU alert to fire while it runs
END = 70
CHECKED_AT = (GONE_AT + 1, GONE_AT + 5, GONE_AT + 10, GONE_AT + 20, END - 1)  # minutes
GIB = 1024 ** 3


def series(name: str, **labels: str) -> str:
    labels = {"job": "devflow", "instance": INSTANCE, **labels}
    return name + "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


def stops(per_minute: float) -> str:
    """A counter the exporter keeps exporting after the server has gone (its log, its database): flat from then."""
    return f"0+{per_minute}x{GONE_AT - 1} {per_minute * (GONE_AT - 1)}x{END - GONE_AT}"


def server_goes(mode: str, exit_reason: str) -> dict[str, str]:
    """A server busy above the CPU threshold and logging until GONE_AT, then gone; the rest healthy.

    Its CPU alert fires before it goes; the rate of its last CPU samples stays above the threshold for minutes."""
    running, gone = (lambda values: until(values, GONE_AT, END)), steps(1, GONE_AT, 0, END)
    exits = {reason: steps(0, GONE_AT, 1, END) if reason == exit_reason else constant(0, END)
             for reason in ("clean", "crash")}
    return {
        series("up"): constant(1, END),
        **{series(catalog.COLLECTOR_SUCCESS.name, collector=name): constant(1, END)
           for name in ("process", "database", "logs", "probe", "host")},
        **{series(catalog.TARGET_MODE.name, mode=name): constant(1 if name == mode else 0, END)
           for name in ("daemon", "on_demand")},
        series(catalog.PROCESS_UP.name): gone,
        **{series(catalog.PROCESS_EXITS.name, reason=reason): values for reason, values in exits.items()},
        series(catalog.PROCESS_CPU.name, mode="user"): running(rising(120, END)),  # two cores
        series(catalog.PROCESS_RSS.name): running(constant(100 * 1024 ** 2, END)),
        series(catalog.PROCESS_START_TIME.name): running(constant(-3600, END)),
        series(catalog.PROCESS_PORT_LISTENING.name, port="3000"): gone,
        series(catalog.HOST_MEMORY_TOTAL.name): constant(16 * GIB, END),
        **{series(catalog.PROBE_SUCCESS.name, endpoint=endpoint): gone for endpoint in ("health", "status")},
        **{series(catalog.PROBE_STATE.name, endpoint=endpoint, state="ok"): gone for endpoint in ("health", "status")},
        **{series(catalog.PROBE_STATE.name, endpoint=endpoint, state="no_listener"): steps(0, GONE_AT, 1, END)
           for endpoint in ("health", "status")},
        series(catalog.DB_UP.name): constant(1, END),
        series(catalog.DB_STATE.name, state="ok"): constant(1, END),
        series(catalog.DB_INTEGRITY_OK.name): constant(1, END),
        series(catalog.DB_PAGES.name): constant(100, END),
        series(catalog.DB_PAGE_SIZE.name): constant(4096, END),
        series(catalog.DB_FREELIST_PAGES.name): constant(0, END),
        series(catalog.DB_FS_FREE.name): constant(50 * GIB, END),
        series(catalog.DB_FS_SIZE.name): constant(100 * GIB, END),
        series(catalog.EVENTS_INGESTED.name, type="file:changed"): stops(10),
        series(catalog.EVENTS_OLDEST.name): constant(-86400, END),
        series(catalog.BACKUP_LAST_SUCCESS.name): constant(-3600, END),
        series(catalog.OUTBOX_EVENTS.name, status="pending"): constant(0, END),
        series(catalog.LOG_LINES.name, file="/tmp/devflow-monitor.err", level="info"): stops(50),
        series(catalog.LOG_FILE_SIZE.name, file="/tmp/devflow-monitor.err"): constant(1024 ** 2, END),
    }


def rule_tests(rule_dir, alerts: list[dict], input_series: dict[str, str], firing: dict[str, range]) -> dict:
    """A promtool test: each alert of `alerts` silent at CHECKED_AT, except those of `firing` in their minutes."""
    checks = []
    for rule in alerts:
        name = rule["alert"]
        for minute in CHECKED_AT:
            expected = []
            if minute in firing.get(name, ()):
                labels = {"job": "devflow", "instance": INSTANCE, "severity": rule["labels"]["severity"]}
                if "reason=" in rule["expr"]:
                    labels["reason"] = "crash"
                annotations = {key: text.replace("{{ $labels.instance }}", INSTANCE)
                               for key, text in rule["annotations"].items()}
                expected = [{"exp_labels": labels, "exp_annotations": annotations}]
            checks.append({"eval_time": f"{minute}m", "alertname": name, "exp_alerts": expected})
    return {"rule_files": [str(rule_dir / "recording.yml"), str(rule_dir / "alerts.yml")],
            "evaluation_interval": "1m", "group_eval_order": ["devflow.recording"],
            "tests": [{"interval": "1m", "alert_rule_test": checks,
                       "input_series": [{"series": name, "values": values} for name, values in input_series.items()]}]}


@pytest.fixture(params=[False, True], ids=["public build, no listener expected", "listener expected"])
def rule_dir(request, tmp_path):
    """The generated rule files: the committed defaults, and with `app.expect_listener` (port and probe alerts)."""
    chosen = settings.apply(settings.Settings(), {"app": {"expect_listener": request.param}})
    generated.write({name: text for name, text in build.render(chosen).items() if name.startswith("rules/")},
                    tmp_path)
    return tmp_path / "rules"


def check(rule_dir, tmp_path, mode: str, exit_reason: str, firing: dict[str, range]) -> None:
    alerts = [rule for group in yaml.safe_load((rule_dir / "alerts.yml").read_text())["groups"]
              for rule in group["rules"]]
    assert firing.keys() <= {rule["alert"] for rule in alerts}
    test = rule_tests(rule_dir, alerts, server_goes(mode, exit_reason), firing)
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = run("promtool", "test", "rules", tmp_path / "test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_on_demand_server_closed_by_its_client_pages_nobody(rule_dir, tmp_path):
    check(rule_dir, tmp_path, "on_demand", "clean", firing={})


def test_a_daemon_that_stops_fires_process_down_and_nothing_else(rule_dir, tmp_path):
    check(rule_dir, tmp_path, "daemon", "clean", firing={"DevFlowProcessDown": range(GONE_AT + 1, END)})


def test_an_on_demand_server_that_crashes_fires_server_crashed_until_its_window_has_passed(rule_dir, tmp_path):
    window = settings.seconds(settings.Settings().alerts["DevFlowServerCrashed"].window) // 60
    check(rule_dir, tmp_path, "on_demand", "crash",
          firing={"DevFlowServerCrashed": range(GONE_AT + 1, GONE_AT + window)})

