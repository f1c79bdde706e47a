"""Alerting as code: the generated rules, their promtool unit tests, the Alertmanager config.

Real promtool, amtool and Alertmanager. Slack and SMTP cannot exist here: a
local HTTP server stands in for Slack's webhook and a small SMTP server for the
mail relay; Alertmanager talks to them exactly as it would to the real ones.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from devflow_monitor.alerting import alertmanager, build, rules
from devflow_monitor.core import settings
from conftest import ROOT, free_port, requires, wait_for_http, wait_until
from devflow_monitor.core import catalog
from devflow_monitor.generate import committed as generated

ALERTING = ROOT / "alerting"
RUNBOOK = ROOT / "docs" / "runbook.md"
GENERATED_RULES = [ALERTING / "rules" / "recording.yml", ALERTING / "rules" / "alerts.yml"]
GENERATED_TESTS = ALERTING / "tests" / "rules_test.yml"
GENERATED_AM = ALERTING / "alertmanager.yml"

pytestmark = requires("promtool", "amtool")


def run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=120, **kwargs)


def alert_rules(path: Path = ALERTING / "rules" / "alerts.yml") -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


# --- fake far ends of the receivers ---------------------------------------------------------------

class FakeSlack:
    """Slack's incoming webhook: keeps every JSON message Alertmanager posts."""

    def __init__(self):
        self.messages: list[dict] = []
        received = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/fake"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def titles(self) -> list[str]:
        return [attachment["title"] for message in list(self.messages) for attachment in message["attachments"]]

    def texts(self) -> list[str]:
        return [attachment["text"] for message in list(self.messages) for attachment in message["attachments"]]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeSMTP:
    """A mail relay that speaks just enough SMTP (EHLO, AUTH PLAIN, MAIL, RCPT, DATA) for Alertmanager."""

    def __init__(self):
        self.mails: list[email.message.EmailMessage] = []
        self.logins: list[tuple[str, str]] = []
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str):
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self):
                self.reply("220 fake-smtp ready")
                while line := self.rfile.readline():
                    command = line.decode(errors="replace").rstrip("\r\n")
                    verb = command.split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        self.wfile.write(b"250-fake-smtp\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
                    elif verb == "AUTH":
                        parts = command.split()
                        blob = parts[2] if len(parts) > 2 else None
                        if blob is None:
                            self.reply("334 ")
                            blob = self.rfile.readline().decode().strip()
                        _, user, password = base64.b64decode(blob).decode().split("\0")
                        owner.logins.append((user, password))
                        self.reply("235 2.7.0 accepted")
                    elif verb == "DATA":
                        self.reply("354 go ahead")
                        lines = []
                        while (data := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                            lines.append(data[1:] if data.startswith(b"..") else data)
                        owner.mails.append(email.message_from_bytes(b"".join(lines), policy=email.policy.default))
                        self.reply("250 2.0.0 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:  # HELO, MAIL, RCPT, RSET, NOOP
                        self.reply("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def subjects(self) -> list[str]:
        return [str(mail["Subject"]) for mail in list(self.mails)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    slack, smtp = FakeSlack(), FakeSMTP()
    yield slack, smtp
    slack.close()
    smtp.close()


SMTP_PASSWORD = "not-a-real-password"


def fast_alertmanager_settings(base: settings.Settings, smtp: FakeSMTP) -> settings.Settings:
    """The same routes and receivers, with timers short enough for a test and the relay on loopback."""
    return settings.apply(base, {"alertmanager": {
        "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h",
        "email": {"smarthost": smtp.address, "require_tls": False}}})


def start_alertmanager(spawn, directory: Path, config_settings: settings.Settings, slack: FakeSlack) -> str:
    """A real Alertmanager with the generated config; secrets written where the config names them."""
    directory.mkdir(parents=True, exist_ok=True)
    am = config_settings.alertmanager
    # As alerting/secrets/README.md says: no newline after the password (0.25 sends the file verbatim).
    for relative, content in ((am.slack.api_url_file, slack.url + "\n"), (am.email.auth_password_file, SMTP_PASSWORD)):
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    config = alertmanager.config(config_settings, templates=str(ALERTING / alertmanager.TEMPLATE_FILES))
    (directory / "alertmanager.yml").write_text(build.dump(config))
    port = free_port()
    # Alertmanager 0.25 opens *_file paths relative to its working directory: run it from the config's.
    spawn(["prometheus-alertmanager", f"--config.file={directory / 'alertmanager.yml'}",
           f"--storage.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
           "--cluster.listen-address=", "--log.level=warn"], cwd=directory)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/-/ready")
    return url


def post_alerts(url: str, alerts: list[dict]) -> None:
    request = urllib.request.Request(url + "/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


# --- rules ------------------------------------------------------------------------------------------

def test_generated_rule_files_pass_promtool_check():
    result = run("promtool", "check", "rules", *GENERATED_RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_silent_before_its_for_and_fires_after_it_in_promtool():
    result = run("promtool", "test", "rules", GENERATED_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_case_checked_one_step_before_and_after_and_a_healthy_case():
    """Coverage, read from the test file: for every alert a case silent at T - 1m and firing at T >= for with
    its severity and all annotations rendered, and a case that stays silent. (That T - 1m lies inside the
    `for` window is what test_rule_tests_fail_when_a_rule_drifts_from_them shows.)"""
    tests = yaml.safe_load(GENERATED_TESTS.read_text())["tests"]
    for rule in alert_rules():
        name, for_seconds = rule["alert"], settings.seconds(rule["for"])
        firing = healthy = False
        for test in tests:
            checks = {settings.seconds(check["eval_time"]): check["exp_alerts"]
                      for check in test.get("alert_rule_test", []) if check["alertname"] == name}
            fired = [moment for moment, alerts in checks.items() if alerts]
            if not fired:
                healthy = healthy or len(checks) >= 2
                continue
            moment, expected = fired[0], checks[fired[0]][0]
            annotations = expected["exp_annotations"]
            firing = firing or (
                checks.get(moment - 60) == [] and moment >= for_seconds
                and expected["exp_labels"]["severity"] == rule["labels"]["severity"]
                and set(annotations) == set(rule["annotations"])
                and not any("{{" in text for text in annotations.values()))
        assert firing, f"{name}: no test shows it silent one step before its for and firing after"
        assert healthy, f"{name}: no test shows it silent on healthy input"


def _subset_test_file(path: Path, names: set[str], rule_dir: Path) -> Path:
    """The generated tests of `names` only, pointed at the rule files in `rule_dir`."""
    data = yaml.safe_load(GENERATED_TESTS.read_text())
    data["tests"] = [test for test in data["tests"]
                     if {check["alertname"] for check in test.get("alert_rule_test", [])} & names]
    data["rule_files"] = [str(rule_dir / "recording.yml"), str(rule_dir / "alerts.yml")]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("override, alert", [
    ({"alerts": {"DevFlowProcessDown": {"for": "2m"}}}, "DevFlowProcessDown"),  # fires a step later
    ({"alerts": {"DevFlowHighCpuUsage": {"threshold": 10}}}, "DevFlowHighCpuUsage"),  # never fires
    ({"alerts": {"DevFlowBackupStale": {"max_age": "20h"}}}, "DevFlowBackupStale"),  # description changes
    ({"app": {"error_levels": "error"}}, "DevFlowHighErrorRate"),  # fatal no longer counts
])
def test_rule_tests_fail_when_a_rule_drifts_from_them(tmp_path, override, alert):
    drifted = build.render(settings.apply(settings.Settings(), override))
    generated.write({name: text for name, text in drifted.items() if name.startswith("rules/")}, tmp_path)
    test_file = _subset_test_file(tmp_path / "subset_test.yml", {alert}, tmp_path / "rules")
    result = run("promtool", "test", "rules", test_file)
    assert result.returncode == 1, result.stdout
    assert alert in result.stdout + result.stderr


_NOT_METRICS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                "offset", "inf", "nan",
                # aggregations, which may be followed by `by (...)` instead of their parenthesis
                "sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
                "count_values"}


def metric_names(expr: str) -> set[str]:
    """Metric and recorded-series names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\boffset\s+-?\w+", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1 ", expr)
    expr = re.sub(r"(?<![\w:])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?", " ", expr)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][\w:]*", expr):
        if expr[match.end():].lstrip().startswith("(") or match.group().lower() in _NOT_METRICS:
            continue  # a function or an operator
        names.add(match.group())
    return names


def test_metric_name_parser_finds_selectors_and_skips_functions_labels_and_numbers():
    expr = ('sum without (mode) (rate(a_total{job="x",le="0.5"}[5m])) > 1e+07 and on (job) b:c:d or absent(up)'
            ' unless e offset 10m')
    assert metric_names(expr) == {"a_total", "b:c:d", "up", "e"}


def test_every_metric_a_rule_uses_is_in_the_catalog():
    everything = settings.apply(settings.Settings(), {"app": {"expect_listener": True}})
    recorded_names = set(vars(rules.recorded(everything)).values())
    used = set()
    for content in rules.rule_files(everything).values():
        for group in content["groups"]:
            for rule in group["rules"]:
                used |= metric_names(rule["expr"])
    unknown = set()
    for name in used - recorded_names - {rules.UP}:
        try:
            catalog.by_name(name)
        except KeyError:
            unknown.add(name)
    assert not unknown, f"rules use metrics the exporter does not publish: {sorted(unknown)}"


def test_alerts_follow_naming_severity_and_annotation_conventions():
    anchors = {re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower().replace(" ", "-"))
               for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")}
    everything = settings.apply(settings.Settings(), {"app": {"expect_listener": True}})
    for content in rules.rule_files(everything).values():
        for group in content["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
                    continue
                name = rule["alert"]
                assert re.fullmatch(r"DevFlow(?:[A-Z][a-z0-9]*)+", name), name
                assert rule["labels"]["severity"] in settings.SEVERITIES
                assert "{{" not in rule["annotations"]["summary"], name
                assert "{{" in rule["annotations"]["description"], name
                anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
                assert anchor in anchors, f"{name}: docs/runbook.md has no section #{anchor}"


def test_public_build_defaults_skip_the_port_alert_and_ignore_a_missing_listener():
    names = {rule["alert"] for rule in alert_rules()}
    assert "DevFlowPortNotListening" not in names
    probe = next(rule for rule in alert_rules() if rule["alert"] == "DevFlowProbeFailing")
    assert "no_listener" in probe["expr"]


def test_expecting_a_listener_adds_the_port_alert_and_alerts_on_no_listener(tmp_path):
    expecting = settings.apply(settings.Settings(), {"app": {"expect_listener": True}})
    generated.write(build.render(expecting), tmp_path)
    names = {rule["alert"] for rule in alert_rules(tmp_path / "rules" / "alerts.yml")}
    assert "DevFlowPortNotListening" in names
    data = yaml.safe_load((tmp_path / "tests" / "rules_test.yml").read_text())
    data["tests"] = [test for test in data["tests"] if {check["alertname"] for check in test.get(
        "alert_rule_test", [])} & {"DevFlowPortNotListening", "DevFlowProbeFailing"}]
    assert any("nothing listens" in test["name"] and "fires" in test["name"] for test in data["tests"])
    (tmp_path / "tests" / "subset_test.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    result = run("promtool", "test", "rules", tmp_path / "tests" / "subset_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# --- build and overrides ------------------------------------------------------------------------------

def test_committed_files_match_the_settings():
    result = run(sys.executable, "-m", "devflow_monitor.alerting.build", "--check", cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_check_names_a_stale_file_and_fails(tmp_path):
    assert run(sys.executable, "-m", "devflow_monitor.alerting.build", "--out", tmp_path, cwd=ROOT).returncode == 0
    assert run(sys.executable, "-m", "devflow_monitor.alerting.build", "--out", tmp_path, "--check", cwd=ROOT).returncode == 0
    alerts = tmp_path / "rules" / "alerts.yml"
    alerts.write_text(alerts.read_text().replace("for: 5m", "for: 6m", 1))
    result = run(sys.executable, "-m", "devflow_monitor.alerting.build", "--out", tmp_path, "--check", cwd=ROOT)
    assert result.returncode == 1
    assert "rules/alerts.yml" in result.stderr and "make rules" in result.stderr


def _cpu_rule(files: dict[str, str]) -> dict:
    return next(rule for group in yaml.safe_load(files["rules/alerts.yml"])["groups"] for rule in group["rules"]
                if rule["alert"] == "DevFlowHighCpuUsage")


def test_yaml_override_changes_rules_and_routes(tmp_path):
    override = tmp_path / "override.yml"
    override.write_text(yaml.safe_dump({
        "selector": 'job="devflow-prod"',
        "alerts": {"DevFlowHighCpuUsage": {"threshold": 0.95, "for": "10m", "severity": "critical"},
                   "DevFlowBackupMissing": {"enabled": False}},
        "alertmanager": {"routes": {"warning": {"receivers": ["email"]}}}}))
    files = build.render(settings.load(override))
    cpu = _cpu_rule(files)
    assert cpu["expr"].splitlines()[0].endswith("> 0.95") and cpu["for"] == "10m"
    assert cpu["labels"]["severity"] == "critical"
    assert "95%" in cpu["annotations"]["description"]
    assert 'job="devflow-prod"' in files["rules/recording.yml"] and 'job="devflow"}' not in files["rules/alerts.yml"]
    assert "DevFlowBackupMissing" not in files["rules/alerts.yml"]
    assert "DevFlowBackupMissing" not in files["tests/rules_test.yml"]
    warning_routes = [route for route in yaml.safe_load(files["alertmanager.yml"])["route"]["routes"]
                      if route["matchers"] == ['severity="warning"']]
    assert [route["receiver"] for route in warning_routes] == ["email"]


def test_jsonnet_override_merges_over_defaults_with_super(tmp_path):
    override = tmp_path / "override.jsonnet"
    override.write_text("""
        local slower = { 'for': '15m' };  // `for` is a Jsonnet keyword: quote it
        {
          _config+:: {
            alerts+: {
              DevFlowHighCpuUsage+: slower { threshold: super.threshold + 0.1 },
            },
            app+: { expect_listener: true },
          },
        }
    """)
    loaded = settings.load(override)
    assert loaded.alerts["DevFlowHighCpuUsage"].threshold == pytest.approx(0.9)
    files = build.render(loaded)
    cpu = _cpu_rule(files)
    assert cpu["expr"].splitlines()[0].endswith("> 0.9") and cpu["for"] == "15m"
    assert "DevFlowPortNotListening" in files["rules/alerts.yml"]
    # Everything not mentioned keeps its default.
    assert loaded.alerts["DevFlowProcessDown"].for_ == "1m"


def test_printed_settings_are_a_complete_override_that_changes_nothing(tmp_path):
    printed = run(sys.executable, "-m", "devflow_monitor.alerting.build", "--print-settings", cwd=ROOT)
    assert printed.returncode == 0, printed.stderr
    override = tmp_path / "all.yml"
    override.write_text(printed.stdout)
    assert build.render(settings.load(override)) == build.render(settings.Settings())


@pytest.mark.parametrize("text, suffix, message", [
    ("rate_window: 90s", ".yml", "rate_window must be at least 2m"),  # one sample in a left-open 1m range
    ("alerts: {DevFlowHighCpuUsge: {threshold: 1}}", ".yml", "did you mean 'DevFlowHighCpuUsage'"),
    ("alerts: {DevFlowHighCpuUsage: {threshold: high}}", ".yml", "expected a number"),
    ("alerts: {DevFlowProcessDown: {for: soon}}", ".yml", "not a duration"),
    ("alerts: {DevFlowProcessDown: {severity: page}}", ".yml", "must be one of critical, warning, info"),
    ("alertmanager: {routes: {critical: {receivers: [pager]}}}", ".yml", "receivers: must list"),
    ("{ _config+:: { alerts+: { nope: 1 } }", ".jsonnet", "jsonnet"),
])
def test_bad_override_is_one_line_on_stderr_and_exit_2(tmp_path, text, suffix, message):
    override = tmp_path / f"override{suffix}"
    override.write_text(text)
    result = run(sys.executable, "-m", "devflow_monitor.alerting.build", "--settings", override, "--out", tmp_path / "out", cwd=ROOT)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists()


# --- Alertmanager -------------------------------------------------------------------------------------

def test_generated_alertmanager_config_passes_amtool_check():
    result = run("amtool", "check-config", GENERATED_AM)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 receivers" in result.stdout and "1 inhibit rules" in result.stdout


@pytest.mark.parametrize("labels, receivers", [
    (["severity=critical"], {"email", "slack"}),
    (["severity=warning"], {"slack"}),
    (["severity=info"], {"null"}),
    (["alertname=SomethingElse"], {"slack"}),  # no severity: the default receiver still hears it
])
def test_each_severity_reaches_exactly_its_receivers(labels, receivers):
    result = run("amtool", "config", "routes", "test", f"--config.file={GENERATED_AM}",
                 "alertname=DevFlowProcessDown", "instance=host:9764", *labels)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.strip().split(",")) == receivers


def test_secrets_come_only_from_git_ignored_files():
    config = yaml.safe_load(GENERATED_AM.read_text())
    text = GENERATED_AM.read_text()
    assert "api_url:" not in text and "auth_password:" not in text and "hooks.slack.com" not in text
    slack = config["receivers"][0]["slack_configs"][0]
    mail = next(r for r in config["receivers"] if r["name"] == "email")["email_configs"][0]
    for secret in (slack["api_url_file"], mail["auth_password_file"]):
        assert secret.startswith("secrets/")
        ignored = run("git", "check-ignore", "-q", f"alerting/{secret}", cwd=ROOT)
        assert ignored.returncode == 0, f"alerting/{secret} is not git-ignored"
    assert run("git", "check-ignore", "-q", "alerting/secrets/README.md", cwd=ROOT).returncode == 1


def _alert(name: str, severity: str, instance: str, **labels) -> dict:
    return {"labels": {"alertname": name, "severity": severity, "instance": instance, "job": "devflow", **labels},
            "annotations": {"summary": f"{name} summary",
                            "description": f"{name} on {instance} {labels}",
                            "runbook_url": f"docs/runbook.md#{name.lower()}"}}


@pytest.mark.slow
def test_alertmanager_routes_by_severity_inhibits_warnings_and_lists_every_alert(spawn, tmp_path, receivers):
    slack, smtp = receivers
    url = start_alertmanager(spawn, tmp_path / "am", fast_alertmanager_settings(settings.Settings(), smtp), slack)
    post_alerts(url, [
        _alert("DevFlowProcessDown", "critical", "a:9764"),
        _alert("DevFlowProbeFailing", "warning", "a:9764", endpoint="health", state="timeout"),
        _alert("DevFlowProbeFailing", "warning", "b:9764", endpoint="health", state="timeout"),
        _alert("DevFlowProbeFailing", "warning", "b:9764", endpoint="status", state="http_error"),
        _alert("DevFlowDatabaseFragmented", "info", "c:9764"),
    ])
    wait_until(lambda: {"[FIRING:1] DevFlowProcessDown on a:9764", "[FIRING:2] DevFlowProbeFailing on b:9764"}
               <= set(slack.titles()) and smtp.mails, timeout=20, message="Slack and e-mail notifications")
    time.sleep(3)  # several group_intervals: anything else routed would have arrived by now

    # Critical: Slack and e-mail (authenticated with the password from its file); warning: Slack only.
    assert smtp.subjects() == ["[FIRING:1] DevFlowProcessDown on a:9764"]
    assert smtp.logins == [(settings.Settings().alertmanager.email.auth_username, SMTP_PASSWORD)]
    body = smtp.mails[0].get_body(("plain",)).get_content()
    assert "DevFlowProcessDown on a:9764" in body and "docs/runbook.md#devflowprocessdown" in body
    # The warning of the instance with a critical alert is inhibited; info goes to no one.
    assert sorted(slack.titles()) == ["[FIRING:1] DevFlowProcessDown on a:9764",
                                      "[FIRING:2] DevFlowProbeFailing on b:9764"]
    group_text = next(text for text in slack.texts() if "b:9764" in text)
    assert "'endpoint': 'health'" in group_text and "'endpoint': 'status'" in group_text
    with urllib.request.urlopen(url + "/api/v2/alerts?filter=alertname%3D%22DevFlowProbeFailing%22") as response:
        states = {alert["labels"]["instance"]: alert["status"] for alert in json.loads(response.read())}
    assert states["a:9764"]["state"] == "suppressed" and states["a:9764"]["inhibitedBy"]
    assert states["b:9764"]["state"] == "active"


def left_open(text: str) -> str:
    """Rule text whose ranges are a millisecond shorter: on Prometheus 2 that drops the sample on a range's left
    edge, as Prometheus 3's left-open ranges do (no Prometheus 3 promtool is packaged for Debian, PyPI or npm)."""
    return re.sub(r"\[(\w+)\]", lambda m: f"[{settings.seconds(m.group(1)) * 1000 - 1}ms]", text)


def test_left_open_emulation_drops_the_sample_on_the_left_edge(tmp_path):
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "x:increase5m", "expr": "increase(x[5m])"}]}]}))
    rules_yml = left_open((tmp_path / "rules.yml").read_text())
    test = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": [{"series": "x", "values": "0 1x10"}],
        # The only increase, 0 -> 1, is between the sample on the left edge (0m) and the next one.
        "promql_expr_test": [{"expr": "x:increase5m > 0", "eval_time": "5m",
                              "exp_samples": [{"labels": "x:increase5m", "value": 1}]}]}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    assert run("promtool", "test", "rules", tmp_path / "test.yml").returncode == 0
    (tmp_path / "rules.yml").write_text(rules_yml)
    assert run("promtool", "test", "rules", tmp_path / "test.yml").returncode == 1


def test_rule_tests_pass_when_ranges_leave_out_their_left_edge_as_on_prometheus_3(tmp_path):
    data = yaml.safe_load(GENERATED_TESTS.read_text())
    data["rule_files"] = []
    for path in GENERATED_RULES:
        (tmp_path / path.name).write_text(left_open(path.read_text()))
        data["rule_files"].append(str(tmp_path / path.name))
    assert "999ms]" in (tmp_path / "recording.yml").read_text()
    (tmp_path / "left_open_test.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    result = run("promtool", "test", "rules", tmp_path / "left_open_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
