"""The terminal dashboard's memory: the last snapshots, and the rates and trends derived from them.

A rate is Prometheus' own when the source gave one; from the exporter it is the increase of each series over
the last `window` seconds of snapshots, never two neighbouring samples (see ops/dashboard.py).
"""

from __future__ import annotations

from collections import deque

from devflow_monitor.core import persistence
from devflow_monitor.ops.dashboard_sources import Snapshot

HISTORY = 120


class History:
    """The last snapshots. A rate is Prometheus' own when the source gave one, else the increase of each series
    over the last `window` seconds of snapshots (counter resets handled), None until they span that long."""

    def __init__(self, window: float, size: int = HISTORY):
        self.window = window
        self.snapshots: deque[Snapshot] = deque(maxlen=size)

    def add(self, snapshot: Snapshot) -> None:
        if not self.snapshots or snapshot.time > self.snapshots[-1].time:
            self.snapshots.append(snapshot)

    @property
    def last(self) -> Snapshot:
        return self.snapshots[-1]

    def gauge_trend(self, name: str, scale: float = 1.0, **match) -> list[float | None]:
        return [None if (v := s.value(name, **match)) is None else v * scale for s in self.snapshots]

    def rate_trend(self, name: str, **match) -> list[float | None]:
        snapshots = list(self.snapshots)
        return [_window_rate(snapshots, i, name, match, self.window) for i in range(len(snapshots))]

    def rate(self, name: str, **match) -> float | None:
        snapshots = list(self.snapshots)
        return _window_rate(snapshots, len(snapshots) - 1, name, match, self.window) if snapshots else None

    def rates_note(self) -> str:
        """What the rates on screen cover, in the header."""
        if self.snapshots and self.last.rates is not None:
            return f"rates over {persistence.duration_text(self.window)} (Prometheus)"
        seen = self.last.time - self.snapshots[0].time if self.snapshots else 0.0
        if seen >= self.window:
            return f"rates over {persistence.duration_text(self.window)}"
        return f"rates n/a until {persistence.duration_text(self.window)} of data ({seen:.0f}s so far)"

    def ratio_trend(self, num: tuple, den: tuple) -> list[float | None]:
        """Trend of rate(num) / rate(den); each tuple is (name, {labels}). No `num` series at all is 0, as in
        the rules: a level never logged has none."""
        return [ratio(0.0 if n is None and d is not None else n, d)
                for n, d in zip(self.rate_trend(num[0], **num[1]), self.rate_trend(den[0], **den[1]))]


def _window_rate(snapshots: list[Snapshot], i: int, name: str, match: dict, window: float) -> float | None:
    end = snapshots[i]
    if end.rates is not None:
        found = end.rate_series(name, **match)
        return sum(v for _, v in found) if found else None
    start = next((j for j in range(i - 1, -1, -1) if end.time - snapshots[j].time >= window), None)
    if start is None:
        return None
    increases = [_increase(a, b, name, match) for a, b in zip(snapshots[start:i], snapshots[start + 1:i + 1])]
    known = [n for n in increases if n is not None]
    return sum(known) / (end.time - snapshots[start].time) if known else None


def _increase(a: Snapshot, b: Snapshot, name: str, match: dict) -> float | None:
    before = {_key(labels): v for labels, v in a.series(name, **match)}
    after = b.series(name, **match)
    if not after or not before:
        return None
    total = 0.0
    for labels, value in after:
        previous = before.get(_key(labels))
        if previous is None:
            continue  # a series born between the two samples: no increase yet
        total += value - previous if value >= previous else value  # a reset restarts from zero
    return total


def _key(labels: dict) -> tuple:
    return tuple(sorted(labels.items()))


def ratio(a, b):
    """a / b, None when a is unknown or b is unknown or 0."""
    return None if a is None or not b else a / b
