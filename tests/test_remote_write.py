"""Team mode: the `remote_write` block shipped (commented out) at the end of prometheus.yml.

Checked against a real engine: a second Prometheus with `--web.enable-remote-write-receiver` stands in for
Mimir / Thanos Receive / VictoriaMetrics, which all accept the same remote-write protocol.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse

import yaml

from conftest import ROOT, free_port, http_get, requires, wait_for_http, wait_until
from devflow_monitor.stack.render import compose_mounts, render_prometheus_config

STORES = ("Mimir", "Thanos Receive", "VictoriaMetrics")


def with_remote_write_uncommented() -> dict:
    """prometheus.yml as a team would turn it on: the commented block from `# remote_write:` on, uncommented."""
    text = (ROOT / "prometheus.yml").read_text()
    start = text.index("# remote_write:")
    block = [line.removeprefix("# ") for line in text[start:].splitlines()]
    return yaml.safe_load(text[:start] + "\n".join(block))


def keep_rule(config: dict) -> dict:
    return config["remote_write"][0]["write_relabel_configs"][0]


def names(prometheus: str) -> set[str]:
    return set(json.loads(http_get(prometheus + "/api/v1/label/__name__/values")[1])["data"])


def series(prometheus: str, selector: str) -> list[dict]:
    url = f"{prometheus}/api/v1/series?{urllib.parse.urlencode({'match[]': selector})}"
    return json.loads(http_get(url)[1])["data"]


@requires("promtool")
def test_the_block_is_commented_out_names_three_stores_and_is_valid_once_uncommented(tmp_path):
    text = (ROOT / "prometheus.yml").read_text()
    assert "remote_write" not in yaml.safe_load(text)
    assert all(store in text[text.index("# remote_write:"):] for store in STORES)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(with_remote_write_uncommented()))
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_filter_keeps_every_recording_rule_and_the_alerts():
    keep = keep_rule(with_remote_write_uncommented())
    recorded = [rule["record"] for path in (ROOT / "alerting" / "rules").glob("*.yml")
                for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"] if "record" in rule]
    assert keep["action"] == "keep" and keep["source_labels"] == ["__name__"] and recorded
    for name in recorded + ["devflow_process_up", "ALERTS", "ALERTS_FOR_STATE"]:
        assert re.fullmatch(keep["regex"], name), f"remote_write would drop {name}"


@requires("prometheus")
def test_a_receiving_prometheus_gets_the_devflow_series_and_only_those(tmp_path, simulator, start_exporter,
                                                                       spawn):
    receiver_port, sender_port = free_port(), free_port()
    receiver, sender = f"http://127.0.0.1:{receiver_port}", f"http://127.0.0.1:{sender_port}"
    (tmp_path / "receiver.yml").write_text("global: {scrape_interval: 1m}\n")  # scrapes nothing itself
    spawn(["prometheus", f"--config.file={tmp_path / 'receiver.yml'}", f"--storage.tsdb.path={tmp_path / 'r'}",
           f"--web.listen-address=127.0.0.1:{receiver_port}", "--web.enable-remote-write-receiver"],
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    exporter = start_exporter("--devflow.database", str(simulator.database), "--devflow.pidfile",
                              str(simulator.pidfile))
    config = with_remote_write_uncommented()
    remote = config["remote_write"][0]
    remote["url"] = receiver + "/api/v1/write"
    remote["basic_auth"]["password_file"] = str(tmp_path / "remote_write_password")
    (tmp_path / "remote_write_password").write_text("not checked by the receiver\n")
    remote["queue_config"]["batch_send_deadline"] = "1s"  # a test-sized wait; the shipped filter is untouched
    targets = {"exporter:9764": exporter.url.removeprefix("http://"), "localhost:9090": f"127.0.0.1:{sender_port}",
               "alertmanager:9093": "127.0.0.1:9"}
    rendered = render_prometheus_config(config, targets, compose_mounts(ROOT)["prometheus"], interval="1s")
    (tmp_path / "sender.yml").write_text(yaml.safe_dump(rendered))
    spawn(["prometheus", f"--config.file={tmp_path / 'sender.yml'}", f"--storage.tsdb.path={tmp_path / 's'}",
           f"--web.listen-address=127.0.0.1:{sender_port}"], stdout=sys.stderr, stderr=subprocess.STDOUT)
    wait_for_http(receiver + "/-/ready", timeout=30)
    wait_for_http(sender + "/-/ready", timeout=30)

    regex = keep_rule(config)["regex"]
    wait_until(lambda: {n for n in names(sender) if re.fullmatch(regex, n) and ":" in n}, 60, interval=0.5,
               message="the sender to evaluate a recording rule")
    scraped = names(sender)
    kept = {name for name in scraped if re.fullmatch(regex, name)}
    assert {"up", "prometheus_build_info", "scrape_duration_seconds"} <= scraped - kept, "nothing to filter out"
    wait_until(lambda: kept <= names(receiver), 60, interval=0.5,
               message=f"the kept series to arrive: missing {kept - names(receiver)}")
    arrived = names(receiver)
    assert all(re.fullmatch(regex, name) for name in arrived), arrived - kept
    assert not arrived & (scraped - kept)
    build_info = series(receiver, "devflow_exporter_build_info")
    assert [(s["job"], s["monitor"]) for s in build_info] == [("devflow", "devflow")], build_info
