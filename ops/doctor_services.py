"""doctor's checks of the services around DevFlow: the exporter, Prometheus and Alertmanager answer, and
Prometheus scrapes often enough for the settings' rate window."""

from __future__ import annotations

import json
from urllib.parse import quote

import yaml

from devflow_monitor.core import catalog
from devflow_monitor.core.settings import ConfigError, Settings, seconds
from devflow_monitor.ops import common
from devflow_monitor.ops.check import Check


def check_exporter(url: str, timeout: float) -> Check:
    details = {"url": url}
    try:
        status, body = common.http_get(url, timeout)
    except common.FAILED as exc:
        return Check("exporter", "fail", f"exporter not reachable at {url}: {exc}",
                     "start it: `systemctl start devflow-monitor-exporter`, "
                     "`launchctl load ~/Library/LaunchAgents/com.devflow.monitor.exporter.plist` or "
                     "`devflow-monitor serve`; without it no alert can fire", details)
    details["http_status"] = status
    if status == 401:
        return Check("exporter", "ok", f"exporter answers at {url} (basic auth required)", details=details)
    if status != 200:
        return Check("exporter", "warn", f"exporter at {url} answered HTTP {status}",
                     "check --exporter-url (default is /health on --web.listen-address)", details)
    try:
        health = json.loads(body)
        failing = sorted(name for name, ok in health.get("collectors", {}).items() if ok is False)
    except (ValueError, AttributeError):
        return Check("exporter", "warn", f"{url} answered 200 but not with the exporter's health JSON",
                     "is --exporter-url pointing at devflow-monitor's /health?", details)
    details["failing_collectors"] = failing
    if failing:
        return Check("exporter", "warn", f"exporter up at {url}; collectors failing: {', '.join(failing)}",
                     "see the exporter's log (journalctl -u devflow-monitor-exporter) for the collector error",
                     details)
    return Check("exporter", "ok", f"exporter up at {url}, version {health.get('version', '?')}", details=details)


def check_prometheus(url: str | None, timeout: float, settings: Settings) -> Check:
    if not url:
        return Check("prometheus", "skip", "not configured (--prometheus URL)")
    base = url.rstrip("/")
    details = {"url": base}
    problem = _readiness(base, timeout)
    if problem:
        return Check("prometheus", "fail", f"Prometheus at {base}: {problem}",
                     "start it (`make up`, or `systemctl start prometheus`) and check its log", details)
    interval = _scrape_interval_check(base, timeout, settings, details)
    if interval.status != "ok":
        return interval
    query = f"count({catalog.EXPORTER_BUILD_INFO.name})"
    try:
        _, body = common.http_get(f"{base}/api/v1/query?query={_quote(query)}", timeout)
        result = json.loads(body)["data"]["result"]
    except (*common.FAILED, ValueError, KeyError, TypeError) as exc:
        return Check("prometheus", "warn", f"Prometheus ready but the query API failed: {exc}",
                     "check the Prometheus log", details)
    if not result:
        return Check("prometheus", "warn", f"Prometheus ready at {base} but has no "
                                           f"{catalog.EXPORTER_BUILD_INFO.name}: it is not scraping the exporter",
                     "add the exporter to prometheus.yml's scrape_configs (see the repo's prometheus.yml) "
                     "and check Status > Targets", details)
    return Check("prometheus", "ok", f"Prometheus ready at {base} and scraping the exporter {interval.summary}",
                 details=details)


def _scrape_interval_check(base: str, timeout: float, settings: Settings, details: dict) -> Check:
    """fail where Prometheus scrapes too seldom for rate() over the settings' rate_window to see two samples;
    an ok check's summary says how often it scrapes."""
    expected = settings.scrape_interval
    try:
        _, body = common.http_get(f"{base}/api/v1/status/config", timeout)
        scrape = yaml.safe_load(json.loads(body)["data"]["yaml"])["global"]["scrape_interval"]
        too_slow = seconds(scrape) > seconds(settings.rate_window) / 2
    except (*common.FAILED, ValueError, KeyError, TypeError, ConfigError, yaml.YAMLError):
        return Check("prometheus", "ok", f"(scrape interval unreadable; the settings assume {expected})")
    details["scrape_interval"] = scrape
    if too_slow:
        return Check("prometheus", "fail", f"Prometheus scrapes every {scrape}: rate() over the settings' rate_window "
                                           f"({settings.rate_window}) needs two samples",
                     f"set scrape_interval to {expected} in prometheus.yml", details)
    return Check("prometheus", "ok", f"every {scrape} (the settings assume {expected})")


def check_alertmanager(url: str | None, timeout: float) -> Check:
    if not url:
        return Check("alertmanager", "skip", "not configured (--alertmanager URL)")
    base = url.rstrip("/")
    problem = _readiness(base, timeout)
    if problem:
        return Check("alertmanager", "fail", f"Alertmanager at {base}: {problem}",
                     "start it (`make up`, or `systemctl start prometheus-alertmanager`); "
                     "until then alerts fire but nobody is notified", {"url": base})
    return Check("alertmanager", "ok", f"Alertmanager ready at {base}", details={"url": base})


# --- helpers ------------------------------------------------------------------------

def _readiness(base: str, timeout: float) -> str | None:
    try:
        status, _ = common.http_get(f"{base}/-/ready", timeout)
    except common.FAILED as exc:
        return f"not reachable ({exc})"
    return None if status == 200 else f"not ready (HTTP {status} from /-/ready)"


def _quote(text: str) -> str:
    return quote(text, safe="")
