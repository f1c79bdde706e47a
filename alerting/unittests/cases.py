"""What every rule test scenario is built from: promtool's input series notation, the Case a scenario
returns, the Context it reads, and the registry that maps each alert to its scenario."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

from devflow_monitor.alerting.rules import number
from devflow_monitor.core.settings import Alert, Settings, SettingsError, seconds
from devflow_monitor.core import catalog

INSTANCE = "devflow-host:9764"
STEP_MINUTES = 1
FAULT_AT = 5  # minute a stepped fault starts: late enough for a silent check before it
MIB = 1024 ** 2
DAY = 86400


# --- input series notation -----------------------------------------------------------

def steps(before: float, minute: int, after: float, end: int) -> str:
    """`before` for samples 0..minute-1, then `after` up to `end`."""
    return f"{number(before)}x{minute - 1} {number(after)}x{end - minute}"


def rising(per_minute: float, end: int, start: float = 0) -> str:
    """A counter or gauge growing (or shrinking) by `per_minute` from the first sample: a straight line."""
    sign = "-" if per_minute < 0 else "+"
    return f"{number(start)}{sign}{number(abs(per_minute))}x{end}"


def counter_from(minute: int, per_minute: float, end: int) -> str:
    """0 up to minute-1, then a straight line from 0 (one increment of `per_minute` per sample from `minute` on)."""
    return f"0x{minute - 1} {number(per_minute)}+{number(per_minute)}x{end - minute}"


def constant(value: float, end: int) -> str:
    return f"{number(value)}x{end}"


def until(values: str, minute: int, end: int) -> str:
    """`values` (written up to `end`) cut at `minute`: no sample from then on, as when an exporter stops
    exporting a series (promtool's `_xN` is N missing samples)."""
    kept, expanded = 0, []
    for part in values.split():
        match = re.fullmatch(r"(-?[\d.e+]+?)(?:([+-])([\d.e+]+))?x(\d+)", part)
        start, sign, step, repeat = match.groups()
        for i in range(int(repeat) + 1):
            if kept < minute:
                delta = float(step or 0) * i * (-1 if sign == "-" else 1)
                expanded.append(number(float(start) + delta))
                kept += 1
    return " ".join(expanded + [f"_x{end - minute + 1}"])


def appears(minute: int, value: float, end: int) -> str:
    """No sample before `minute`, then `value` up to `end`: a series first exported at `minute`."""
    return f"_x{minute} {number(value)}x{end - minute}"


def percent_above(threshold: float) -> int:
    """The smallest whole percent above a ratio threshold."""
    return math.floor(threshold * 100) + 1


def count_text(count: int) -> str:
    """How humanize prints a whole count: as is below 1000, else in k (callers keep counts whole thousands)."""
    return str(count) if count < 1000 else f"{count // 1000}k"


def whole_days_above(limit_seconds: float, later_minutes: int) -> int:
    """Whole days that exceed `limit_seconds` even `later_minutes` earlier (humanizeDuration: "Nd 0h 0m 0s")."""
    return int((limit_seconds + later_minutes * 60) // DAY) + 1


# --- cases -----------------------------------------------------------------------------

@dataclass
class Case:
    title: str
    series: dict[str, str]
    active_at: int | None = None  # minute the condition first holds; None for a healthy case
    labels: dict[str, str] = field(default_factory=dict)  # labels of the alert besides severity
    value: str = ""  # how the description prints $value when the alert fires
    resolves_at: int | None = None  # minute by which a fault case that ends is silent again


@dataclass
class Context:
    settings: Settings
    alert: Alert
    end: int  # last input sample, in minutes
    base: dict[str, str]  # job selector labels plus instance

    @property
    def window(self) -> int:
        """The recording rules' rate window, in minutes."""
        return max(1, seconds(self.settings.rate_window) // 60)

    @property
    def for_minutes(self) -> int:
        return math.ceil(seconds(self.alert.for_) / 60)

    def labels(self, **extra: str) -> dict[str, str]:
        return {**self.base, **extra}

    def series(self, name: str, **extra: str) -> str:
        labels = self.labels(**extra)
        return name + "{" + ",".join(f'{key}="{value}"' for key, value in labels.items()) + "}"


SCENARIOS: dict[str, Callable[[Context], list[Case]]] = {}


def scenario(name: str):
    def register(function):
        SCENARIOS[name] = function
        return function
    return register


def selector_labels(settings: Settings) -> dict[str, str]:
    pairs = re.findall(r'\s*([a-zA-Z_]\w*)\s*=\s*"([^"]*)"\s*(?:,|$)', settings.selector)
    rebuilt = ",".join(f'{key}="{value}"' for key, value in pairs)
    if rebuilt != re.sub(r"\s", "", settings.selector):
        raise SettingsError(f"rule tests need a selector of label=\"value\" pairs, got {settings.selector!r}")
    return dict(pairs)


def drops_to_zero(alert: str, name: str, fault: str, healthy: str) -> None:
    """The scenario of an alert on a 0/1 gauge: it fires when the gauge drops to 0, not while it stays 1."""
    def cases(c: Context) -> list[Case]:
        gauge = c.series(name)
        return [Case(fault, {gauge: steps(1, FAULT_AT, 0, c.end)}, FAULT_AT, c.labels()),
                Case(healthy, {gauge: constant(1, c.end)})]
    scenario(alert)(cases)


def log_lines(c: Context, file: str, level: str) -> str:
    return c.series(catalog.LOG_LINES.name, file=file, level=level)
