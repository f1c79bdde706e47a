"""A histogram kept between scrapes, for collectors that build fresh families on each one.

prometheus_client's own Histogram is an instrumented metric that lives in a
registry; the collectors here yield HistogramMetricFamily objects instead, so
they keep their counts in this class and hand `cumulative()` to add_metric.
"""

from __future__ import annotations

from bisect import bisect_left


class Histogram:
    """Observations counted into fixed upper bounds (`le`), plus their sum and count."""

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value: Prometheus' `le`
        self.sum += value
        self.count += 1

    def merge(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.sum += other.sum
        self.count += other.count

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, count) pairs as HistogramMetricFamily.add_metric wants them, ending with +Inf."""
        out, running = [], 0
        for bound, n in zip((*(str(float(b)) for b in self.bounds), "+Inf"), self.counts):
            running += n
            out.append((bound, running))
        return out
