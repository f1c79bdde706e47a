"""mixin.libsonnet, evaluated with the `jsonnet` binding, against the Python output it must equal, defaults and overrides alike."""

from __future__ import annotations

import copy
import json
import math
import operator
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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
from mixin import jsonnet as mixin_jsonnet  # noqa: E402
from mixin.fielddocs import field_doc  # noqa: E402
from mixin.placeholders import MARK, Registry, TemplateError  # noqa: E402
from mixin.rulefiles import check_alert_shape  # noqa: E402

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
    assert cpu["expr"].splitlines()[0] == "instance:devflow_process_cpu_seconds:ratio_rate3m > 0.95"
    assert cpu["for"] == "7m"
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


# --- _config's comments ------------------------------------------------------------------------

FIELD = re.compile(r"^\s*('[^']*'|\"[^\"]*\"|[A-Za-z_]\w*)\s*:")


def config_paths(config: dict, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for key, item in config.items():
        paths.append((*prefix, key))
        if isinstance(item, dict):
            paths += config_paths(item, (*prefix, key))
    return paths


def test_every_config_field_down_to_each_alert_setting_sits_under_its_own_one_line_comment():
    lines = (ROOT / "mixin" / "config.libsonnet").read_text().splitlines()
    body = lines[lines.index("  _config+:: {") + 1:]
    fields = [index for index, line in enumerate(body) if FIELD.match(line)]
    for index in fields:
        comment, before = body[index - 1].strip(), body[index - 2].strip()
        assert comment.startswith("// ") and len(comment) > 10, body[index]
        assert not before.startswith("//"), f"more than one comment line above {body[index]}"
    config = json.loads(_jsonnet.evaluate_snippet("config", "(import 'mixin/config.libsonnet')._config",
                                                  jpathdir=[str(ROOT)]))
    assert len(fields) == len(config_paths(config)), "one field per line"
    assert {path[2] for path in config_paths(config) if len(path) == 3 and path[0] == "alerts"} >= {
        "severity", "for", "enabled", "threshold", "window"}


def test_config_comments_are_the_docstrings_of_the_settings_fields_and_the_alert_summaries():
    from devflow_monitor.core.settings import Settings, Threshold
    text = (ROOT / "mixin" / "config.libsonnet").read_text()
    assert f"    // {field_doc(Settings, 'selector')}\n    selector: " in text
    assert f"        // {field_doc(Threshold, 'for_')}\n        'for': " in text
    summary = rules.active_alerts(Settings())["DevFlowHighCpuUsage"].summary
    assert f"      // {summary}\n      DevFlowHighCpuUsage: {{" in text


def test_a_settings_field_without_a_docstring_stops_the_build():
    class Undocumented:
        documented: int = 1
        """A documented field."""
        bare: int = 2

    assert field_doc(Undocumented, "documented") == "A documented field."
    with pytest.raises(LookupError, match="Undocumented.bare has no docstring"):
        field_doc(Undocumented, "bare")


# --- the stand-ins for _config values ------------------------------------------------------------

VALUES = {"selector": 'job="devflow"', "window": "1h30m", "margin": "1d", "threshold": 0.8, "ratio": 0.15,
          "min_errors": 10, "size": 10485760.0}


def stand_ins(values=VALUES) -> SimpleNamespace:
    registry = Registry()
    return SimpleNamespace(**{key: mixin_build.reference(value, registry, key) for key, value in values.items()})


REFUSED = {
    "number ==": lambda s: s.threshold == 0.8, "number !=": lambda s: s.threshold != 0.8,
    "number <": lambda s: s.threshold < 1, "number <=": lambda s: s.threshold <= 1,
    "number >": lambda s: s.threshold > 1, "number >=": lambda s: s.threshold >= 1,
    "reflected <": lambda s: 1 < s.threshold, "number == number": lambda s: s.threshold == s.ratio,
    "text ==": lambda s: s.selector == "x", "text !=": lambda s: s.selector != "x",
    "text <": lambda s: s.selector < "x", "text <=": lambda s: s.selector <= "x",
    "text >": lambda s: s.selector > "x", "text >=": lambda s: s.selector >= "x",
    "reflected text ==": lambda s: "x" == s.selector,
    "bool number": lambda s: bool(s.threshold), "bool text": lambda s: bool(s.selector),
    "if number": lambda s: 1 if s.min_errors else 0, "not text": lambda s: not s.selector,
    "hash number": lambda s: hash(s.threshold), "hash text": lambda s: hash(s.selector),
    "dict key": lambda s: {s.selector: 1}, "set member": lambda s: {s.threshold},
    "iter number": lambda s: iter(s.threshold), "iter text": lambda s: list(s.selector),
    "len text": lambda s: len(s.selector), "len number": lambda s: len(s.threshold),
    "in text": lambda s: "job" in s.selector, "index text": lambda s: s.selector[0],
    "slice text": lambda s: s.selector[1:], "int number": lambda s: int(s.min_errors),
    "float number": lambda s: float(s.threshold), "int text": lambda s: int(s.min_errors.__class__ and s.window),
    "float text": lambda s: float(s.selector), "round": lambda s: round(s.threshold, 2),
    "floor": lambda s: math.floor(s.threshold), "ceil": lambda s: math.ceil(s.threshold),
    "trunc": lambda s: math.trunc(s.threshold), "index": lambda s: operator.index(s.min_errors),
    "//": lambda s: s.threshold // 2, "reflected //": lambda s: 2 // s.threshold,
    "%": lambda s: s.threshold % 2, "reflected %": lambda s: 2 % s.threshold,
    "**": lambda s: s.threshold ** 2, "reflected **": lambda s: 2 ** s.threshold,
    "divmod": lambda s: divmod(s.min_errors, 3), "<<": lambda s: s.min_errors << 1,
    "&": lambda s: s.min_errors & 1, "|": lambda s: 1 | s.min_errors, "~": lambda s: ~s.min_errors,
    "number * text": lambda s: s.threshold * "x", "text + number": lambda s: s.selector + s.threshold,
    "str + number": lambda s: "x" + s.threshold, "number + text": lambda s: s.threshold + s.selector,
    "number * bool": lambda s: s.threshold * True, "number * inf": lambda s: s.threshold * math.inf,
    "text * int": lambda s: s.selector * 2, "int * text": lambda s: 2 * s.selector,
    "-text": lambda s: -s.window, "abs text": lambda s: abs(s.window),
    "text % args": lambda s: s.selector % (), "%-format text": lambda s: "%s" % s.selector,
    "str fraction": lambda s: str(s.threshold), "format fraction": lambda s: f"{s.threshold}",
    "format width": lambda s: f"{s.threshold:>8}", "format percent": lambda s: f"{s.threshold:%}",
    "format grouping": lambda s: f"{s.min_errors:,}", "format hex": lambda s: f"{s.min_errors:x}",
    "format d fraction": lambda s: f"{s.threshold:d}", "format text": lambda s: f"{s.selector:>20}",
    "format fixed": lambda s: f"{s.threshold:.2f}", "format exponent": lambda s: f"{s.threshold:e}",
    "format 16 digits": lambda s: f"{s.threshold:.16g}", "format alternate": lambda s: f"{s.threshold:#g}",
    "repr number": lambda s: repr(s.threshold), "repr text": lambda s: repr(s.selector),
    "!r text": lambda s: f"{s.selector!r}", "!a number": lambda s: f"{s.threshold!a}",
    "str method": lambda s: s.selector.lower(), "split": lambda s: s.selector.split(","),
    "str.format": lambda s: s.selector.format(), "startswith": lambda s: s.window.startswith("1"),
    "join method": lambda s: s.selector.join(["a", "b"]), "encode": lambda s: s.selector.encode(),
    "number method": lambda s: s.threshold.is_integer(), "seconds of number": lambda s: rules.seconds(s.threshold),
    "number() of text": lambda s: rules.number(s.window), "pickle number": lambda s: pickle.dumps(s.threshold),
    "pickle text": lambda s: pickle.dumps(s.selector), "assignment": lambda s: setattr(s.threshold, "code", "1"),
}


@pytest.mark.parametrize("operation", REFUSED.values(), ids=REFUSED.keys())
def test_an_operation_the_stand_ins_cannot_write_as_jsonnet_raises_naming_the_setting(operation):
    with pytest.raises(TemplateError, match=r"c\.(selector|window|threshold|ratio|min_errors)\b"):
        operation(stand_ins())


def text_as_jsonnet(rendered: str) -> tuple[list[str], str]:
    """The embedded expressions of `rendered`, and a Jsonnet expression of the whole text."""
    parts = rendered.split(MARK)
    codes = parts[1::2]
    pieces = [mixin_jsonnet.string(part) if index % 2 == 0 else f"({part})" for index, part in enumerate(parts)]
    return codes, " + ".join(pieces)


TRANSLATED = {
    "format text": (lambda s: f"[{s.selector}]", ["c.selector"]),
    "str text": (lambda s: str(s.window), ["c.window"]),
    "concatenate": (lambda s: "{" + s.selector + "}", ["c.selector"]),
    "join": (lambda s: ",".join((s.selector, 'a="b"')), ["c.selector"]),
    "seconds": (lambda s: f"{rules.seconds(s.window)}", ["std.toString(lib.seconds(c.window))"]),
    "seconds + seconds": (lambda s: f"{rules.seconds(s.window) + rules.seconds(s.margin)}",
                          ["std.toString(lib.seconds(c.window) + lib.seconds(c.margin))"]),
    "whole number": (lambda s: f"{s.min_errors} {s.min_errors:d} " + str(s.min_errors),
                     ["std.toString(c.min_errors)"] * 3),
    "whole * whole": (lambda s: f"{s.min_errors * 2}", ["std.toString(c.min_errors * 2)"]),
    "* constant": (lambda s: f"{s.threshold * 100:.6g}", ["lib.formatG(c.threshold * 100, 6)"]),
    "constant *": (lambda s: f"{100 * s.threshold:g}", ["lib.formatG(100 * c.threshold, 6)"]),
    "number * number": (lambda s: f"{s.threshold * s.ratio:.6g}", ["lib.formatG(c.threshold * c.ratio, 6)"]),
    "number / number": (lambda s: f"{s.threshold / s.ratio:g}", ["lib.formatG(c.threshold / c.ratio, 6)"]),
    "/ constant": (lambda s: f"{s.size / 1024 ** 2:g}", ["lib.formatG(c.size / 1048576, 6)"]),
    "constant /": (lambda s: f"{1 / s.threshold:.3g}", ["lib.formatG(1 / c.threshold, 3)"]),
    "- constant": (lambda s: f"{s.threshold - 0.5:g}", ["lib.formatG(c.threshold - 0.5, 6)"]),
    "constant -": (lambda s: f"{1 - s.threshold:g}", ["lib.formatG(1 - c.threshold, 6)"]),
    "+ number": (lambda s: f"{s.threshold + s.ratio:.6g}", ["lib.formatG(c.threshold + c.ratio, 6)"]),
    "grouping kept": (lambda s: f"{s.threshold - (s.ratio - 1):g}", ["lib.formatG(c.threshold - (c.ratio - 1), 6)"]),
    "sum times": (lambda s: f"{(s.threshold + 1) * 2:g}", ["lib.formatG((c.threshold + 1) * 2, 6)"]),
    "product over product": (lambda s: f"{s.threshold / (s.ratio * 2):g}",
                             ["lib.formatG(c.threshold / (c.ratio * 2), 6)"]),
    "negation": (lambda s: f"{-s.threshold:g}", ["lib.formatG(-c.threshold, 6)"]),
    "negated sum": (lambda s: f"{-(s.threshold + s.ratio):g}", ["lib.formatG(-(c.threshold + c.ratio), 6)"]),
    "abs": (lambda s: f"{abs(s.threshold - 1):g}", ["lib.formatG(std.abs(c.threshold - 1), 6)"]),
    "unary +": (lambda s: f"{+s.threshold:g}", ["lib.formatG(c.threshold, 6)"]),
    "precision": (lambda s: f"{s.threshold:.1g} {s.size:.15g} {s.ratio:.0g}",
                  ["lib.formatG(c.threshold, 1)", "lib.formatG(c.size, 15)", "lib.formatG(c.ratio, 0)"]),
    "number()": (lambda s: rules.number(s.threshold) + " " + rules.number(s.size),
                 ["lib.number(c.threshold)", "lib.number(c.size)"]),
    "percent()": (lambda s: rules.percent(s.ratio), ["lib.formatG(c.ratio * 100, 6)"]),
    "mebibytes()": (lambda s: rules.mebibytes(s.size), ["lib.formatG(c.size / 1048576, 6)"]),
    "copy": (lambda s: f"{copy.deepcopy(s.selector)} {copy.copy(s.threshold):g}",
             ["c.selector", "lib.formatG(c.threshold, 6)"]),
}
OTHER_VALUES = {**VALUES, "threshold": 0.123456789, "ratio": 2.5, "min_errors": 3, "size": 123456789.0,
                "window": "2d", "selector": "job='x'"}


@pytest.mark.parametrize("values", [VALUES, OTHER_VALUES], ids=["defaults", "others"])
@pytest.mark.parametrize("operation, expected", TRANSLATED.values(), ids=TRANSLATED.keys())
def test_an_operation_the_stand_ins_translate_gives_jsonnet_that_prints_what_python_prints(operation, expected,
                                                                                         values):
    codes, expression = text_as_jsonnet(operation(stand_ins(values)))
    assert codes == expected
    snippet = f"local lib = import 'mixin/lib.libsonnet'; local c = {json.dumps(values)}; {expression}"
    printed = json.loads(_jsonnet.evaluate_snippet("translated", snippet, jpathdir=[str(ROOT)]))
    assert printed == operation(SimpleNamespace(**values))


def test_text_changed_after_a_setting_went_into_it_is_refused():
    s = stand_ins()
    names = mixin_jsonnet.Names(Registry())
    with pytest.raises(TemplateError, match="which no setting embedded"):
        mixin_jsonnet.template(f"up{{{s.selector}}}".upper(), mixin_jsonnet.Names(s.selector.registry), "v", "")
    with pytest.raises(TemplateError, match="unbalanced"):
        mixin_jsonnet.template(f"up{{{s.selector}}}"[:6], names, "v", "")


def test_an_alert_of_a_shape_lib_alert_does_not_write_is_refused():
    marked, _, _ = mixin_build.referenced_settings(Settings())
    rule = rules.rule_files(marked)["alerts.yml"]["groups"][0]["rules"][0]
    check_alert_shape(rule)
    with pytest.raises(TemplateError, match="labels other than its own severity"):
        check_alert_shape({**rule, "labels": {**rule["labels"], "team": "devflow"}})


FORMAT_G_VALUES = [0.8, 0.95, 0.9500000000000001, 0.123456789, 0.0123456, 0.30864197250000003, 80.0, 1e-7, 1e-5,
                   0.00012345, 123456789.0, 10485760.0, 99999.95, 999999.5, 9.9999995, 0.125, 2.5, -0.3, -1234.5678,
                   1e16, 1e300, 5e-324, 0.0]


@pytest.mark.parametrize("precision", [0, 1, 3, 6, 15])
def test_lib_format_g_prints_numbers_as_python_general_format_does(precision):
    snippet = (f"local lib = import 'mixin/lib.libsonnet'; "
               f"[lib.formatG(value, {precision}) for value in {json.dumps(FORMAT_G_VALUES)}]")
    printed = json.loads(_jsonnet.evaluate_snippet("formatG", snippet, jpathdir=[str(ROOT)]))
    assert printed == [format(value, f".{precision}g") for value in FORMAT_G_VALUES]
