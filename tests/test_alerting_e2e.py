"""From a fault to a notification, with the real binaries on loopback ports.

The simulator (the DevFlow stand-in) <- `devflow-monitor serve` <- real
`prometheus` (1 s scrapes and evaluations, the generated rules rendered with
short `for` values and a 10 s rate window) -> real `prometheus-alertmanager`
with the generated routes, receivers, inhibition and templates. Slack and SMTP
cannot exist here: the Slack webhook URL in the secret file points at a local
HTTP server and the mail relay is a local SMTP server (both from
test_alerting.py), so Alertmanager's real Slack and e-mail integrations run.

Three faults, one after the other: an error burst (warning: Slack only), the
public build's "stop writing" (critical: Slack and e-mail), and the process
exiting (critical; its failing health probe is no alert of its own while the
process is gone, not even a pending one). Each alert must arrive on its route,
then its resolved notification once the fault is cleared.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request

import pytest
import yaml

from devflow_monitor.alerting import build, rules
from devflow_monitor.core import settings
from conftest import free_port, requires, wait_for_http, wait_until
from devflow_monitor.generate import committed as generated
from test_alerting import fast_alertmanager_settings, receivers, start_alertmanager  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.slow,
    requires("prometheus", "prometheus-alertmanager"),
]

FIRE_TIMEOUT = 60  # seconds; a rate window, a `for`, a group_wait and a few scrapes
RESOLVE_TIMEOUT = 60

# Short windows and `for` values for the alerts this test provokes; every other alert keeps its default
# (minutes to hours), so nothing unrelated can reach the receivers while the test runs.
E2E_OVERRIDES = {
    "rate_window": "10s",
    "scrape_interval": "1s",  # the Prometheus below scrapes every second
    "app": {"expect_listener": True},  # the simulator serves /health, so "no listener" is a failure here
    "alerts": {
        "DevFlowErrorBurst": {"for": "2s", "window": "10s"},
        "DevFlowEventsNotPersisted": {"for": "3s"},
        "DevFlowProcessDown": {"for": "2s"},
        # Longer than the moment between the server's listener closing and the exporter finding it gone.
        "DevFlowProbeFailing": {"for": "8s"},
    },
}


def query(prometheus: str, expr: str) -> list[dict]:
    url = prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())["data"]["result"]


def am_alerts(alertmanager: str, name: str) -> list[dict]:
    url = alertmanager + "/api/v2/alerts?" + urllib.parse.urlencode({"filter": f'alertname="{name}"'})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def stack(spawn, tmp_path, simulator, receivers):
    """Exporter, Prometheus and Alertmanager around the simulator; everything stopped by `spawn`."""
    slack, smtp = receivers
    alert_settings = fast_alertmanager_settings(settings.apply(settings.Settings(), E2E_OVERRIDES), smtp)
    alertmanager = start_alertmanager(spawn, tmp_path / "alertmanager", alert_settings, slack)

    exporter_port = free_port()
    exporter_config = tmp_path / "exporter.yml"
    exporter_config.write_text(yaml.safe_dump({
        "devflow": {"access_log": str(simulator.log_dir / "access.log")},
        "collectors": {"process": {"scan_interval_seconds": 0.2},
                       "database": {"counts_interval_seconds": 0.5, "integrity_interval_seconds": 5},
                       "logs": {"poll_interval_seconds": 0.2, "state_file": str(tmp_path / "log-offsets.json")},
                       "probe": {"interval_seconds": 0, "timeout_seconds": 0.5}},
        "backup": {"status_file": str(tmp_path / "backup-status.json")},
    }))
    spawn([sys.executable, "-m", "devflow_monitor.cli", "serve", "--config.file", str(exporter_config),
           "--web.listen-address", f"127.0.0.1:{exporter_port}",
           "--devflow.database", str(simulator.database), "--devflow.pidfile", str(simulator.pidfile),
           "--devflow.url", simulator.url, "--devflow.port", simulator.url.rsplit(":", 1)[1],
           "--devflow.log-files", str(simulator.log_dir / "devflow-monitor.err"),
           str(simulator.log_dir / "server.log")])
    wait_for_http(f"http://127.0.0.1:{exporter_port}/health")

    prometheus_dir = tmp_path / "prometheus"
    generated.write({f"rules/{name}": build.dump(content)
                 for name, content in rules.rule_files(alert_settings).items()}, prometheus_dir)
    alertmanager_address = alertmanager.removeprefix("http://")
    (prometheus_dir / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules/recording.yml", "rules/alerts.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_address]}]}]},
        "scrape_configs": [{"job_name": "devflow",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
    }))
    prometheus_port = free_port()
    spawn(["prometheus", f"--config.file={prometheus_dir / 'prometheus.yml'}",
           f"--storage.tsdb.path={prometheus_dir / 'data'}", f"--web.listen-address=127.0.0.1:{prometheus_port}",
           "--rules.alert.resend-delay=1s", "--log.level=warn"])
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    wait_for_http(prometheus + "/-/ready", timeout=30)

    ingest = rules.recorded(alert_settings).ingest_rate
    wait_until(lambda: query(prometheus, f"{ingest} > 0"), timeout=FIRE_TIMEOUT,
               message="Prometheus to record the simulator's event rate")
    return {"prometheus": prometheus, "alertmanager": alertmanager, "slack": slack, "smtp": smtp,
            "instance": f"127.0.0.1:{exporter_port}"}


def test_faults_reach_the_receivers_of_their_severity_then_resolve(stack, simulator, spawn, tmp_path):
    slack, smtp, instance, prometheus = stack["slack"], stack["smtp"], stack["instance"], stack["prometheus"]

    def firing(name: str, titles) -> bool:
        return any(title.startswith("[FIRING") and title.endswith(f"] {name} on {instance}") for title in titles())

    def resolved(name: str, titles) -> bool:
        return f"[RESOLVED] {name} on {instance}" in titles()

    # 1. Error burst: a warning, so Slack only.
    simulator.fault("error_burst")
    wait_until(lambda: firing("DevFlowErrorBurst", slack.titles), timeout=FIRE_TIMEOUT,
               message="DevFlowErrorBurst on Slack")
    simulator.fault("error_burst", on=False)
    wait_until(lambda: resolved("DevFlowErrorBurst", slack.titles), timeout=RESOLVE_TIMEOUT,
               message="DevFlowErrorBurst resolved on Slack")
    assert not any("DevFlowErrorBurst" in subject for subject in smtp.subjects())

    # 2. The public build's defect: logs go on, no row is written. Critical: Slack and e-mail.
    simulator.fault("stop_writing")
    wait_until(lambda: firing("DevFlowEventsNotPersisted", slack.titles)
               and firing("DevFlowEventsNotPersisted", smtp.subjects), timeout=FIRE_TIMEOUT,
               message="DevFlowEventsNotPersisted on Slack and by e-mail")
    simulator.fault("stop_writing", on=False)
    wait_until(lambda: resolved("DevFlowEventsNotPersisted", slack.titles)
               and resolved("DevFlowEventsNotPersisted", smtp.subjects), timeout=RESOLVE_TIMEOUT,
               message="DevFlowEventsNotPersisted resolved on Slack and by e-mail")

    # 3. The process exits. Critical; its probe fails (nothing listens) but is no alert while the process is gone.
    arguments = simulator.process.args
    try:
        simulator.fault("exit")
    except OSError:
        pass  # it may exit before it answers
    simulator.process.wait(timeout=10)
    wait_until(lambda: firing("DevFlowProcessDown", slack.titles) and firing("DevFlowProcessDown", smtp.subjects),
               timeout=FIRE_TIMEOUT, message="DevFlowProcessDown on Slack and by e-mail")
    probe_for = settings.seconds(E2E_OVERRIDES["alerts"]["DevFlowProbeFailing"]["for"])
    # The probe has failed on every evaluation of a span longer than DevFlowProbeFailing's `for`.
    wait_until(lambda: query(prometheus, f"max_over_time(max(devflow_probe_success)[{probe_for + 2}s:1s]) == 0"),
               timeout=FIRE_TIMEOUT, message="the probe to fail for longer than DevFlowProbeFailing's for")
    assert query(prometheus, 'ALERTS{alertname="DevFlowProbeFailing"}') == []
    assert am_alerts(stack["alertmanager"], "DevFlowProbeFailing") == []

    restarted = spawn(arguments)  # same port, database and pidfile: the target comes back
    wait_for_http(simulator.url + "/health")
    wait_until(lambda: resolved("DevFlowProcessDown", slack.titles) and resolved("DevFlowProcessDown",
                                                                                  smtp.subjects),
               timeout=RESOLVE_TIMEOUT, message="DevFlowProcessDown resolved on Slack and by e-mail")
    assert restarted.poll() is None
    assert not any("DevFlowProbeFailing" in title for title in slack.titles() + smtp.subjects())
