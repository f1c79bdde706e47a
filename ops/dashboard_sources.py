"""Where the terminal dashboard's figures come from: the exporter's /metrics or Prometheus, one Snapshot per read.

A Snapshot holds every devflow_* sample of one moment. From Prometheus it also holds the per-second rates of
the RATED counters, computed there with rate(); the exporter has no history, so its rates come from the
dashboard's own History (ops/dashboard_history.py).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from prometheus_client.parser import text_string_to_metric_families

from devflow_monitor.core import catalog as c
from devflow_monitor.ops import common

# The counters whose rates the views show; Prometheus computes each with rate().
RATED = (c.PROCESS_CPU.name, c.LOG_LINES.name, c.EVENTS_INGESTED.name, c.HTTP_REQUESTS.name,
         c.HTTP_DURATION.sum, c.HTTP_DURATION.count, c.PROBE_DURATION.sum, c.PROBE_DURATION.count)


@dataclass
class Snapshot:
    """All devflow_* samples at one moment: sample name -> [(labels, value)]; a match value is a string or a
    compiled pattern. `rates` holds per-second rates of the RATED counters when the source computed them."""
    time: float
    samples: dict[str, list[tuple[dict, float]]]
    rates: dict[str, list[tuple[dict, float]]] | None = None

    def series(self, name: str, **match) -> list[tuple[dict, float]]:
        return _select(self.samples.get(name, ()), match)

    def rate_series(self, name: str, **match) -> list[tuple[dict, float]]:
        return _select((self.rates or {}).get(name, ()), match)

    def value(self, name: str, **match) -> float | None:
        """The sum of the matching series, None when there is none."""
        found = self.series(name, **match)
        return sum(v for _, v in found) if found else None

    def label_where_one(self, name: str, label: str, **match) -> str | None:
        """The value of `label` on the series that is 1 (state-set metrics: one series per state)."""
        return next((labels.get(label) for labels, v in self.series(name, **match) if v == 1), None)


def _select(samples, match: dict) -> list[tuple[dict, float]]:
    return [(labels, value) for labels, value in samples
            if all(v.fullmatch(labels.get(k, "")) if isinstance(v, re.Pattern) else labels.get(k) == v
                   for k, v in match.items())]


class ExporterSource:
    def __init__(self, url: str, timeout: float):
        self.url, self.timeout = url, timeout

    def sample(self) -> Snapshot:
        status, body = common.http_get(self.url, self.timeout)
        if status != 200:
            raise common.OpsError(f"{self.url} answered HTTP {status}")
        return parse_exposition(body.decode("utf-8", "replace"), time.time())

    def backfill(self, points: int, step: float) -> list[Snapshot]:
        return []  # the exporter has no history; it builds up while the dashboard runs


class PrometheusSource:
    def __init__(self, base: str, match: str | None, timeout: float, rate_window: float):
        self.base = base.rstrip("/")
        self.url = self.base
        self.match = match
        self.selector = '{__name__=~"devflow_.+"' + (f",{match}" if match else "") + "}"
        self.timeout = timeout
        self.rate_window = rate_window

    def _rate_queries(self) -> dict[str, str]:
        labels = "{" + (self.match or "") + "}"
        return {name: f"rate({name}{labels}[{self.rate_window:g}s])" for name in RATED}

    def _api(self, path: str, params: dict) -> list:
        status, body = common.http_get(f"{self.base}{path}?{urlencode(params, quote_via=quote)}", self.timeout)
        try:
            data = json.loads(body)
        except ValueError:
            raise common.OpsError(f"{self.base} answered HTTP {status} without JSON: is it Prometheus?") from None
        if status != 200 or data.get("status") != "success":
            raise common.OpsError(f"Prometheus query failed: {data.get('error', f'HTTP {status}')}")
        return data["data"]["result"]

    def sample(self) -> Snapshot:
        now = time.time()
        at = {"time": f"{now:.3f}"}
        samples: dict[str, list] = {}
        for item in self._api("/api/v1/query", {"query": self.selector, **at}):
            labels = dict(item["metric"])
            samples.setdefault(labels.pop("__name__"), []).append((labels, float(item["value"][1])))
        rates = {name: [(dict(item["metric"]), float(item["value"][1]))
                        for item in self._api("/api/v1/query", {"query": query, **at})]
                 for name, query in self._rate_queries().items()}
        return Snapshot(now, samples, rates)

    def backfill(self, points: int, step: float) -> list[Snapshot]:
        """The recent past from Prometheus itself, so trends show at once."""
        end = time.time()
        span = {"start": f"{end - points * step:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        frames: dict[float, Snapshot] = {}

        def frame(ts) -> Snapshot:
            return frames.setdefault(float(ts), Snapshot(float(ts), {}, {}))

        for item in self._api("/api/v1/query_range", {"query": self.selector, **span}):
            labels = dict(item["metric"])
            name = labels.pop("__name__")
            for ts, value in item["values"]:
                frame(ts).samples.setdefault(name, []).append((labels, float(value)))
        for name, query in self._rate_queries().items():
            for item in self._api("/api/v1/query_range", {"query": query, **span}):
                for ts, value in item["values"]:
                    frame(ts).rates.setdefault(name, []).append((dict(item["metric"]), float(value)))
        return [frames[ts] for ts in sorted(frames) if frames[ts].samples]


def parse_exposition(text: str, when: float) -> Snapshot:
    samples: dict[str, list] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name.startswith("devflow_"):
                    samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    except (ValueError, TypeError) as exc:
        raise common.OpsError(f"not Prometheus metrics text: {exc}") from None
    if not samples:
        raise common.OpsError("no devflow_* metrics in the answer: is this the devflow-monitor exporter?")
    return Snapshot(when, samples)
