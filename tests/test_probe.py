"""The probe collector against real local HTTP servers, one route per app behaviour."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, wait_for_http
from devflow_monitor.core import catalog, config
from devflow_monitor.exporter.collectors.probe import MONITOR_STATES, STATES, ProbeCollector

GUIDE_BODY = {"status": "healthy", "uptime": 3600, "version": "1.0.0",
              "monitors": {"file": "active", "git": "active", "test": "idle"},
              "database": "connected", "memory": {"used": 128, "total": 512}}
QUEUE = {"default": {"size": 3, "enqueued": 10, "dequeued": 7, "dropped": 0, "failed": 0}}


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0  # held until the delay passes or the test ends
    # plain, hangup (close without answering), trickle (body one byte at a time) or
    # trickle_headers (the status line and headers one byte at a time)
    kind: str = "plain"


def json_route(body, status=200, delay=0.0) -> Route:
    return Route(status, json.dumps(body).encode(), delay)


class FakeApp(ThreadingHTTPServer):
    """A stand-in for the DevFlow app's HTTP side; routes can be changed while it runs."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), AppHandler)
        self.routes: dict[str, Route] = {}
        self.release = threading.Event()  # ends every held request at teardown
        self.slow_request_started = threading.Event()
        self.delayed_at: list[float] = []  # time.monotonic() when each delayed request arrived
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class AppHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        route = self.server.routes.get(self.path)
        if route is None:
            route = Route(404, b"not found")
        if route.delay:
            self.server.delayed_at.append(time.monotonic())
            self.server.slow_request_started.set()
            self.server.release.wait(route.delay)
        try:
            if route.kind == "hangup":
                self.close_connection = True
                return
            if route.kind == "trickle_headers":
                for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" * 50:
                    if self.server.release.wait(0.05):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                return
            self.send_response(route.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(1000 if route.kind == "trickle" else len(route.body)))
            self.end_headers()
            if route.kind == "trickle":
                while not self.server.release.wait(0.05):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                return
            self.wfile.write(route.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the probe gave up first, as it should

    def log_message(self, *args):
        pass


@pytest.fixture
def app():
    server = FakeApp()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def make_probe(url: str, timeout: float = 1.0, interval: float = 0.0) -> ProbeCollector:
    settings = config.load(env={}, overrides={
        "devflow.url": url, "collectors.probe.timeout_seconds": timeout,
        "collectors.probe.interval_seconds": interval})
    return ProbeCollector(settings)


def scrape(collector) -> dict:
    """{(sample name, sorted labels): value} for one collect()."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in collector.collect() for sample in family.samples}


def value(samples: dict, name: str, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def current_state(samples: dict, endpoint: str) -> str:
    """The one state whose series is 1; fails if there is not exactly one."""
    values = {state: value(samples, catalog.PROBE_STATE.name, endpoint=endpoint, state=state)
              for state in STATES}
    assert set(values.values()) == {0.0, 1.0}, values
    (current,) = [state for state, v in values.items() if v == 1.0]
    return current


def serve_both(app: FakeApp, route: Route) -> None:
    app.routes["/health"] = route
    app.routes["/status"] = route


CASES = {
    "ok": (json_route(GUIDE_BODY), 200),
    "http_error": (Route(500, b"Internal Server Error"), 500),
    "invalid_json": (Route(200, b"<html>OK</html>"), 200),
    "unexpected_shape": (json_route([GUIDE_BODY]), 200),
    "error": (Route(kind="hangup"), 0),
}


@pytest.mark.parametrize("state", sorted(CASES))
def test_each_app_behaviour_is_its_own_state_on_both_endpoints(app, state):
    route, http_status = CASES[state]
    serve_both(app, route)
    samples = scrape(make_probe(app.url))
    for endpoint in ("health", "status"):
        assert current_state(samples, endpoint) == state
        success = value(samples, catalog.PROBE_SUCCESS.name, endpoint=endpoint)
        assert success == (1.0 if state == "ok" else 0.0)
        assert value(samples, catalog.PROBE_HTTP_STATUS.name, endpoint=endpoint) == http_status


def test_missing_listener_is_a_quiet_no_listener_state(caplog):
    collector = make_probe(f"http://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.DEBUG, logger="devflow_monitor.exporter.collectors.probe"):
        for _ in range(3):
            samples = scrape(collector)
    assert current_state(samples, "health") == current_state(samples, "status") == "no_listener"
    assert value(samples, catalog.PROBE_HTTP_STATUS.name, endpoint="status") == 0
    assert collector.last_status is None and collector.last_health is None
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    assert value(samples, catalog.APP_UPTIME.name) is None  # nothing reported, nothing invented


def test_failures_are_logged_once_per_change_not_per_scrape(app, caplog):
    serve_both(app, Route(500, b"boom"))
    collector = make_probe(app.url)
    with caplog.at_level(logging.DEBUG, logger="devflow_monitor.exporter.collectors.probe"):
        for _ in range(3):
            scrape(collector)
        serve_both(app, json_route(GUIDE_BODY))
        scrape(collector)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(warnings) == ["probe health: http_error: HTTP 500", "probe status: http_error: HTTP 500"]
    assert sorted(r.getMessage() for r in caplog.records if r.levelno == logging.INFO) == [
        "probe health: ok", "probe status: ok"]


def test_guide_body_becomes_app_metrics_in_base_units(app):
    serve_both(app, json_route({**GUIDE_BODY, "queue": QUEUE}))
    collector = make_probe(app.url)
    samples = scrape(collector)
    assert value(samples, catalog.APP_UPTIME.name) == 3600
    assert value(samples, catalog.APP_MEMORY_USED.name) == 128 * 1024 * 1024
    assert value(samples, catalog.APP_MEMORY_TOTAL.name) == 512 * 1024 * 1024
    assert value(samples, catalog.APP_BUILD_INFO.name, version="1.0.0") == 1
    assert value(samples, catalog.APP_HEALTHY.name) == 1
    assert value(samples, catalog.APP_DB_CONNECTED.name) == 1
    reported = {"file": "active", "git": "active", "test": "idle"}
    for monitor, reported_state in reported.items():
        for state in MONITOR_STATES:
            assert value(samples, catalog.APP_MONITOR_STATE.name, monitor=monitor, state=state) == (
                1.0 if state == reported_state else 0.0), (monitor, state)
    assert collector.last_status["queue"] == QUEUE  # what the event-queue collector reads
    assert collector.last_health == {**GUIDE_BODY, "queue": QUEUE}


def test_unhealthy_disconnected_app_reads_as_zeros(app):
    body = {**GUIDE_BODY, "status": "degraded", "database": "disconnected"}
    serve_both(app, json_route(body))
    samples = scrape(make_probe(app.url))
    assert current_state(samples, "status") == "ok"  # the probe worked; the app is what is unwell
    assert value(samples, catalog.APP_HEALTHY.name) == 0
    assert value(samples, catalog.APP_DB_CONNECTED.name) == 0


def test_http_error_with_json_body_still_exports_what_it_says(app):
    app.routes["/health"] = json_route({"status": "unhealthy", "database": "disconnected"}, status=503)
    samples = scrape(make_probe(app.url))
    assert current_state(samples, "health") == "http_error"
    assert value(samples, catalog.PROBE_HTTP_STATUS.name, endpoint="health") == 503
    assert current_state(samples, "status") == "http_error"  # 404: the route does not exist
    assert value(samples, catalog.APP_HEALTHY.name) == 0
    assert value(samples, catalog.APP_DB_CONNECTED.name) == 0


def test_unknown_monitors_fold_into_other_and_unknown_states(app):
    monitors = {"file": "ACTIVE", "git": "crashed", "lint": "idle", "deploy": "active"}
    serve_both(app, json_route({**GUIDE_BODY, "monitors": monitors}))
    samples = scrape(make_probe(app.url))
    ones = {key for key, v in samples.items() if key[0] == catalog.APP_MONITOR_STATE.name and v == 1.0}
    assert {dict(labels)["monitor"] + "=" + dict(labels)["state"] for _, labels in ones} == {
        "file=active", "git=unknown", "test=unknown", "other=idle", "other=active"}
    monitor_labels = {dict(labels)["monitor"] for name, labels in samples
                      if name == catalog.APP_MONITOR_STATE.name}
    assert monitor_labels == {"file", "git", "test", "other"}


def test_wrong_shape_keeps_the_fields_that_are_valid(app):
    body = {"status": "healthy", "uptime": 12.5, "version": "2.1.0", "monitors": ["file"],
            "database": "connected", "memory": {"used": "lots", "total": 256}}
    app.routes["/status"] = json_route(body)
    collector = make_probe(app.url)
    samples = scrape(collector)
    assert current_state(samples, "status") == "unexpected_shape"
    assert collector.last_status is None
    assert value(samples, catalog.APP_UPTIME.name) == 12.5
    assert value(samples, catalog.APP_MEMORY_TOTAL.name) == 256 * 1024 * 1024
    assert value(samples, catalog.APP_MEMORY_USED.name) is None
    assert not [key for key in samples if key[0] == catalog.APP_MONITOR_STATE.name]


def test_status_missing_guide_fields_is_unexpected_shape_but_health_needs_only_status(app):
    app.routes["/health"] = json_route({"status": "healthy"})
    app.routes["/status"] = json_route({"status": "healthy", "extra": {"anything": [1, 2]}})
    collector = make_probe(app.url)
    samples = scrape(collector)
    assert current_state(samples, "health") == "ok"
    assert current_state(samples, "status") == "unexpected_shape"
    assert collector.last_health == {"status": "healthy"}


def test_version_label_is_sanitised_and_bounded(app):
    serve_both(app, json_route({**GUIDE_BODY, "version": "1.0.0 \"beta\"\n{evil}" + "x" * 500}))
    samples = scrape(make_probe(app.url))
    (version,) = [dict(labels)["version"] for name, labels in samples if name == catalog.APP_BUILD_INFO.name]
    assert re.fullmatch(r"[0-9A-Za-z._+-]{1,64}", version), version
    assert version.startswith("1.0.0__beta")


# Each malformed body and the one state it must give ("error" would also be what a parser bug gives).
MALFORMED = {
    b"": "invalid_json", b"{": "invalid_json", b"[" * 100_000: "invalid_json", b"\xff\xfe\x00garbage": "invalid_json",
    b'{"uptime": ' + b"9" * 5000 + b"}": "invalid_json",  # beyond Python's limit on integer digits
    b"null": "unexpected_shape", b"42": "unexpected_shape", b'"healthy"': "unexpected_shape",
    b'{"uptime": 1e999, "status": "healthy"}': "unexpected_shape",
    b'{"uptime": ' + b"9" * 400 + b', "status": "healthy"}': "unexpected_shape",  # an int beyond any float
    b'{"uptime": NaN, "memory": {"used": -1, "total": true}}': "unexpected_shape",
    b'{"status": 5, "monitors": {"file": 3}}': "unexpected_shape",
    b'{"monitors": null, "memory": [], "database": {"ok": 1}, "version": ""}': "unexpected_shape",
    b"{}" + b" " * (2 << 20): "error",  # larger than the probe reads
}


def test_malformed_bodies_never_raise_and_never_read_as_ok(app):
    collector = make_probe(app.url, timeout=5.0)
    for body, expected in MALFORMED.items():
        serve_both(app, Route(200, body))
        samples = scrape(collector)
        for endpoint in ("health", "status"):
            assert current_state(samples, endpoint) == expected, body[:40]
        assert collector.last_status is None
        assert value(samples, catalog.APP_UPTIME.name) is None


def test_slow_app_times_out_and_the_scrape_returns_after_about_one_timeout(app):
    serve_both(app, json_route(GUIDE_BODY, delay=30))
    collector = make_probe(app.url, timeout=1.0)
    started = time.monotonic()
    samples = scrape(collector)
    elapsed = time.monotonic() - started
    assert current_state(samples, "health") == current_state(samples, "status") == "timeout"
    # Both endpoints are probed in parallel: the second request arrives before the first one's timeout,
    # where probing one after the other sends it only once the first has timed out.
    first, second = app.delayed_at
    assert second - first < 1.0, app.delayed_at
    # One timeout, and nowhere near the 30 s hang.
    assert 1.0 <= elapsed < 10, elapsed


@pytest.mark.parametrize("kind", ["trickle", "trickle_headers"], ids=["body", "headers"])
def test_a_trickling_answer_is_cut_off_at_the_total_timeout(app, kind):
    # Each byte arrives well within a per-read timeout; only a total deadline stops this.
    serve_both(app, Route(kind=kind))
    collector = make_probe(app.url, timeout=0.5)
    started = time.monotonic()
    samples = scrape(collector)
    # A per-read timeout alone would let the 1000-byte body (50 s) or the headers (2 min) trickle on.
    assert time.monotonic() - started < 10
    assert current_state(samples, "health") == current_state(samples, "status") == "timeout"


def test_background_mode_serves_the_last_result_without_waiting_for_a_hung_probe(app):
    serve_both(app, json_route(GUIDE_BODY))
    collector = make_probe(app.url, timeout=3.0, interval=0.05)
    collector.start()
    try:
        deadline = time.monotonic() + 5
        while collector.last_status is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert collector.last_status == GUIDE_BODY
        serve_both(app, json_route(GUIDE_BODY, delay=30))
        assert app.slow_request_started.wait(5)
        samples = scrape(collector)
        # The probe is stuck in the hung request for up to 3 s; the scrape returned without waiting for it,
        # with the last result (a scrape that waited would show the timeout).
        assert [t for t in threading.enumerate() if t.name == "probe-health"], "the hung probe is still running"
        assert current_state(samples, "status") == "ok"
        deadline = time.monotonic() + 8
        while current_state(scrape(collector), "status") != "timeout" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert current_state(scrape(collector), "status") == "timeout"
        assert collector.last_status is None
    finally:
        app.release.set()
        collector.stop()
    assert not [t for t in threading.enumerate() if t.name == "probe"], "stop() ends the probe thread"


def test_duration_histogram_counts_every_probe_in_cumulative_buckets(app):
    serve_both(app, json_route(GUIDE_BODY, delay=0.06))
    collector = make_probe(app.url)
    for _ in range(3):
        samples = scrape(collector)
    bucket = catalog.PROBE_DURATION.bucket
    for endpoint in ("health", "status"):
        assert value(samples, catalog.PROBE_DURATION.count, endpoint=endpoint) == 3
        assert value(samples, bucket, endpoint=endpoint, le="+Inf") == 3
        assert value(samples, bucket, endpoint=endpoint, le="0.05") == 0  # every answer took >= 60 ms
        assert value(samples, bucket, endpoint=endpoint, le="5.0") == 3
        assert value(samples, catalog.PROBE_DURATION.sum, endpoint=endpoint) >= 0.18


def test_probe_metrics_are_valid_exposition_text_named_from_the_catalog(app):
    serve_both(app, json_route(GUIDE_BODY))
    registry = CollectorRegistry()
    registry.register(make_probe(app.url))
    families = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    probe_metrics = [m for m in catalog.all_metrics()
                     if m.name.startswith(("devflow_probe_", "devflow_app_"))]
    # The parser drops a counter's _total from the family name; these are all gauges and histograms.
    assert families == {m.name for m in probe_metrics}


def test_base_url_with_a_path_prefix_probes_below_it(app):
    app.routes["/devflow/health"] = json_route({"status": "healthy"})
    app.routes["/devflow/status"] = json_route(GUIDE_BODY)
    samples = scrape(make_probe(app.url + "/devflow/"))
    assert current_state(samples, "health") == current_state(samples, "status") == "ok"


def test_probe_reads_every_state_of_the_simulator(spawn, tmp_path, port):
    spawn([sys.executable, "-m", "devflow_monitor.cli", "simulate", "--database", str(tmp_path / "devflow.db"),
           "--listen", f"127.0.0.1:{port}", "--rate", "5"], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/health")
    collector = make_probe(url, timeout=0.5)
    samples = scrape(collector)
    assert current_state(samples, "health") == current_state(samples, "status") == "ok"
    assert value(samples, catalog.APP_BUILD_INFO.name, version="1.0.0") == 1
    assert value(samples, catalog.APP_MEMORY_USED.name) > 1024 * 1024  # a live process, reported in MB
    assert value(samples, catalog.APP_MONITOR_STATE.name, monitor="test", state="idle") == 1
    assert set(collector.last_status["queue"]) == {"default", "priority", "batch", "failed"}

    def switch(fault: str, on: bool) -> None:
        request = urllib.request.Request(f"{url}/faults/{fault}", method="POST" if on else "DELETE")
        urllib.request.urlopen(request, timeout=5).close()

    switch("failing_health", True)
    samples = scrape(collector)
    assert current_state(samples, "status") == "http_error"
    assert value(samples, catalog.PROBE_HTTP_STATUS.name, endpoint="status") == 500
    assert value(samples, catalog.APP_HEALTHY.name) == 0
    assert value(samples, catalog.APP_MONITOR_STATE.name, monitor="file", state="error") == 1
    assert collector.last_status is None
    switch("failing_health", False)
    switch("slow_health", True)  # answers after 1.5 s, beyond the 0.5 s timeout
    assert current_state(scrape(collector), "health") == "timeout"
    switch("slow_health", False)
    assert current_state(scrape(collector), "status") == "ok"
