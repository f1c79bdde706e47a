"""What the page reads, fetched server-side: Prometheus' query API, the firing alerts, and the guide's
`/dashboard/api/metrics` JSON built from Prometheus.

Every answer is (HTTP status, JSON body). When Prometheus does not answer, the body is Prometheus'
own error shape (`{"status": "error", "errorType": "unavailable", "error": ...}`) with status 502, so
the page handles one kind of failure whatever its cause.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

import yaml

from devflow_monitor.core import catalog as c
from devflow_monitor.core.httpclient import NoAnswer, http_get
from devflow_monitor.core.loader import ConfigError, seconds
from devflow_monitor.core.settings import Settings

TIMEOUT_SECONDS = 10


def unavailable(what: str, url: str, reason: str) -> tuple[int, dict]:
    return 502, {"status": "error", "errorType": "unavailable", "error": f"{what} at {url} is unreachable: {reason}"}


class QueryFailed(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(body.get("error"))
        self.status, self.body = status, body


class Prometheus:
    def __init__(self, url: str, settings: Settings):
        self.url = url.rstrip("/")
        self.settings = settings

    def get(self, path: str, query: str = "") -> tuple[int, dict]:
        """GET /api/v1/PATH?QUERY as Prometheus answers it (its error bodies included)."""
        try:
            status, body = http_get(f"{self.url}{path}{'?' + query if query else ''}", TIMEOUT_SECONDS)
        except NoAnswer as exc:
            return unavailable("Prometheus", self.url, str(exc))
        try:
            return status, json.loads(body)
        except ValueError:
            return 502, {"status": "error", "errorType": "bad_response",
                         "error": f"{self.url} answered HTTP {status} without JSON: is it Prometheus?"}

    def instant(self, expr: str) -> list[dict]:
        """The result of an instant query; raises QueryFailed with Prometheus' answer when it is not one."""
        status, body = self.get("/api/v1/query", urlencode({"query": expr}, quote_via=quote))
        if body.get("status") != "success":
            raise QueryFailed(status, body)
        return body["data"]["result"]

    def scrape_interval(self) -> float:
        """Seconds between scrapes in Prometheus' loaded config: Grafana's minimum step and the base of
        $__rate_interval. The settings' scrape_interval while Prometheus cannot tell."""
        status, body = self.get("/api/v1/status/config")
        try:
            config = yaml.safe_load(body["data"]["yaml"]) or {}
            return seconds(config["global"]["scrape_interval"]) or seconds(self.settings.scrape_interval)
        except (KeyError, TypeError, ConfigError, yaml.YAMLError):
            return seconds(self.settings.scrape_interval)


def firing_alerts(prometheus: Prometheus, alertmanager_url: str | None) -> tuple[int, dict]:
    """The alerts firing now, from Alertmanager when one is given and answers, else from Prometheus."""
    errors = []
    if alertmanager_url:
        base = alertmanager_url.rstrip("/")
        try:
            status, body = http_get(f"{base}/api/v2/alerts?active=true&silenced=false&inhibited=false",
                                    TIMEOUT_SECONDS)
            if status == 200:
                alerts = [_alert(a["labels"], a.get("annotations", {}), a.get("startsAt")) for a in json.loads(body)]
                return 200, {"source": "alertmanager", "alerts": alerts, "errors": errors}
            errors.append(f"Alertmanager at {base} answered HTTP {status}")
        except (NoAnswer, ValueError, KeyError, TypeError) as exc:
            errors.append(f"Alertmanager at {base} is unreachable: {exc}")
    status, body = prometheus.get("/api/v1/alerts")
    if body.get("status") != "success":
        return status, {**body, "errors": errors}
    alerts = [_alert(a["labels"], a.get("annotations", {}), a.get("activeAt"))
              for a in body["data"]["alerts"] if a.get("state") == "firing"]
    return 200, {"source": "prometheus", "alerts": alerts, "errors": errors}


def _alert(labels: dict, annotations: dict, since: str | None) -> dict:
    return {"name": labels.get("alertname"), "severity": labels.get("severity"), "instance": labels.get("instance"),
            "job": labels.get("job"), "summary": annotations.get("summary") or annotations.get("description"),
            "since": since, "labels": labels}


def guide_queries(settings: Settings) -> tuple[dict, dict]:
    """The guide's section 3.1 names (system, application), each answered by one PromQL expression over
    the exporter's metrics, with the settings' rate window and error levels. `$sel` becomes the
    job/instance selector; an empty answer is null, never an invented zero."""
    window = settings.rate_window
    system = {
        "cpu": {
            "user_seconds": f'{c.PROCESS_CPU.name}{{$sel, mode="user"}}',
            "system_seconds": f'{c.PROCESS_CPU.name}{{$sel, mode="system"}}',
            "percent": f"100 * sum(rate({c.PROCESS_CPU.name}{{$sel}}[{window}]))",
        },
        "memory": {
            "rss_bytes": f"{c.PROCESS_RSS.name}{{$sel}}",
            "virtual_bytes": f"{c.PROCESS_VMS.name}{{$sel}}",
            "machine_total_bytes": f"{c.HOST_MEMORY_TOTAL.name}{{$sel}}",
        },
        "uptime": f"time() - {c.PROCESS_START_TIME.name}{{$sel}}",
    }
    application = {
        "up": f"{c.PROCESS_UP.name}{{$sel}}",
        "healthy": f"{c.APP_HEALTHY.name}{{$sel}}",
        "requests": f"sum({c.HTTP_REQUESTS.name}{{$sel}})",
        "errors": f"sum({c.LOG_LINES.name}{{$sel, {settings.app.error_selector}}})",
        "responseTime": (f"sum(rate({c.HTTP_DURATION.sum}{{$sel}}[{window}])) / "
                         f"sum(rate({c.HTTP_DURATION.count}{{$sel}}[{window}]))"),
        "activeMonitors": f'count({c.APP_MONITOR_STATE.name}{{$sel, state="active"}} == 1)',
        "eventQueue": f'sum({c.OUTBOX_EVENTS.name}{{$sel, status="pending"}})',
        "dbConnections": f"{c.DB_CONNECTIONS.name}{{$sel}}",
    }
    return system, application


def guide_metrics(prometheus: Prometheus, instance: str | None = None) -> tuple[int, dict]:
    """The guide's `/dashboard/api/metrics` answer for one exporter instance (the first one when none is named)."""
    try:
        if instance is None:
            found = sorted(r["metric"].get("instance", "") for r in prometheus.instant(c.EXPORTER_BUILD_INFO.name))
            instance = found[0] if found else None
        # No exporter yet: an empty instance matches nothing, so every figure is null.
        selector = f'instance="{_escape(instance or "")}"'

        def fill(tree):
            if isinstance(tree, dict):
                return {key: fill(value) for key, value in tree.items()}
            result = prometheus.instant(tree.replace("$sel", selector))
            value = float(result[0]["value"][1]) if result else math.nan
            return value if math.isfinite(value) else None  # 0/0 is NaN, which JSON cannot carry

        system, application = (fill(tree) for tree in guide_queries(prometheus.settings))
    except QueryFailed as exc:
        return exc.status, exc.body
    system["instance"] = instance
    # Node's event-loop lag is measured inside the process; nothing outside it can observe it.
    system["eventLoop"] = None
    stamp = datetime.fromtimestamp(time.time(), timezone.utc).isoformat(timespec="milliseconds")
    return 200, {"system": system, "application": application, "timestamp": stamp.replace("+00:00", "Z")}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
