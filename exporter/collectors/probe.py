"""Probe: the guide's `curl localhost:3000/health` and `/status` checks as metrics.

GETs both endpoints of `devflow.url` with a total deadline of
`collectors.probe.timeout_seconds`, either inside each scrape
(`interval_seconds: 0`) or from a background thread whose last result the
scrape reads. Every outcome is a state, never an exception: the public build
listens on no port at all, so `no_listener` is a normal state logged at debug.

Sample output (the guide's body on both endpoints):

    devflow_probe_success{endpoint="status"} 1.0
    devflow_probe_state{endpoint="status",state="ok"} 1.0
    devflow_probe_state{endpoint="status",state="timeout"} 0.0
    devflow_probe_http_status_code{endpoint="status"} 200.0
    devflow_probe_duration_seconds_bucket{endpoint="status",le="0.005"} 3.0
    devflow_app_build_info{version="1.0.0"} 1.0
    devflow_app_uptime_seconds 3600.0
    devflow_app_monitor_state{monitor="test",state="idle"} 1.0
    devflow_app_memory_used_bytes 1.34217728e+08
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from devflow_monitor.core import __version__, catalog
from devflow_monitor.core.histogram import Histogram
from devflow_monitor.exporter.collectors.base import Collector, Worker

log = logging.getLogger(__name__)

ENDPOINTS = ("health", "status")
STATES = ("ok", "no_listener", "timeout", "http_error", "invalid_json", "unexpected_shape", "error")
MONITORS = ("file", "git", "test")  # anything else folds into "other"
MONITOR_STATES = ("active", "idle", "stopped", "error", "unknown")
HEALTHY_WORDS = ("healthy", "ok")
# Around the guide's "response time < 100ms" target.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MAX_BODY_BYTES = 1 << 20  # the guide's body is ~200 bytes; anything near this is not it
MAX_VERSION_LENGTH = 64
MEGABYTE = 1 << 20  # the app reports memory in MB (Node's bytes / 1024 / 1024)
# The guide's /status body; /health only has to say its status.
REQUIRED_FIELDS = {
    "health": ("status",),
    "status": ("status", "uptime", "version", "monitors", "database", "memory"),
}


class BodyTooLarge(Exception):
    """The response body exceeded MAX_BODY_BYTES."""


@dataclass(frozen=True)
class ProbeResult:
    endpoint: str
    state: str
    http_status: int  # 0 when no response arrived
    duration: float
    body: dict | None = None  # the JSON object, only when state is ok
    fields: dict = field(default_factory=dict)  # the guide's fields that parsed, even from a wrong shape
    reason: str = ""  # one line for the log


class ProbeCollector(Collector):
    name = "probe"

    def __init__(self, config):
        super().__init__()
        self.base_url = config.devflow.url
        settings = config.collectors.probe
        self.timeout = settings.timeout_seconds
        self.interval = settings.interval_seconds
        # Contract: the parsed JSON of the last successful probe, None after a failed one.
        self.last_health: dict | None = None
        self.last_status: dict | None = None
        self._results: dict[str, ProbeResult] = {}
        self._durations = {endpoint: Histogram(DURATION_BUCKETS) for endpoint in ENDPOINTS}
        self._lock = threading.Lock()
        # () -> fields the app may say elsewhere (the logs: version, monitors), published where it did not answer.
        self.fallback = None
        if self.interval > 0:  # 0: a scrape probes itself
            self.workers.append(Worker("probe", self._probe_on_schedule, join_seconds=self.timeout + 1.0))

    def _probe_on_schedule(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            self.probe_all()
            stopping.wait(self.interval)

    def url_for(self, endpoint: str) -> str:
        return self.base_url.rstrip("/") + "/" + endpoint

    def probe_all(self) -> None:
        """Probe both endpoints in parallel, so a hung app costs one timeout, not two."""
        results: dict[str, ProbeResult] = {}

        def run(endpoint: str) -> None:
            results[endpoint] = probe(endpoint, self.url_for(endpoint), self.timeout)

        helpers = [threading.Thread(target=run, args=(endpoint,), name=f"probe-{endpoint}", daemon=True)
                   for endpoint in ENDPOINTS[:-1]]
        for helper in helpers:
            helper.start()
        run(ENDPOINTS[-1])
        for helper in helpers:
            helper.join(self.timeout + 1.0)
        for endpoint in ENDPOINTS:
            # A probe still running past its deadline is a timeout, not a reason to keep the last state.
            self._record(results.get(endpoint) or ProbeResult(
                endpoint, "timeout", 0, self.timeout, reason="the probe did not finish in time"))

    def _record(self, result: ProbeResult) -> None:
        with self._lock:
            previous = self._results.get(result.endpoint)
            self._results[result.endpoint] = result
            self._durations[result.endpoint].observe(result.duration)
            setattr(self, "last_" + result.endpoint, result.body)
        if previous is None or previous.state != result.state:
            _log_transition(result, previous)

    def collect(self):
        if self.interval <= 0:
            self.probe_all()
        with self._lock:
            results = dict(self._results)
            durations = {endpoint: (h.cumulative(), h.sum) for endpoint, h in self._durations.items()
                         if h.count}
        yield from _probe_families(results, durations)
        # /health is the endpoint meant for health, so it wins where both report a field.
        fields = {}
        for endpoint in ("status", "health"):
            if endpoint in results:
                fields.update(results[endpoint].fields)
        if self.fallback is not None:
            for key, value in self.fallback().items():
                fields.setdefault(key, value)
        yield from _app_families(fields)


def _log_transition(result: ProbeResult, previous: ProbeResult | None) -> None:
    # The public build never listens: that is its normal state, not news.
    if result.state == "no_listener":
        log.debug("probe %s: %s", result.endpoint, result.reason)
    elif result.state == "ok":
        level = logging.INFO if previous is not None else logging.DEBUG
        log.log(level, "probe %s: ok", result.endpoint)
    else:
        log.warning("probe %s: %s: %s", result.endpoint, result.state, result.reason)


def probe(endpoint: str, url: str, timeout: float) -> ProbeResult:
    """GET one endpoint and classify the outcome; never raises."""
    started = time.perf_counter()
    try:
        return _probe(endpoint, url, timeout, started)
    except Exception as exc:  # a parsing bug must cost one state, not the scrape
        log.debug("probe %s failed unexpectedly", endpoint, exc_info=True)
        return ProbeResult(endpoint, "error", 0, time.perf_counter() - started, reason=type(exc).__name__)


def _probe(endpoint: str, url: str, timeout: float, started: float) -> ProbeResult:

    def result(state, status=0, reason="", **kwargs):
        return ProbeResult(endpoint, state, status, time.perf_counter() - started, reason=reason, **kwargs)

    try:
        status, data = fetch(url, timeout)
    except ConnectionRefusedError:
        return result("no_listener", reason=f"nothing listens at {url}")
    except TimeoutError:
        return result("timeout", reason=f"no complete answer from {url} within {timeout:g}s")
    except BodyTooLarge:
        return result("error", reason=f"body larger than {MAX_BODY_BYTES} bytes")
    except Exception as exc:  # resets, TLS failures, bad URLs: all just "error"
        return result("error", reason=f"{type(exc).__name__}: {exc}")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:  # also UnicodeDecodeError; RecursionError: absurd nesting
        if status != 200:
            return result("http_error", status, f"HTTP {status}")
        return result("invalid_json", status, f"body is not JSON: {type(exc).__name__}")
    fields, problems = parse_fields(endpoint, body)
    if status != 200:
        # A 503 with {"status": "unhealthy"} still says something worth exporting.
        return result("http_error", status, f"HTTP {status}", fields=fields)
    if problems:
        return result("unexpected_shape", status, "; ".join(problems)[:200], fields=fields)
    return result("ok", status, body=body, fields=fields)


def fetch(url: str, timeout: float) -> tuple[int, bytes]:
    """Status and body of GET url, all of it within `timeout` seconds (not per socket read)."""
    deadline = time.monotonic() + timeout
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    cutoff = None
    try:
        connection.connect()
        sock = connection.sock  # kept: http.client drops it from the connection on Connection: close
        # A server trickling its headers restarts every per-read timeout: cut the socket at the deadline.
        cutoff = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, (sock,))
        cutoff.daemon = True
        cutoff.start()
        connection.request("GET", parts.path or "/", headers={
            "Accept": "application/json", "User-Agent": f"devflow-monitor/{__version__}"})
        _shrink_timeout(sock, deadline)
        response = connection.getresponse()
        chunks, size = [], 0
        while True:
            _shrink_timeout(sock, deadline)
            chunk = response.read1(65536)
            if not chunk:
                if time.monotonic() >= deadline:
                    raise TimeoutError("probe deadline passed")  # the cutoff ended the body, not the server
                break
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise BodyTooLarge()
            chunks.append(chunk)
        return response.status, b"".join(chunks)
    except Exception:
        if time.monotonic() >= deadline:
            raise TimeoutError("probe deadline passed") from None
        raise
    finally:
        if cutoff is not None:
            cutoff.cancel()
        connection.close()


def _cut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _shrink_timeout(sock, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("probe deadline passed")
    sock.settimeout(remaining)


def parse_fields(endpoint: str, body) -> tuple[dict, list[str]]:
    """The guide's fields that are present and valid, and one problem per field that is not.

    Extra fields (such as `queue`) are tolerated and left to their readers.
    """
    if not isinstance(body, dict):
        return {}, [f"body is a JSON {type(body).__name__}, not an object"]
    fields, problems = {}, []
    for key in REQUIRED_FIELDS[endpoint]:
        if key not in body:
            problems.append(f"missing '{key}'")
    for key, parser in FIELD_PARSERS.items():
        if key in body:
            value = parser(body[key], problems)
            if value is not None:
                fields[key] = value
    return fields, problems


def _parse_status(value, problems):
    if not isinstance(value, str):
        problems.append(f"'status' is {_kind(value)}, not text")
        return None
    return value.strip().lower() in HEALTHY_WORDS


def _parse_uptime(value, problems):
    return _non_negative_number("uptime", value, problems)


def _parse_version(value, problems):
    if not isinstance(value, str) or not value.strip():
        problems.append(f"'version' is {_kind(value)}, not a version string")
        return None
    # Bounded label: an app bug must not mint endless series or a megabyte label.
    return re.sub(r"[^0-9A-Za-z._+-]", "_", value.strip())[:MAX_VERSION_LENGTH]


def _parse_monitors(value, problems):
    """{monitor: set of states}; file/git/test always present, others folded into "other"."""
    if not isinstance(value, dict):
        problems.append(f"'monitors' is {_kind(value)}, not an object")
        return None
    states = {monitor: set() for monitor in MONITORS}
    for name, state in value.items():
        monitor = name if name in MONITORS else "other"
        if not isinstance(state, str):
            problems.append(f"monitor '{str(name)[:40]}' state is {_kind(state)}, not text")
            state = "unknown"
        state = state.strip().lower()
        states.setdefault(monitor, set()).add(state if state in MONITOR_STATES else "unknown")
    for monitor in MONITORS:
        if not states[monitor]:
            states[monitor].add("unknown")  # promised by the guide but not reported
    return states


def _parse_database(value, problems):
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() == "connected"
    problems.append(f"'database' is {_kind(value)}, not text")
    return None


def _parse_memory(value, problems):
    """{"used": bytes, "total": bytes} from the app's MB figures; either may be missing."""
    if not isinstance(value, dict):
        problems.append(f"'memory' is {_kind(value)}, not an object")
        return None
    memory = {}
    for key in ("used", "total"):
        if key not in value:
            problems.append(f"missing 'memory.{key}'")
            continue
        megabytes = _non_negative_number(f"memory.{key}", value[key], problems)
        if megabytes is not None:
            memory[key] = megabytes * MEGABYTE
    return memory or None


def _non_negative_number(name, value, problems):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.append(f"'{name}' is {_kind(value)}, not a number")
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number) or number < 0:
        problems.append(f"'{name}' is {number}, not a finite non-negative number")
        return None
    return number


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


FIELD_PARSERS = {
    "status": _parse_status,
    "uptime": _parse_uptime,
    "version": _parse_version,
    "monitors": _parse_monitors,
    "database": _parse_database,
    "memory": _parse_memory,
}


def _probe_families(results: dict[str, ProbeResult], durations: dict):
    success = catalog.PROBE_SUCCESS.family()
    state = catalog.PROBE_STATE.family()
    http_status = catalog.PROBE_HTTP_STATUS.family()
    duration = catalog.PROBE_DURATION.family()
    for endpoint, result in results.items():
        success.add_metric([endpoint], 1.0 if result.state == "ok" else 0.0)
        for name in STATES:
            state.add_metric([endpoint, name], 1.0 if result.state == name else 0.0)
        http_status.add_metric([endpoint], float(result.http_status))
    for endpoint, (buckets, total) in durations.items():
        duration.add_metric([endpoint], buckets, total)
    return success, state, http_status, duration


def version_family(fields: dict):
    """devflow_app_build_info from a `version` field (the app's /status, or its logs); none without one."""
    if "version" in fields:
        info = catalog.APP_BUILD_INFO.family()
        info.add_metric([fields["version"]], 1.0)
        yield info


def monitors_family(fields: dict):
    """devflow_app_monitor_state from a `monitors` field ({monitor: states}); none without one."""
    if "monitors" in fields:
        monitors = catalog.APP_MONITOR_STATE.family()
        for monitor, states in fields["monitors"].items():
            for name in MONITOR_STATES:
                monitors.add_metric([monitor, name], 1.0 if name in states else 0.0)
        yield monitors


def _app_families(fields: dict):
    """Only what the app reported: a failed probe leaves these absent, never stale."""
    yield from version_family(fields)
    for key, metric in (("uptime", catalog.APP_UPTIME), ("status", catalog.APP_HEALTHY),
                        ("database", catalog.APP_DB_CONNECTED)):
        if key in fields:
            family = metric.family()
            family.add_metric([], float(fields[key]))
            yield family
    yield from monitors_family(fields)
    memory = fields.get("memory", {})
    for key, metric in (("used", catalog.APP_MEMORY_USED), ("total", catalog.APP_MEMORY_TOTAL)):
        if key in memory:
            family = metric.family()
            family.add_metric([], memory[key])
            yield family
