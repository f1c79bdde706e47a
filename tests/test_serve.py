"""The exporter's HTTP side: routes, load, failing collectors, TLS and basic auth."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import psutil
import yaml
from conftest import (FAST_SETTINGS, NO_SERVER, cli, free_port, http_get, parse_metrics, voluntary_switches,
                      wait_until)
from prometheus_client import CollectorRegistry, generate_latest

from devflow_monitor.core import __version__, catalog
from devflow_monitor.exporter.collectors import CollectorSet
from devflow_monitor.exporter.collectors.base import Collector
from devflow_monitor.core.devflow_db import create_database, insert_event


def test_routes_answer_with_their_shapes(tmp_path, start_exporter, spawn):
    # A DevFlow server elsewhere on this machine (here a stand-in with its command line) is not this test's.
    elsewhere = spawn([sys.executable, "-c", "import time; time.sleep(60)", "node", "/opt/devflow/server/index.js"])
    exporter = start_exporter("--devflow.database", str(tmp_path / "devflow.db"), *NO_SERVER)
    status, page = http_get(exporter.url + "/")
    assert status == 200 and "/metrics" in page and "/status" in page
    status, body = http_get(exporter.url + "/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and set(health["collectors"]) >= {"process", "database"}
    status, body = http_get(exporter.url + "/status")
    guide = json.loads(body)
    assert status == 200
    assert set(guide) >= {"status", "uptime", "version", "monitors", "database", "memory"}
    assert guide["database"] == "missing" and guide["status"] == "down"
    elsewhere.kill()
    assert guide["monitors"] == {"file": "unknown", "git": "unknown", "test": "unknown"}
    assert http_get(exporter.url + "/nope")[0] == 404
    samples = exporter.scrape()
    assert samples[(catalog.EXPORTER_BUILD_INFO.name, (("python_version", sys.version.split()[0]),
                                                       ("version", __version__)))] == 1


def test_custom_telemetry_path(tmp_path, start_exporter):
    exporter = start_exporter("--devflow.database", str(tmp_path / "x.db"), "--web.telemetry-path", "/m")
    status, body = http_get(exporter.url + "/m")
    assert status == 200 and catalog.PROCESS_UP.name in body
    assert http_get(exporter.url + "/metrics")[0] == 404


def test_guide_load_test_leaves_no_errors_threads_or_memory_behind(tmp_path, start_exporter):
    """The guide's `ab -n 1000 -c 10`, pointed at the exporter."""
    db = tmp_path / "devflow.db"
    conn = create_database(db)
    for seq in range(200):
        insert_event(conn, "file:changed", seq=seq)
    conn.close()
    exporter = start_exporter("--devflow.database", str(db))
    proc = psutil.Process(exporter.proc.pid)
    for _ in range(20):
        exporter.scrape()
    threads_before, rss_before = proc.num_threads(), proc.memory_info().rss

    def scrape(_):
        with urllib.request.urlopen(exporter.url + "/metrics", timeout=10) as response:
            return response.status, len(response.read())

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(scrape, range(1000)))
    assert all(status == 200 and size > 1000 for status, size in results)
    # Serial scrapes already leave kept_threads waiting for the next connection; a burst leaves no more.
    wait_until(lambda: proc.num_threads() <= threads_before,
               message="request threads beyond the kept ones gone")
    growth = proc.memory_info().rss - rss_before
    assert growth < 8 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB"


class OneSample(Collector):
    """Yields one sample of `metric`, then raises if `bug`."""

    def __init__(self, name: str, metric, value: float, bug: bool = False):
        super().__init__()
        self.name, self.metric, self.value, self.bug = name, metric, value, bug

    def collect(self):
        family = self.metric.family()
        family.add_metric([], self.value)
        yield family
        if self.bug:
            raise RuntimeError("collector bug")


def healthy() -> OneSample:
    return OneSample("healthy", catalog.HOST_MEMORY_TOTAL, 1)


def test_a_failing_collector_costs_its_own_series_not_the_scrape():
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CollectorSet([OneSample("broken", catalog.HOST_CPUS, 2, bug=True), healthy()]))
    samples = parse_metrics(generate_latest(registry).decode())
    assert samples[(catalog.COLLECTOR_SUCCESS.name, (("collector", "broken"),))] == 0
    assert samples[(catalog.COLLECTOR_SUCCESS.name, (("collector", "healthy"),))] == 1
    assert samples[(catalog.HOST_CPUS.name, ())] == 2, "what was read before the failure is kept"
    assert samples[(catalog.HOST_MEMORY_TOTAL.name, ())] == 1


def test_tls_and_basic_auth_from_exporter_toolkit_web_config(tmp_path, start_exporter):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
                   f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    exporter_port = free_port()
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump(FAST_SETTINGS))
    proc = subprocess.Popen([sys.executable, "-m", "devflow_monitor.cli", "serve", "--config.file", str(config),
                             "--web.listen-address", f"127.0.0.1:{exporter_port}", "--web.config.file", str(web),
                             "--devflow.database", str(tmp_path / "x.db")])
    try:
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        url = f"https://localhost:{exporter_port}/metrics"

        def get(password: str | None):
            request = urllib.request.Request(url)
            if password:
                token = base64.b64encode(f"prometheus:{password}".encode()).decode()
                request.add_header("Authorization", f"Basic {token}")
            try:
                with urllib.request.urlopen(request, context=context, timeout=5) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert wait_until(lambda: _answers(get, "s3cret"), message="TLS exporter up") == 200
        assert get(None) == 401
        assert get("wrong") == 401
        assert get("s3cret") == 200
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(get, password):
    try:
        return get(password)
    except OSError:
        return None


BAD_WEB_CONFIGS = {
    "basic_auth_users:\n  admin: plaintext\n": "not a bcrypt hash",
    "tls_server_config: [cert_file]\n": "must be a mapping",
    "tls_server_config:\n  cert_file: 1\n  key_file: k.pem\n": "needs cert_file",
    "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_auth_type: RequireAndVerifyClientCertt\n":
        "client_auth_type must be one of",
    "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n":
        "unsupported tls_server_config key 'cipher_suites'",
    "tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.pem\n": "cannot load TLS certificate",
}


def test_bad_web_config_and_busy_port_are_one_line_errors(tmp_path):
    web = tmp_path / "web.yml"
    for text, expected in BAD_WEB_CONFIGS.items():
        web.write_text(text)
        result = cli("check-config", "--web.config.file", str(web))
        assert result.returncode == 2 and expected in result.stderr and result.stderr.count("\n") == 1, \
            (text, result.stderr)

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("serve", "--web.listen-address", f"127.0.0.1:{port}", "--devflow.database",
                     str(tmp_path / "x.db"), "--no-collector.logs", "--no-collector.probe", timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_sigterm_stops_the_exporter_promptly(tmp_path, start_exporter):
    exporter = start_exporter("--devflow.database", str(tmp_path / "x.db"))
    started = time.monotonic()
    exporter.proc.terminate()
    assert exporter.proc.wait(10) == 0
    assert time.monotonic() - started < 5


def test_idle_exporter_main_thread_sleeps_until_a_signal(tmp_path, start_exporter):
    exporter = start_exporter("--devflow.database", str(tmp_path / "x.db"))
    pid = exporter.proc.pid
    exporter.scrape()  # request threads serve it; the main thread stays asleep
    before = voluntary_switches(pid, pid)
    time.sleep(3)  # the stdlib's serve_forever() in the main thread woke 6 times to poll for shutdown()
    exporter.scrape()
    assert voluntary_switches(pid, pid) - before <= 1


class Awkward(Collector):
    """Label values and help texts that need escaping, and special float values."""

    name = "awkward"

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        gauge = GaugeMetricFamily("devflow_test_gauge", 'Help with "quotes", a \\ and\na newline.', labels=["v"])
        for value, number in (('quote " here', 1.5), ("back\\slash", float("inf")), ("new\nline", float("-inf")),
                              ("☃ unicode", 1795693182.961), ("", 0.0)):
            gauge.add_metric([value], number)
        yield gauge
        counter = CounterMetricFamily("devflow_test", "A counter.", labels=["a"], created=1.5)
        counter.add_metric(["x"], 3, created=1795693182.5)
        yield counter
        histogram = HistogramMetricFamily("devflow_test_seconds", "A histogram.")
        histogram.add_metric([], [("0.1", 1), ("+Inf", 3)], 0.7)
        yield histogram


def test_fast_text_exposition_says_what_prometheus_client_says(tmp_path):
    from devflow_monitor.exporter.exposition import render_text

    registry = CollectorRegistry(auto_describe=False)
    registry.register(CollectorSet([Awkward(), healthy()]))
    ours, theirs = render_text(registry).decode(), generate_latest(registry).decode()

    def comments(text):
        return [line for line in text.splitlines() if line.startswith("#")]

    def samples(text):
        # Durations differ between two collections; everything else must match exactly.
        return {key: value for key, value in parse_metrics(text).items() if key[0] != catalog.COLLECTOR_DURATION.name}

    assert samples(ours) == samples(theirs)
    assert comments(ours) == comments(theirs)
    assert ('devflow_test_gauge{v="new\\nline"} -Inf' in ours) and ('v="quote \\" here"' in ours)
