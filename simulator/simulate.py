"""`devflow-monitor simulate`: a stand-in for the DevFlow Monitor MCP server.

This is NOT the DevFlow server. It imitates what the monitoring bundle can see
of it (docs/devflow.md), so that demos and tests have a live target whose faults can be
switched on and off:

- a real SQLite database in WAL mode with the server's schema
  (core/devflow_db.py), receiving events of the real types at --rate events
  per second (mostly file:changed, some git:*), millisecond timestamps;
- a sync worker that marks rows 'synced' a few seconds after insert (the
  guide's outbox; the public build never does this);
- log lines in the real formats in --log-dir: devflow-monitor.err (stderr
  style), devflow-monitor.out (stdout style), server.log / error.log (the
  guide's `2025-08-02 14:00:01 ERROR ...`), access.log (common log format plus
  response time) and audit/audit-YYYY-MM-DD.log (JSON lines); all opened in
  append mode and reopened after rotation (SIGUSR1, or a changed inode);
- the guide's GET /health and GET /status JSON (memory.used is this process's
  RSS in MB, memory.total the machine's memory in MB), and fault switches:
  POST /faults/NAME, DELETE /faults/NAME, GET /faults.

Faults (FAULTS below): stop_writing, error_burst, memory_growth, slow_health,
failing_health, outbox_backlog, cpu_burn, exit.

Like the real server it never checkpoints the WAL on exit, so -wal and -shm
files stay behind. SIGTERM / SIGINT stop it with status 0; the `exit` fault
ends it with status 1.
"""

from __future__ import annotations

import argparse
import json
import math
import mmap
import os
import random
import signal
import sqlite3
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from devflow_monitor.core.config import ConfigError
from devflow_monitor.core.commands import add_command

FAULTS = {
    "stop_writing": "keep logging file and git events but persist no rows (the public build's defect)",
    "error_burst": "ERROR lines in every log, 5xx in the access log, test:failed events",
    "memory_growth": "RSS grows by about 4 MB per second (up to 512 MB), released when switched off",
    "slow_health": "/health and /status answer after about 1.5 s",
    "failing_health": "/health and /status answer 500, status unhealthy, monitors error",
    "outbox_backlog": "the sync worker stops: pending rows pile up and some become 'failed'",
    "cpu_burn": "a busy thread burns one core",
    "exit": "the process exits at once with status 1",
}

# Relative weights of the event mix: mostly file changes, some git, a little test and AI.
EVENT_WEIGHTS = {
    "file:changed": 60, "file:created": 8, "file:deleted": 4, "dir:created": 2, "dir:deleted": 1,
    "git:commit": 6, "git:branch_updated": 4, "git:branch_created": 2, "git:merge": 1, "git:branch_deleted": 1,
    "test:started": 3, "test:passed": 3, "test:failed": 1, "ai:suggestion": 2, "ai:completion": 2,
}
# Capacities of the server's four in-memory queues (docs/devflow.md "The event queue").
QUEUE_CAPACITY = {"default": 5000, "priority": 1000, "batch": 10000, "failed": 1000}
PRIORITY_TYPES = {"git:commit", "git:merge", "test:failed"}
# The log file watcher reports chokidar's event names, not the stored types (docs/devflow.md shows `file:change`).
WATCHER_NAMES = {"created": "add", "changed": "change", "deleted": "unlink"}

TICK_SECONDS = 0.1
SYNC_INTERVAL_SECONDS = 1.0
SYNC_DELAY_MS = 2000                 # rows become 'synced' this long after their timestamp
API_REQUESTS_PER_SECOND = 2.0        # simulated MCP tool traffic in access.log
BURST_ERRORS_PER_SECOND = 20.0       # error_burst: ERROR lines per log format per second
BURST_REQUESTS_PER_SECOND = 10.0     # error_burst: extra API requests, most answered 5xx
MEMORY_GROWTH_BYTES_PER_SECOND = 4 << 20
MEMORY_GROWTH_CAP_BYTES = 512 << 20
SLOW_HEALTH_SECONDS = 1.5
MAX_CATCH_UP_SECONDS = 10.0          # after a stall (locked DB, SIGSTOP) replay at most this much
VERSION = "1.0.0"                    # the version the guide's /health reports

API_PATHS = ("/tools/getProjectStatus", "/tools/getMetrics", "/tools/getActivityLog",
             "/tools/analyzeBottlenecks", "/tools/checkMethodology")


def register(subparsers) -> None:
    parser = add_command(subparsers, "simulate", run, config=False,
                         help="run a stand-in DevFlow server (demo and test target, not the real server)",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="faults:\n" + "\n".join(f"  {name:<15} {text}" for name, text in FAULTS.items()))
    parser.add_argument("--database", metavar="PATH", help="SQLite database to write (created when missing)")
    parser.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:3000",
                        help="HTTP address for /health, /status and /faults, or 'none' for no HTTP at all "
                             "like the public build (default 127.0.0.1:3000)")
    parser.add_argument("--log-dir", metavar="DIR", help="directory for the log files (default: write none)")
    parser.add_argument("--rate", metavar="EVENTS_PER_SECOND", default="5",
                        help="events per second across all types (default 5)")
    parser.add_argument("--fault", metavar="NAME", nargs="+", action="extend", default=[],
                        help="faults active from the start: " + ", ".join(FAULTS))
    parser.add_argument("--pidfile", metavar="FILE", help="write the process id here; removed at exit")
    parser.add_argument("--seed", metavar="N", help="seed for the event mix, to repeat a run")


def run(args: argparse.Namespace) -> int:
    """Run a stand-in for the DevFlow Monitor MCP server, for demos and tests; it is not the
    real server. It writes events of the real types into a real SQLite database (WAL, real
    schema), writes log lines in the real formats, serves the guide's /health and /status,
    and injects faults on request: POST /faults/NAME switches one on, DELETE /faults/NAME
    off, GET /faults lists them."""
    options = _check_arguments(args)
    try:
        simulator = Simulator(**options)
    except (OSError, sqlite3.Error) as exc:
        print(f"devflow-monitor simulate: error: {exc}", file=sys.stderr)
        return 1
    return simulator.run()


def _check_arguments(args: argparse.Namespace) -> dict:
    """Turn the flags into Simulator arguments; raises ConfigError (one line, exit 2)."""
    if not args.database:
        raise ConfigError("simulate: --database PATH is required")
    unknown = [name for name in args.fault if name not in FAULTS]
    if unknown:
        raise ConfigError(f"simulate: unknown fault '{unknown[0]}' (known: {', '.join(FAULTS)})")
    try:
        rate = float(args.rate)
    except ValueError:
        rate = -1.0
    if not (math.isfinite(rate) and 0 <= rate <= 100_000):
        raise ConfigError(f"simulate: --rate must be a number of events per second from 0 to 100000, "
                          f"not '{args.rate}'")
    seed = None
    if args.seed is not None:
        try:
            seed = int(args.seed)
        except ValueError:
            raise ConfigError(f"simulate: --seed must be an integer, not '{args.seed}'") from None
    return {"database": Path(args.database).expanduser(), "listen": _parse_listen(args.listen),
            "log_dir": Path(args.log_dir).expanduser() if args.log_dir else None, "rate": rate,
            "faults": args.fault, "pidfile": Path(args.pidfile).expanduser() if args.pidfile else None,
            "seed": seed}


def _parse_listen(value: str) -> tuple[str, int] | None:
    if value.lower() == "none":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"simulate: --listen must be HOST:PORT or 'none', not '{value}'")
    return host.strip("[]") or "127.0.0.1", int(port)


class Faults:
    """The set of active faults, shared by the HTTP threads and the event engine."""

    def __init__(self, active=()):
        self._lock = threading.Lock()
        self._active = set(active)

    def set(self, name: str, on: bool) -> None:
        with self._lock:
            (self._active.add if on else self._active.discard)(name)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._active

    def active(self) -> list[str]:
        with self._lock:
            return sorted(self._active)


class LogFiles:
    """Append-mode log files that follow rotation: reopened on SIGUSR1 and whenever the inode changed."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self._lock = threading.Lock()
        self._open: dict[str, tuple[object, int, int]] = {}   # relative path -> (file, st_dev, st_ino)
        self._reopen_requested = False
        if directory is not None:
            (directory / "audit").mkdir(parents=True, exist_ok=True)

    def request_reopen(self) -> None:
        """Called from the SIGUSR1 handler: only set a flag, the next write reopens."""
        self._reopen_requested = True

    def write(self, batches: dict[str, list[str]]) -> None:
        """Append lines to files (relative names); one stat and one flush per file."""
        if self.directory is None:
            return
        with self._lock:
            if self._reopen_requested:
                self._reopen_requested = False
                self._close_all()
            for name, lines in batches.items():
                if lines:
                    handle = self._handle(name)
                    handle.write("".join(line + "\n" for line in lines))
                    handle.flush()

    def close(self) -> None:
        with self._lock:
            self._close_all()

    def _handle(self, name: str):
        path = self.directory / name
        entry = self._open.get(name)
        if entry is not None:
            try:
                stat = os.stat(path)
                if (stat.st_dev, stat.st_ino) == entry[1:]:
                    return entry[0]
            except FileNotFoundError:
                pass
            entry[0].close()
        if name.startswith("audit/"):
            self._close_matching("audit/")   # a new day's audit file: yesterday's is done
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a", encoding="utf-8", opener=_open_0640)
        stat = os.fstat(handle.fileno())
        self._open[name] = (handle, stat.st_dev, stat.st_ino)
        return handle

    def _close_matching(self, prefix: str) -> None:
        for name in [name for name in self._open if name.startswith(prefix)]:
            self._open.pop(name)[0].close()

    def _close_all(self) -> None:
        self._close_matching("")


def _open_0640(path, flags):
    return os.open(path, flags, 0o640)   # the guide's logrotate `create 0640`


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
        self._lock = threading.Lock()
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


class Simulator:
    """One simulated DevFlow server: event engine thread, optional HTTP server, fault switches."""

    def __init__(self, database: Path, listen: tuple[str, int] | None, log_dir: Path | None, rate: float,
                 faults, pidfile: Path | None, seed: int | None):
        from devflow_monitor.core import devflow_db   # imported here: `devflow-monitor --help` needs none of this

        self.database, self.rate, self.pidfile = database, rate, pidfile
        self.faults = Faults(faults)
        self.logs = LogFiles(log_dir)
        self.queues = QueueCounters()
        self.random = random.Random(seed)
        self.started = time.monotonic()
        self.stopping = threading.Event()
        self._devflow_db = devflow_db
        try:
            setup = devflow_db.create_database(database)
            self._seq = setup.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
            setup.close()
        except sqlite3.Error as exc:
            raise sqlite3.Error(f"{database}: {exc}") from None
        self._conn: sqlite3.Connection | None = None   # the engine thread's own connection
        self._types, self._weights = zip(*EVENT_WEIGHTS.items())
        self._memory: list[mmap.mmap] = []
        self._memory_fill = b"\x5a" * int(MEMORY_GROWTH_BYTES_PER_SECOND * TICK_SECONDS)
        self._burner: threading.Thread | None = None
        self.server = _bind_http(listen, self) if listen else None

    # ---- lifecycle -------------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGUSR1, lambda *_: self.logs.request_reopen())
        if self.pidfile:
            self._write_pidfile()
        self._log_startup()
        if "exit" in self.faults:
            self.crash()
        engine = threading.Thread(target=self._engine, name="engine", daemon=True)
        engine.start()
        if self.server:
            threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                             name="http", daemon=True).start()
        where = "no HTTP" if self.server is None else "http://%s:%d" % self.server.server_address[:2]
        print(f"devflow-monitor simulate: stand-in DevFlow server (pid {os.getpid()}), {self.rate:g} events/s "
              f"into {self.database}, {where}, faults: {', '.join(self.faults.active()) or 'none'}",
              file=sys.stderr, flush=True)
        while not self.stopping.wait(1.0):
            pass
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        engine.join(0.5)
        self._write_logs(self._lines_for("info", "ProjectManager", "DevFlow Monitor MCP server stopped"))
        self.logs.close()
        self._remove_pidfile()
        sys.stdout.flush()
        sys.stderr.flush()
        # Like the real server, leave without closing the database: no checkpoint, -wal and -shm remain.
        os._exit(0)

    def _on_stop_signal(self, signum, frame) -> None:
        self.stopping.set()

    def crash(self) -> None:
        """The `exit` fault: log like an uncaught exception and leave at once with status 1."""
        message = "Uncaught exception: Error: simulated crash (fault 'exit')"
        self._write_logs(self._lines_for("error", "ProcessManager", message))
        self._remove_pidfile()
        os._exit(1)

    def set_fault(self, name: str, on: bool) -> None:
        self.faults.set(name, on)
        level = "warn" if on else "info"
        self._write_logs(self._lines_for(level, "FaultInjector", f"simulator fault {name} {'on' if on else 'off'}"))

    def _write_pidfile(self) -> None:
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        partial = self.pidfile.with_name(self.pidfile.name + ".tmp")
        partial.write_text(f"{os.getpid()}\n")
        partial.replace(self.pidfile)

    def _remove_pidfile(self) -> None:
        try:
            if self.pidfile and self.pidfile.read_text().strip() == str(os.getpid()):
                self.pidfile.unlink()
        except OSError:
            pass

    def _log_startup(self) -> None:
        lines = self._lines_for("info", "ProjectManager", "DevFlow Monitor MCP server started")
        lines["devflow-monitor.err"] = ["[INFO] DevFlow Monitor MCP server started"]
        self._write_logs(lines)

    # ---- the engine: events, sync worker, logs, memory and CPU faults ------------------------------
    def _engine(self) -> None:
        try:
            self._conn = self._devflow_db.connect_writer(self.database)
        except sqlite3.Error as exc:   # the real server dies when it cannot open its database
            self._write_logs(self._lines_for("error", "StorageManager", f"Cannot open database: {exc}"))
            self.crash()
        import psutil   # noqa: F401 -- imported here, off the start-up path, so the first /health is fast

        now = time.monotonic()
        if "stop_writing" not in self.faults:
            self._write_logs(self._simulate_events([(now, "git:monitor_started")], now, time.time()))
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
            self._merge(lines, self._simulate_requests(requests.due(now), burst and burst[1].due(now), now, wall))
            self._merge(lines, self._simulate_errors(len(errors), wall))
            if now >= next_sync:
                next_sync = now + SYNC_INTERVAL_SECONDS
                self._merge(lines, self._sync_outbox(wall))
            self._write_logs(lines)
            self._grow_or_release_memory()
            self._burn_cpu_if_asked()

    def _simulate_events(self, due: list[tuple[float, str]], now: float, wall: float) -> dict[str, list[str]]:
        """Log every due event and, unless stop_writing, insert it in one transaction."""
        lines: dict[str, list[str]] = {}
        rows = []
        for scheduled, event_type in due:
            self._seq += 1
            timestamp_ms = int((wall - (now - scheduled)) * 1000)
            rows.append((event_type, timestamp_ms, self._seq))
            self._merge(lines, self._event_lines(event_type, timestamp_ms, self._seq))
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
                self._devflow_db.insert_event(self._conn, event_type, timestamp_ms, seq)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.rollback()
            self._merge(lines, self._lines_for("error", "StorageManager", f"Failed to persist events: {exc}", wall))
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
            return self._lines_for("error", "SyncWorker", f"Sync failed: {exc}", wall)
        if backlog:
            self.queues.outbox(failed=changed)
            if changed:
                return self._lines_for("warn", "SyncWorker",
                                       f"Sync failed for {changed} events: Error: connect ETIMEDOUT", wall)
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
            self._merge(lines, self._lines_for("error", component, message, wall))
            lines.setdefault("audit", []).append(json.dumps({
                "timestamp": iso_ms(wall), "eventType": "system:error", "severity": "error",
                "category": "system", "source": component, "message": message}))
        return lines

    def _grow_or_release_memory(self) -> None:
        if "memory_growth" in self.faults:
            if len(self._memory) * len(self._memory_fill) < MEMORY_GROWTH_CAP_BYTES:
                # Anonymous mmap, written through: RSS really grows, and munmap really returns it.
                block = mmap.mmap(-1, len(self._memory_fill))
                block.write(self._memory_fill)
                self._memory.append(block)
        elif self._memory:
            for block in self._memory:
                block.close()
            self._memory.clear()

    def _burn_cpu_if_asked(self) -> None:
        if "cpu_burn" in self.faults and not (self._burner and self._burner.is_alive()):
            self._burner = threading.Thread(target=self._burn, name="cpu_burn", daemon=True)
            self._burner.start()

    def _burn(self) -> None:
        while "cpu_burn" in self.faults and not self.stopping.is_set():
            sum(i * i for i in range(20_000))

    # ---- log lines ---------------------------------------------------------------------------------
    def _event_lines(self, event_type: str, timestamp_ms: int, seq: int) -> dict[str, list[str]]:
        """The lines the server writes for one event, built from the same `data` JSON it stores."""
        event = json.loads(self._devflow_db.event_data(event_type, timestamp_ms, seq))
        payload, category, action = event["data"], event["category"], event["data"]["action"]
        wall = timestamp_ms / 1000
        audit = json.dumps({"timestamp": iso_ms(wall), "eventType": event_type, "severity": "info",
                            "category": category, "source": event["source"], "id": event["id"]})
        if category in ("file", "dir"):
            watcher = WATCHER_NAMES.get(action, action) + ("Dir" if category == "dir" else "")
            dump = [f"[DEBUG] File event: {category}:{watcher} {{", f"  type: '{event_type}',",
                    f"  path: '{payload['path']}',", f"  timestamp: {timestamp_ms}", "}"]
            # File events reach stderr only as debug dumps, and server.log as one line.
            lines = {"devflow-monitor.err": dump,
                     "server.log": [f"{guide_time(wall)} INFO [FileMonitor] {event_type} {payload['path']}"]}
        elif category == "git":
            message = _git_message(action, payload, seq)
            lines = self._lines_for("info", "GitMonitor", message, wall)
        else:
            level = "warn" if action == "failed" else "info"
            lines = self._lines_for(level, f"{category.capitalize()}Monitor", f"{event_type} recorded", wall)
        lines["audit"] = [audit]
        return lines

    def _lines_for(self, level: str, component: str, message: str,
                   wall: float | None = None) -> dict[str, list[str]]:
        """One message in every format that carries it: .err, .out, server.log and (errors) error.log."""
        wall = time.time() if wall is None else wall
        upper = level.upper()
        guide = f"{guide_time(wall)} {upper} [{component}] {message}"
        lines = {"devflow-monitor.out": [f"[{iso_ms(wall)}] [{upper}] [{component}] {message}"],
                 "devflow-monitor.err": [f"[{upper}][{component}] {message}"],
                 "server.log": [guide]}
        if level == "error":
            lines["error.log"] = [guide]
        return lines

    @staticmethod
    def _merge(into: dict[str, list[str]], more: dict[str, list[str]]) -> None:
        for name, lines in more.items():
            into.setdefault(name, []).extend(lines)

    def _write_logs(self, lines: dict[str, list[str]]) -> None:
        if "audit" in lines:
            lines[f"audit/audit-{datetime.now(timezone.utc):%Y-%m-%d}.log"] = lines.pop("audit")
        try:
            self.logs.write(lines)
        except OSError as exc:   # a full disk or a vanished directory must not stop the server
            print(f"devflow-monitor simulate: cannot write logs: {exc}", file=sys.stderr, flush=True)

    # ---- HTTP bodies ---------------------------------------------------------------------------------
    def health(self) -> tuple[int, dict]:
        """The guide's /health body, from this process's real figures and the active faults."""
        import psutil

        failing = "failing_health" in self.faults
        state = "error" if failing else None
        body = {
            "status": "unhealthy" if failing else "healthy",
            "uptime": int(time.monotonic() - self.started),
            "version": VERSION,
            "monitors": {"file": state or "active", "git": state or "active", "test": state or "idle"},
            "database": "connected" if self.database.exists() else "disconnected",
            "memory": {"used": round(psutil.Process().memory_info().rss / 2**20),
                       "total": round(psutil.virtual_memory().total / 2**20)},
        }
        return (500 if failing else 200), body

    def status(self) -> tuple[int, dict]:
        code, body = self.health()
        body["queue"] = self.queues.snapshot()
        return code, body

    def request_logged(self, client: str, method: str, path: str, status: int, size: int,
                       elapsed_ms: float) -> None:
        self._write_logs({"access.log": [access_line(client, time.time(), method, path, status, size,
                                                     elapsed_ms)]})


def _git_message(action: str, payload: dict, seq: int) -> str:
    branch = f"feature/sim-{seq % 13}"
    return {
        "commit": f"New commit detected: {payload.get('hash', '')[:7]} - {payload.get('message', '')}",
        "merge": f"Merge detected: {branch} into main",
        "branch_created": f"Branch created: {branch}",
        "branch_updated": f"Branch updated: {branch}",
        "branch_deleted": f"Branch deleted: {branch}",
        "monitor_started": "Git monitor started",
        "monitor_stopped": "Git monitor stopped",
    }.get(action, f"Git event: {action}")


def iso_ms(wall: float) -> str:
    """`2026-11-26T11:37:33.687Z`, JavaScript's toISOString()."""
    moment = datetime.fromtimestamp(wall, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def guide_time(wall: float) -> str:
    """`2025-08-02 14:00:01`, the guide's server.log timestamp (UTC here)."""
    return datetime.fromtimestamp(wall, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def access_line(client: str, wall: float, method: str, path: str, status: int, size: int,
                elapsed_ms: float) -> str:
    """Common log format plus the response time in milliseconds."""
    when = datetime.fromtimestamp(wall, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{client} - - [{when}] "{method} {path} HTTP/1.1" {status} {size} {elapsed_ms:.1f}ms'


def _bind_http(listen: tuple[str, int], simulator: Simulator):
    """Bind now (so a busy port fails at start); serving starts in run()."""
    import socket
    from http.server import ThreadingHTTPServer

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        daemon_threads = True

    try:
        server = Server(listen, _handler_class())
    except OSError as exc:
        raise OSError(f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror or exc}") from None
    server.simulator = simulator
    return server


def _handler_class():
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        """Routes: GET /health, /status, /faults; POST and DELETE /faults/NAME."""

        server_version = "devflow-simulator"

        def do_GET(self):
            sim = self.server.simulator
            if self.path in ("/health", "/status"):
                if "slow_health" in sim.faults:
                    time.sleep(SLOW_HEALTH_SECONDS)
                self._reply(*(sim.health() if self.path == "/health" else sim.status()))
            elif self.path == "/faults":
                self._reply(200, {"active": sim.faults.active(), "available": list(FAULTS)})
            elif self.path.startswith("/faults/"):
                self._reply(405, {"error": "use POST to switch a fault on, DELETE to switch it off"})
            else:
                self._reply(404, {"error": f"no route {self.path}"})

        def do_POST(self):
            self._switch(True)

        def do_DELETE(self):
            self._switch(False)

        def _switch(self, on: bool):
            sim = self.server.simulator
            name = self.path.removeprefix("/faults/") if self.path.startswith("/faults/") else None
            if name is None:
                self._reply(404 if self.path != "/faults" else 405, {"error": f"no route {self.command} {self.path}"})
            elif name not in FAULTS:
                self._reply(404, {"error": f"unknown fault '{name}' (known: {', '.join(FAULTS)})"})
            else:
                sim.set_fault(name, on)
                self._reply(200, {"fault": name, "active": on})
                if name == "exit" and on:
                    sim.crash()

        def _reply(self, status: int, body: dict):
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except ConnectionError:
                pass
            elapsed_ms = (time.perf_counter() - self._began) * 1000
            self.server.simulator.request_logged(self.client_address[0], self.command, self.path, status,
                                                 len(data), elapsed_ms)

        def parse_request(self):
            self._began = time.perf_counter()
            return super().parse_request()

        def log_message(self, format, *args):
            """Requests go to access.log in _reply, not to stderr."""

    return Handler
