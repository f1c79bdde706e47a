"""mixin.libsonnet, evaluated with the `jsonnet` binding, against the Python output it must equal, defaults and overrides alike."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import _jsonnet
import pytest
import yaml

from devflow_monitor.alerting import rules
from devflow_monitor.core.settings import Settings, load
from conftest import ROOT, requires
from devflow_monitor.dashboards import DASHBOARDS
from devflow_monitor.dashboards.build import render_all

sys.path.insert(0, str(ROOT))  # mixin/ is a folder of the checkout, not an installed package
from mixin import build as mixin_build  # noqa: E402

PROMTOOL = shutil.which("promtool")


OUTPUTS = {"alerts": "prometheusAlerts", "rules": "prometheusRules", "dashboards": "grafanaDashboards",
           "folder": "grafanaDashboardFolder"}


def evaluate(tmp_path: Path, override: str = "{}", outputs=("alerts", "rules")) -> dict:
    """The mixin's outputs after `override` is added to it, the way a mixin user writes it."""
    (tmp_path / "override.libsonnet").write_text(override)
    main = tmp_path / "main.jsonnet"
    fields = ", ".join(f"{key}: m.{OUTPUTS[key]}" for key in outputs)
    main.write_text(f"local m = (import 'mixin.libsonnet') + (import 'override.libsonnet');\n{{ {fields} }}\n")
    return json.loads(_jsonnet.evaluate_file(str(main), jpathdir=[str(tmp_path), str(ROOT)]))


def python_rules(settings: Settings) -> tuple[dict, dict]:
    files = rules.rule_files(settings)
    return files["alerts.yml"], files["recording.yml"]


def test_mixin_file_evaluates_on_its_own_with_every_output_hidden():
    assert json.loads(_jsonnet.evaluate_file(str(ROOT / "mixin.libsonnet"))) == {}


def test_generated_mixin_inputs_are_up_to_date():
    result = subprocess.run([sys.executable, "-m", "mixin.build", "--check"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_mixin_alerts_and_rules_equal_the_python_rules_and_the_committed_files(tmp_path):
    out = evaluate(tmp_path)
    alerts, recording = python_rules(Settings())
    assert out["alerts"] == alerts
    assert out["rules"] == recording
    committed = {path.name: yaml.safe_load(path.read_text()) for path in (ROOT / "alerting" / "rules").glob("*.yml")}
    assert committed == {"alerts.yml": out["alerts"], "recording.yml": out["rules"]}


def test_mixin_dashboards_equal_the_python_dashboards(tmp_path):
    out = evaluate(tmp_path, outputs=("dashboards", "folder"))
    python = {f"devflow-{name}": json.loads(text) for name, text in render_all().items()}
    assert out["dashboards"] == python
    assert set(out["dashboards"]) == {f"devflow-{name}.json" for name in DASHBOARDS}
    assert out["folder"] == "DevFlow"


def every_alert_override() -> tuple[str, dict]:
    """An override touching the selector, the runbook URL and every alert's `for` and severity."""
    names = [name for name, rule in rules.active_alerts(Settings()).items()]
    alerts = {name: {"for": f"{index + 7}m", "severity": ("critical", "warning", "info")[index % 3]}
              for index, name in enumerate(names)}
    alerts["DevFlowBackupMissing"] = {"enabled": False}
    config = {"selector": 'job="devflow-monitor",namespace="dev"',
              "runbook_url": "https://runbooks.example.com/devflow#{anchor}", "alerts": alerts}
    alert_lines = ", ".join(f"{name}+: {json.dumps(fields)}" for name, fields in alerts.items())
    jsonnet = ("{ _config+:: { selector: %s, runbook_url: %s, alerts+: { %s } } }"
               % (json.dumps(config["selector"]), json.dumps(config["runbook_url"]), alert_lines))
    return jsonnet, config


def test_one_override_file_gives_the_same_rules_in_the_mixin_and_in_python(tmp_path):
    jsonnet, config = every_alert_override()
    out = evaluate(tmp_path, jsonnet)
    settings = load(tmp_path / "override.libsonnet")  # the alerting build reads the very same file
    alerts, recording = python_rules(settings)
    assert out["alerts"] == alerts
    assert out["rules"] == recording
    # ... and the override really changed something everywhere it should.
    flat = [rule for group in out["alerts"]["groups"] for rule in group["rules"]]
    assert "DevFlowBackupMissing" not in {rule["alert"] for rule in flat}
    for rule in flat:
        assert rule["for"] == config["alerts"][rule["alert"]]["for"]
        assert rule["labels"]["severity"] == config["alerts"][rule["alert"]]["severity"]
        assert rule["annotations"]["runbook_url"] == f"https://runbooks.example.com/devflow#{rule['alert'].lower()}"
    for rule in recording["groups"][0]["rules"]:
        assert config["selector"] in rule["expr"] and 'job="devflow"' not in rule["expr"]


def test_selector_override_reaches_the_rules_and_leaves_dashboards_on_their_variables(tmp_path):
    out = evaluate(tmp_path, "{ _config+:: { selector: 'job=\"team-devflow\"' } }", ("alerts", "rules", "dashboards"))
    text = json.dumps([out["alerts"], out["rules"]])
    assert 'job=\\"team-devflow\\"' in text and 'job=\\"devflow\\"' not in text
    python = {f"devflow-{name}": json.loads(text) for name, text in render_all().items()}
    assert out["dashboards"] == python


def test_dashboard_tags_override_retags_dashboards_and_their_links(tmp_path):
    override = "{ _config+:: { dashboardTags: ['devflow', 'team-a'], grafanaDashboardFolder: 'Team A' } }"
    out = evaluate(tmp_path, override, ("dashboards", "folder"))
    assert out["folder"] == "Team A"
    for dashboard in out["dashboards"].values():
        assert dashboard["tags"] == ["devflow", "team-a"]
        assert all(link["tags"] == ["devflow", "team-a"] for link in dashboard["links"] if link["type"] == "dashboards")


@pytest.mark.parametrize("override, message", [
    ("{ _config+:: { alerts+: { DevFlowHighCpuUsage+: { treshold: 0.9 } } } }", "alerts.DevFlowHighCpuUsage.treshold"),
    ("{ _config+:: { alerts+: { DevFlowNoSuchAlert: { 'for': '1m' } } } }", "alerts.DevFlowNoSuchAlert"),
    ("{ _config+:: { app+: { expect_listener: true } } }", "app.expect_listener"),
    ("{ _config+:: { alerts+: { DevFlowBackupStale+: { max_age: 'a day' } } } }", "a day is not a duration"),
], ids=["typo", "unknown-alert", "python-only", "bad-duration"])
def test_overrides_the_mixin_cannot_honour_fail_with_a_message(tmp_path, override, message):
    with pytest.raises(RuntimeError, match=message):
        evaluate(tmp_path, override)


def test_a_rule_that_branches_on_a_config_value_is_refused_at_build_time():
    with pytest.raises(mixin_build.TemplateError, match=r"c\.alerts\.DevFlowHighCpuUsage\.threshold"):
        bool(mixin_build.referenced_settings(Settings())[0].alerts["DevFlowHighCpuUsage"].threshold > 1)


THRESHOLD_AND_FOR = ("{ _config+:: { rate_window: '3m', alerts+: {\n"
                     "  DevFlowHighCpuUsage+: { threshold: super.threshold + 0.15, 'for': '7m' },\n"
                     "  DevFlowBackupStale+: { max_age: '50h' } } } }\n")


@requires("promtool")
def test_threshold_and_for_overridden_in_config_pass_promtool_and_the_python_rule_tests(tmp_path):
    out = evaluate(tmp_path, THRESHOLD_AND_FOR)
    cpu = next(rule for group in out["alerts"]["groups"] for rule in group["rules"]
               if rule["alert"] == "DevFlowHighCpuUsage")
    assert cpu["expr"] == "instance:devflow_process_cpu_seconds:ratio_rate3m > 0.95" and cpu["for"] == "7m"
    assert "above 95% for 7m" in cpu["annotations"]["description"]
    mixin_rules = tmp_path / "mixin-rules.yml"
    mixin_rules.write_text(yaml.safe_dump({"groups": out["rules"]["groups"] + out["alerts"]["groups"]}))
    check = subprocess.run([PROMTOOL, "check", "rules", str(mixin_rules)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    # The rule tests the Python build writes for the very same override file, run against the mixin's rules.
    python_out = tmp_path / "python"
    build = subprocess.run([sys.executable, "-m", "devflow_monitor.alerting.build", "--settings",
                            str(tmp_path / "override.libsonnet"), "--out", str(python_out)],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    tests = yaml.safe_load((python_out / "tests" / "rules_test.yml").read_text())
    tests["rule_files"] = [str(mixin_rules)]
    (tmp_path / "mixin_test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "mixin_test.yml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {path.name: yaml.safe_load(path.read_text()) for path in (python_out / "rules").glob("*.yml")} == {
        "alerts.yml": out["alerts"], "recording.yml": out["rules"]}


@requires("promtool")
def test_mixin_output_with_overrides_passes_promtool(tmp_path):
    out = evaluate(tmp_path, every_alert_override()[0])
    path = tmp_path / "mixin-rules.yml"
    path.write_text(yaml.safe_dump({"groups": out["rules"]["groups"] + out["alerts"]["groups"]}))
    result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- jsonnetfile.json --------------------------------------------------------------------------

IMPORT = re.compile(r"\bimport(?:str|bin)?\s*(?:'([^']*)'|\"([^\"]*)\")")


def mixin_imports() -> dict[Path, list[str]]:
    """The files the mixin's Jsonnet imports, by importing file (comments left out)."""
    files = [ROOT / "mixin.libsonnet", *sorted((ROOT / "mixin").glob("*.libsonnet"))]
    found = {}
    for path in files:
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("//"))
        found[path] = [match[1] or match[2] for match in IMPORT.finditer(code)]
    return found


def test_jsonnetfile_declares_exactly_the_dependencies_the_mixin_imports_from_vendor():
    manifest = json.loads((ROOT / "jsonnetfile.json").read_text())
    assert manifest["version"] == 1
    assert manifest["legacyImports"] is True
    imports = mixin_imports()
    assert imports[ROOT / "mixin.libsonnet"], "the import scan finds the mixin's own imports"
    vendored = {target.split("/")[0] for path, targets in imports.items() for target in targets
                if not (path.parent / target).is_file()}
    declared = {dependency.get("name") or Path(dependency["source"]["git"].get("subdir") or
                                               dependency["source"]["git"]["remote"]).name.removesuffix(".git")
                for dependency in manifest["dependencies"]}
    assert declared == vendored
