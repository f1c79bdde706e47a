"""The simulator's engine: the thread that writes events into the SQLite database and logs what happens.

Every tick (TICK_SECONDS) it inserts the events due at --rate (mostly file:changed, some git:*,
millisecond timestamps) in one transaction, runs the sync worker that marks rows 'synced' a few
seconds after insert (the guide's outbox; the public build never does this), writes access-log lines
for simulated MCP tool calls, and applies the faults that act on events, the outbox, memory and CPU.
It also keeps the counters of the server's in-memory queues that /status shows.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

from devflow_monitor.core import devflow_db
from devflow_monitor.simulator.faults import MEMORY_GROWTH_BYTES_PER_SECOND, CpuBurn, Faults, MemoryGrowth
from devflow_monitor.simulator.logs import LogFiles, access_line, audit_error, event_lines, lines_for, merge

# Relative weights of the event mix: mostly file changes, some git, a little test and AI.
EVENT_WEIGHTS = {
    "file:changed": 60, "file:created": 8, "file:deleted": 4, "dir:created": 2, "dir:deleted": 1,
    "git:commit": 6, "git:branch_updated": 4, "git:branch_created": 2, "git:merge": 1, "git:branch_deleted": 1,
    "test:started": 3, "test:passed": 3, "test:failed": 1, "ai:suggestion": 2, "ai:completion": 2,
}
# Capacities of the server's four in-memory queues (docs/devflow.md "The event queue").
QUEUE_CAPACITY = {"default": 5000, "priority": 1000, "batch": 10000, "failed": 1000}
PRIORITY_TYPES = {"git:commit", "git:merge", "test:failed"}

TICK_SECONDS = 0.1
SYNC_INTERVAL_SECONDS = 1.0
SYNC_DELAY_MS = 2000                 # rows become 'synced' this long after their timestamp
API_REQUESTS_PER_SECOND = 2.0        # simulated MCP tool traffic in access.log
BURST_ERRORS_PER_SECOND = 20.0       # error_burst: ERROR lines per log format per second
BURST_REQUESTS_PER_SECOND = 10.0     # error_burst: extra API requests, most answered 5xx
MAX_CATCH_UP_SECONDS = 10.0          # after a stall (locked DB, SIGSTOP) replay at most this much

API_PATHS = ("/tools/getProjectStatus", "/tools/getMetrics", "/tools/getActivityLog",
             "/tools/analyzeBottlenecks", "/tools/checkMethodology")


class Pacer:
    """Schedules a steady rate without drift: which happenings are due by `now` (monotonic seconds)."""

    def __init__(self, rate: float, now: float):
        self.rate, self.start, self.done = rate, now, 0

    def due(self, now: float) -> list[float]:
        if self.rate <= 0:
            return []
        target = int((now - self.start) * self.rate)
        self.done = max(self.done, target - int(MAX_CATCH_UP_SECONDS * self.rate))
        times = [self.start + (k + 1) / self.rate for k in range(self.done, target)]
        self.done = max(self.done, target)
        return times


class QueueCounters:
    """Plausible counters for the server's four in-memory queues, as its /status would show them."""

    def __init__(self):
        self._lock = threading.Lock()   # guards _counts and _outbox
        self._counts = {name: dict.fromkeys(("size", "enqueued", "dequeued", "dropped", "failed"), 0)
                        for name in QUEUE_CAPACITY}
        self._outbox = 0   # rows this process inserted that are still pending

    def passed_through(self, queue: str, count: int, failed: int = 0) -> None:
        """Events enqueued and handled within one tick; the size shows the tick's load."""
        with self._lock:
            counts = self._counts[queue]
            counts["enqueued"] += count
            counts["dequeued"] += count - failed
            counts["failed"] += failed
            counts["size"] = count

    def outbox(self, inserted: int = 0, synced: int = 0, failed: int = 0) -> None:
        """The sync worker's batch queue mirrors pending rows; rows that failed go to the failed queue."""
        with self._lock:
            self._outbox = max(0, self._outbox + inserted - synced - failed)
            batch, dead = self._counts["batch"], self._counts["failed"]
            batch["enqueued"] += inserted
            batch["dequeued"] += synced + failed
            batch["failed"] += failed
            batch["size"] = min(self._outbox, QUEUE_CAPACITY["batch"])
            batch["dropped"] = max(batch["dropped"], self._outbox - QUEUE_CAPACITY["batch"])
            dead["enqueued"] += failed
            dead["dropped"] = max(0, dead["enqueued"] - QUEUE_CAPACITY["failed"])
            dead["size"] = dead["enqueued"] - dead["dropped"]

    def snapshot(self) -> dict:
        with self._lock:
            return {name: dict(counts) for name, counts in self._counts.items()}


class Engine:
    """The event engine: creates the database at construction, then `run` is the engine thread's loop."""

    def __init__(self, database: Path, rate: float, seed: int | None, faults: Faults, logs: LogFiles,
                 stopping: threading.Event, crash: Callable[[], None]):
        self.database, self.rate = database, rate
        self.faults, self.logs, self.stopping, self._crash = faults, logs, stopping, crash
        self.queues = QueueCounters()
        self.random = random.Random(seed)
        try:
            setup = devflow_db.create_database(database)
            self._seq = setup.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
            setup.close()
        except sqlite3.Error as exc:
            raise sqlite3.Error(f"{database}: {exc}") from None
        self._conn: sqlite3.Connection | None = None   # the engine thread's own connection
        self._types, self._weights = zip(*EVENT_WEIGHTS.items())
        self._memory = MemoryGrowth(faults, int(MEMORY_GROWTH_BYTES_PER_SECOND * TICK_SECONDS))
        self._cpu = CpuBurn(faults, stopping)

    def run(self) -> None:
        """One tick every TICK_SECONDS until the simulator stops: events, requests, errors, sync, faults."""
        try:
            self._conn = devflow_db.connect_writer(self.database)
        except sqlite3.Error as exc:   # the real server dies when it cannot open its database
            self.logs.record(lines_for("error", "StorageManager", f"Cannot open database: {exc}"))
            self._crash()
        import psutil   # noqa: F401 -- imported here, off the start-up path, so the first /health is fast

        now = time.monotonic()
        if "stop_writing" not in self.faults:
            self.logs.record(self._simulate_events([(now, "git:monitor_started")], now, time.time()))
        events, requests = Pacer(self.rate, now), Pacer(API_REQUESTS_PER_SECOND, now)
        burst: tuple[Pacer, Pacer] | None = None
        next_sync = now + SYNC_INTERVAL_SECONDS
        while not self.stopping.wait(TICK_SECONDS):
            now, wall = time.monotonic(), time.time()
            if "error_burst" in self.faults:
                burst = burst or (Pacer(BURST_ERRORS_PER_SECOND, now), Pacer(BURST_REQUESTS_PER_SECOND, now))
            else:
                burst = None
            due = [(t, self.random.choices(self._types, self._weights)[0]) for t in events.due(now)]
            errors = burst[0].due(now) if burst else []
            due = sorted(due + [(t, "test:failed") for t in errors])
            lines = self._simulate_events(due, now, wall)
            merge(lines, self._simulate_requests(requests.due(now), burst and burst[1].due(now), now, wall))
            merge(lines, self._simulate_errors(len(errors), wall))
            if now >= next_sync:
                next_sync = now + SYNC_INTERVAL_SECONDS
                merge(lines, self._sync_outbox(wall))
            self.logs.record(lines)
            self._memory.step()
            self._cpu.start_if_asked()

    def _simulate_events(self, due: list[tuple[float, str]], now: float, wall: float) -> dict[str, list[str]]:
        """Log every due event and, unless stop_writing, insert it in one transaction."""
        lines: dict[str, list[str]] = {}
        rows = []
        for scheduled, event_type in due:
            self._seq += 1
            timestamp_ms = int((wall - (now - scheduled)) * 1000)
            rows.append((event_type, timestamp_ms, self._seq))
            merge(lines, event_lines(event_type, timestamp_ms, self._seq))
        priority = sum(1 for row in rows if row[0] in PRIORITY_TYPES)
        lost = bool(rows) and "stop_writing" not in self.faults and not self._insert(rows, lines, wall)
        self.queues.passed_through("default", len(rows) - priority, lost * (len(rows) - priority))
        self.queues.passed_through("priority", priority, lost * priority)
        return lines

    def _insert(self, rows, lines, wall) -> bool:
        """Insert rows in one transaction; False when a database error lost them (logged)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for event_type, timestamp_ms, seq in rows:
                devflow_db.insert_event(self._conn, event_type, timestamp_ms, seq)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.rollback()
            merge(lines, lines_for("error", "StorageManager", f"Failed to persist events: {exc}", wall))
            return False
        self.queues.outbox(inserted=len(rows))
        return True

    def _sync_outbox(self, wall: float) -> dict[str, list[str]]:
        """The sync worker: pending rows become 'synced'; with outbox_backlog it fails instead."""
        backlog = "outbox_backlog" in self.faults
        limit = max(1, round(self.rate / 5)) if backlog else max(1000, int(self.rate * 2 * SYNC_INTERVAL_SECONDS))
        status, sync_id = ("failed", "NULL") if backlog else ("synced", "'sync-' || id")
        try:
            changed = self._conn.execute(
                f"UPDATE events SET sync_status = ?, sync_id = {sync_id}, updated_at = ? WHERE id IN "
                "(SELECT id FROM events WHERE sync_status = 'pending' AND timestamp <= ? ORDER BY id LIMIT ?)",
                (status, int(wall), int(wall * 1000) - SYNC_DELAY_MS, limit)).rowcount
        except sqlite3.Error as exc:
            return lines_for("error", "SyncWorker", f"Sync failed: {exc}", wall)
        if backlog:
            self.queues.outbox(failed=changed)
            if changed:
                return lines_for("warn", "SyncWorker", f"Sync failed for {changed} events: Error: connect ETIMEDOUT",
                                 wall)
        else:
            self.queues.outbox(synced=changed)
        return {}

    def _simulate_requests(self, normal: list[float], burst: list[float] | None, now: float,
                           wall: float) -> dict[str, list[str]]:
        """Access-log lines for simulated MCP tool calls; during error_burst most extra calls fail."""
        lines = []
        for scheduled in normal:
            lines.append(self._request_line(scheduled, now, wall, 200))
        for scheduled in burst or ():
            status = self.random.choice((500, 500, 502, 503, 503, 200, 200))
            lines.append(self._request_line(scheduled, now, wall, status))
        return {"access.log": lines}

    def _request_line(self, scheduled: float, now: float, wall: float, status: int) -> str:
        elapsed_ms = self.random.uniform(1.5, 40.0) if status < 500 else self.random.uniform(50.0, 900.0)
        size = self.random.randint(180, 2400) if status < 500 else self.random.randint(40, 120)
        path = self.random.choice(API_PATHS)
        return access_line("127.0.0.1", wall - (now - scheduled), "GET", path, status, size, elapsed_ms)

    def _simulate_errors(self, count: int, wall: float) -> dict[str, list[str]]:
        """error_burst: `count` errors, each as an ERROR line in every format and an audit entry."""
        lines: dict[str, list[str]] = {}
        for _ in range(count):
            commit = f"{self.random.getrandbits(160):040x}"
            component, message = self.random.choice((
                ("GitMonitor", f"Error processing commit {commit[:4]}...: GitError: fatal: bad object {commit}"),
                ("EventEngine", "Failed to dispatch event file:changed: Error: subscriber timeout after 5000ms"),
                ("TestMonitor", "Test runner crashed: Error: spawn npm ENOENT"),
            ))
            merge(lines, lines_for("error", component, message, wall))
            lines.setdefault("audit", []).append(audit_error(component, message, wall))
        return lines
