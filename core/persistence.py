"""Whether DevFlow stores what it does: DevFlowEventsNotPersisted's condition, judged at one moment.

The alert (alerting/rules.py) compares counters over the settings' `rate_window` and waits its `for`:
the process is up, it writes log records, and no event reaches the database (the public build's known
defect, docs/devflow.md). `/status`, `doctor` and the terminal overview judge one moment, so they all
call `judge` here, with the facts the gauges carry as times:

    the process is up                                  devflow_process_up
    it wrote a log record within the rate window       devflow_log_file_modified_timestamp_seconds
                                                       (of the files that hold log records)
    no event stored within the rate window + `for`     devflow_events_newest_timestamp_seconds
                                                       (or no event at all)

With the default settings: up, a log record in the last 5 minutes, no event in the last 20.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from devflow_monitor.core.settings import Settings, seconds
from devflow_monitor.core import catalog

ALERT = "DevFlowEventsNotPersisted"

# Verdicts: `state` is one of these.
STORING = "storing"  # an event was stored within the quiet window
IDLE = "idle"  # no log record within the active window: nothing to store
NOT_PERSISTING = "not_persisting"  # the alert's condition
UNKNOWN = "unknown"  # a fact is missing (process, database or logs not watched)


@dataclass(frozen=True)
class Window:
    active: float  # seconds: a log record this recent is activity (the alert's rate window)
    quiet: float  # seconds: no event for this long while active is the alert's condition (window + for)

    @classmethod
    def from_settings(cls, settings: Settings) -> Window:
        active = seconds(settings.rate_window)
        return cls(active, active + seconds(settings.alerts[ALERT].for_))


@dataclass(frozen=True)
class Verdict:
    state: str
    summary: str


def judge(now: float, *, process_up: bool | None, database_ok: bool | None, last_log_record: float | None,
          newest_event: float | None, window: Window) -> Verdict:
    """`newest_event` None means the events table is empty; `last_log_record` None, that no log is watched."""
    if not process_up:
        return Verdict(UNKNOWN, "the server is not running" if process_up is False else "the process is not watched")
    if not database_ok:
        return Verdict(UNKNOWN, "the database cannot be read")
    if last_log_record is None:
        return Verdict(UNKNOWN, "no log file with records is watched")
    if newest_event is not None and now - newest_event <= window.quiet:
        return Verdict(STORING, f"an event was stored in the last {duration_text(window.quiet)}")
    if now - last_log_record > window.active:
        return Verdict(IDLE, f"no log record in the last {duration_text(window.active)}, nothing to store")
    stored = "no event at all" if newest_event is None else f"no event in the last {duration_text(window.quiet)}"
    return Verdict(NOT_PERSISTING, f"the server logs activity (last {duration_text(window.active)}) "
                                   f"but stored {stored}")


def last_log_record(samples) -> float | None:
    """The newest write to a log file that holds records (not the access log), from (name, labels, value)."""
    samples = list(samples)
    record_files = {labels.get("file") for name, labels, _ in samples if name == catalog.LOG_LINES.name}
    times = [value for name, labels, value in samples
             if name == catalog.LOG_FILE_MODIFIED.name and labels.get("file") in record_files]
    return max(times, default=None)


def judge_collectors(logs, process_up: bool | None, database: dict | None, window: Window | None = None) -> Verdict:
    """The verdict from the exporter's own collectors: `database` is the database watcher's read_scrape()."""
    samples = [(s.name, s.labels, s.value) for family in (logs.collect() if logs else ()) for s in family.samples]
    newest_ms = (database or {}).get("newest_ms")
    return judge(time.time(), process_up=process_up, database_ok=(database or {}).get("state") == "ok",
                 last_log_record=last_log_record(samples),
                 newest_event=None if newest_ms is None else newest_ms / 1000,
                 window=window or Window.from_settings(Settings()))


def duration_text(duration: float) -> str:
    """5m, 20m or 30s: how the settings write durations."""
    return f"{duration / 60:g}m" if duration >= 60 and duration % 60 == 0 else f"{duration:g}s"
