"""Whether DevFlow stores what it does: DevFlowEventsNotPersisted's condition and how long it has held.

The alert (alerting/rules.py) compares counters over the settings' `rate_window` and waits its `for`:
the process is up, it writes log records, and no event reaches the database (the public build's known
defect, docs/devflow.md). `/status`, `doctor` and the terminal overview judge one moment, so they all
call `judge` here, with the facts the gauges carry as times:

    the process is up, and since when                  devflow_process_up, devflow_process_start_time_seconds
    it wrote a log record within the rate window       devflow_log_file_modified_timestamp_seconds
                                                       (of the files that hold log records)
    no event stored within the rate window             devflow_events_newest_timestamp_seconds
                                                       (or no event at all)

The condition holds since the later of the process's start and the moment the newest event left the
rate window (its time + `rate_window`), so every caller derives the same age from the same gauges and
keeps no state between calls. While that age is below the alert's `for` the alert is pending, and so
is the verdict ("pending (3 of 15 min)"); past it the alert fires and the verdict is `not_persisting`.
With the default settings a server that logs from its start and stores nothing is pending for its
first 15 minutes, then not persisting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from devflow_monitor.core.settings import Settings, seconds
from devflow_monitor.core import catalog

ALERT = "DevFlowEventsNotPersisted"

# Verdicts: `state` is one of these.
STORING = "storing"  # an event was stored within the rate window
IDLE = "idle"  # no log record within the rate window: nothing to store
PENDING = "pending"  # the alert's condition holds, for less than its `for`: the alert is pending
NOT_PERSISTING = "not_persisting"  # the condition has held for the alert's `for`: the alert fires
UNKNOWN = "unknown"  # a fact is missing (process, database or logs not watched)


@dataclass(frozen=True)
class Window:
    active: float  # seconds: a log record this recent is activity, an event this recent is storing (rate window)
    quiet: float  # seconds: rate window + `for`, the shortest time without an event before the alert fires

    @classmethod
    def from_settings(cls, settings: Settings) -> Window:
        active = seconds(settings.rate_window)
        return cls(active, active + seconds(settings.alerts[ALERT].for_))

    @property
    def hold(self) -> float:
        """The alert's `for`: how long the condition holds before it fires."""
        return self.quiet - self.active


@dataclass(frozen=True)
class Verdict:
    state: str
    summary: str
    held_seconds: float | None = None  # how long the condition has held (pending and not_persisting)


def judge(now: float, *, process_up: bool | None, database_ok: bool | None, last_log_record: float | None,
          newest_event: float | None, window: Window, process_start: float | None = None) -> Verdict:
    """`newest_event` None means the events table is empty; `last_log_record` None, that no log is watched;
    `process_start` None, that the start time of the running process is not known."""
    if not process_up:
        return Verdict(UNKNOWN, "the server is not running" if process_up is False else "the process is not watched")
    if not database_ok:
        return Verdict(UNKNOWN, "the database cannot be read")
    if last_log_record is None:
        return Verdict(UNKNOWN, "no log file with records is watched")
    if newest_event is not None and now - newest_event <= window.active:
        return Verdict(STORING, f"an event was stored in the last {duration_text(window.active)}")
    if now - last_log_record > window.active:
        return Verdict(IDLE, f"no log record in the last {duration_text(window.active)}, nothing to store")
    stored = "no event at all" if newest_event is None else f"no event in the last {duration_text(window.active)}"
    condition = f"the server logs activity (last {duration_text(window.active)}) but stored {stored}"
    held = held_for(now, newest_event, process_start, window)
    if held is not None and held >= window.hold:
        return Verdict(NOT_PERSISTING, f"{condition} for {held_text(held)}", held)
    return Verdict(PENDING, f"{pending_text(held, window.hold)}: {condition}", held)


def held_for(now: float, newest_event: float | None, process_start: float | None, window: Window) -> float | None:
    """Seconds the condition has held: since the later of the process's start and the newest event leaving
    the rate window. None when neither is known."""
    since = [moment for moment in (process_start, None if newest_event is None else newest_event + window.active)
             if moment is not None]
    return max(0.0, now - max(since)) if since else None


def pending_text(held: float | None, hold: float) -> str:
    """ "pending (3 of 15 min)": whole minutes when the alert's `for` is whole minutes, else seconds."""
    if hold >= 60 and hold % 60 == 0:
        done = "?" if held is None else f"{int(held // 60)}"
        return f"pending ({done} of {hold / 60:g} min)"
    done = "?" if held is None else f"{int(held)}"
    return f"pending ({done} of {hold:g} s)"


def held_text(held: float) -> str:
    """16 min, or 45 s under two minutes."""
    return f"{held // 60:.0f} min" if held >= 120 else f"{held:.0f} s"


def last_log_record(samples) -> float | None:
    """The newest write to a log file that holds records (not the access log), from (name, labels, value)."""
    samples = list(samples)
    record_files = {labels.get("file") for name, labels, _ in samples if name == catalog.LOG_LINES.name}
    times = [value for name, labels, value in samples
             if name == catalog.LOG_FILE_MODIFIED.name and labels.get("file") in record_files]
    return max(times, default=None)


def judge_collectors(logs, process_up: bool | None, database: dict | None, window: Window | None = None,
                     process_start: float | None = None) -> Verdict:
    """The verdict from the exporter's own collectors: `database` is the database watcher's read_scrape()."""
    samples = [(s.name, s.labels, s.value) for family in (logs.collect() if logs else ()) for s in family.samples]
    newest_ms = (database or {}).get("newest_ms")
    return judge(time.time(), process_up=process_up, database_ok=(database or {}).get("state") == "ok",
                 last_log_record=last_log_record(samples),
                 newest_event=None if newest_ms is None else newest_ms / 1000,
                 window=window or Window.from_settings(Settings()), process_start=process_start)


def duration_text(duration: float) -> str:
    """5m, 20m or 30s: how the settings write durations."""
    return f"{duration / 60:g}m" if duration >= 60 and duration % 60 == 0 else f"{duration:g}s"
