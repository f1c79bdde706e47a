"""The promtool test file: every alert's scenario turned into checks before and after its `for`,
and the recording rules checked on their own."""

from __future__ import annotations

import math
import re

from devflow_monitor.alerting.rules import AlertRule, active_alerts, recorded
from devflow_monitor.alerting.unittests.cases import (INSTANCE, SCENARIOS, STEP_MINUTES, Context, constant,
                                                      log_lines, rising, selector_labels, steps)
from devflow_monitor.core.settings import Alert, Settings, SettingsError, seconds
from devflow_monitor.core import catalog


def _describe(text: str, labels: dict[str, str], value: str) -> str:
    """The description as Prometheus renders it for these labels and value."""
    text = re.sub(r"\{\{ with \$labels\.(\w+) \}\}\{\{ \. \}\}\{\{ else \}\}(.*?)\{\{ end \}\}",
                  lambda m: labels.get(m.group(1)) or m.group(2), text)
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)
    return re.sub(r"\{\{ \$value \| \w+ \}\}", value, text)


def _minutes(value: int) -> str:
    return f"{value}m"


def _silent(name: str, minute: int) -> dict:
    return {"eval_time": _minutes(minute), "alertname": name, "exp_alerts": []}


def _alert_tests(settings: Settings, name: str, rule: AlertRule) -> list[dict]:
    alert = settings.alerts[name]
    scenario_of = SCENARIOS.get(name)
    if scenario_of is None:
        raise AssertionError(f"no rule test scenario for {name}")
    for_minutes = math.ceil(seconds(alert.for_) / 60)
    window = max(1, seconds(settings.rate_window) // 60)
    end = for_minutes + 2 * window + 15
    context = Context(settings, alert, end, {**selector_labels(settings), "instance": INSTANCE})
    cases = scenario_of(context)
    faults = [case for case in cases if case.active_at is not None]
    assert faults and len(faults) < len(cases), f"{name}: needs a fault case and a healthy case"
    tests = []
    for case in cases:
        # A healthy case is checked at the moments its alert's first fault case is.
        active_at = faults[0].active_at if case.active_at is None else case.active_at
        after = active_at + for_minutes
        assert after < end, f"{name}: {case.title} ends before its alert fires"
        evaluations = []
        if case.active_at:
            evaluations.append(_silent(name, case.active_at - STEP_MINUTES))
        evaluations.append(_silent(name, after - STEP_MINUTES))
        if case.active_at is None:
            evaluations += [_silent(name, after), _silent(name, end - STEP_MINUTES)]
        else:
            labels = {**case.labels, "severity": alert.severity}
            annotations = {
                "summary": rule.summary,
                "description": _describe(rule.description, labels, case.value),
                "runbook_url": settings.runbook(name),
            }
            evaluations.append({"eval_time": _minutes(after), "alertname": name,
                                "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations}]})
            if case.resolves_at is not None:
                assert after < case.resolves_at < end, f"{name}: {case.title} resolves outside its series"
                evaluations.append(_silent(name, case.resolves_at))
        kind = "fires after its for" if case.active_at is not None else "stays silent"
        tests.append({
            "name": f"{name} {kind}: {case.title}",
            "interval": _minutes(STEP_MINUTES),
            "input_series": [{"series": series, "values": values} for series, values in case.series.items()],
            "alert_rule_test": evaluations,
        })
    return tests


def _recording_tests(settings: Settings) -> list[dict]:
    """The shared ratios, checked on their own: dashboards read them too."""
    names = recorded(settings)
    window = max(1, seconds(settings.rate_window) // 60)
    end = 2 * window + 10
    context = Context(settings, Alert(), end, {**selector_labels(settings), "instance": INSTANCE})
    labels = context.labels()
    at = _minutes(window + 5)
    log = "/var/log/devflow/server.log"
    return [
        {"name": "recorded CPU ratio adds user and system time",
         "interval": _minutes(STEP_MINUTES),
         "input_series": [
             {"series": context.series(catalog.PROCESS_CPU.name, mode="user"), "values": rising(18, end)},
             {"series": context.series(catalog.PROCESS_CPU.name, mode="system"), "values": rising(12, end)}],
         "promql_expr_test": [{"expr": names.cpu_ratio, "eval_time": at,
                               "exp_samples": [{"labels": _labels(names.cpu_ratio, labels), "value": 0.5}]}]},
        {"name": "recorded error ratio is 0, not absent, while no error was logged",
         "interval": _minutes(STEP_MINUTES),
         "input_series": [{"series": log_lines(context, log, "info"), "values": rising(60, end)}],
         "promql_expr_test": [{"expr": names.log_error_ratio, "eval_time": at,
                               "exp_samples": [{"labels": _labels(names.log_error_ratio, labels), "value": 0}]}]},
        {"name": "recorded ingest rate is 0 for a readable database without events, absent for an unreadable one",
         "interval": _minutes(STEP_MINUTES),
         "input_series": [
             {"series": context.series(catalog.DB_UP.name), "values": steps(1, window + 6, 0, end)}],
         "promql_expr_test": [
             {"expr": names.ingest_rate, "eval_time": at,
              "exp_samples": [{"labels": _labels(names.ingest_rate, labels), "value": 0}]},
             {"expr": names.ingest_rate, "eval_time": _minutes(window + 7), "exp_samples": []}]},
        {"name": "recorded memory ratio divides RSS by the machine's memory",
         "interval": _minutes(STEP_MINUTES),
         "input_series": [
             {"series": context.series(catalog.PROCESS_RSS.name), "values": constant(1024 ** 3, end)},
             {"series": context.series(catalog.HOST_MEMORY_TOTAL.name), "values": constant(4 * 1024 ** 3, end)}],
         "promql_expr_test": [{"expr": names.memory_ratio, "eval_time": at,
                               "exp_samples": [{"labels": _labels(names.memory_ratio, labels), "value": 0.25}]}]},
    ]


def _labels(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


def test_file(settings: Settings, rule_files: list[str], groups: list[str]) -> dict:
    """A promtool test file for `rule_files` (paths relative to the test file).

    `groups` fixes the evaluation order: recording rules first, so that an alert
    sees the ratio recorded at the same evaluation, not the one a minute older.
    """
    windows = {"rate_window": settings.rate_window}
    windows.update({f"alerts.{name}.window": getattr(alert, "window") for name, alert in settings.alerts.items()
                    if hasattr(alert, "window")})
    # A left-open range of a single step holds one sample, too few for rate() on Prometheus 3.
    short = [key for key, value in windows.items() if seconds(value) < 2 * 60 * STEP_MINUTES]
    if short:
        raise SettingsError(f"rule tests sample once a minute, so {', '.join(short)} must be at least 2m")
    tests = _recording_tests(settings)
    for name, rule in active_alerts(settings).items():
        tests.extend(_alert_tests(settings, name, rule))
    return {"rule_files": rule_files, "evaluation_interval": _minutes(STEP_MINUTES),
            "group_eval_order": groups, "tests": tests}
