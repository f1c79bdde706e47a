"""logs: tails DevFlow's log files and counts records by level; the access log gives HTTP figures.

The collector finds the files (paths and globs), runs reading passes (at each
scrape, and in its `logs-reader` thread when inotify reports a log created,
renamed or deleted), publishes the counts and saves them in the state file.
How a path is followed through rotation is in logrotation.py, one open file in
logreader.py, the counting in logcount.py, the state file in exporter/logstate.py;
the design is in docs/architecture.md "Log reader".

Sample output:

    devflow_log_lines_total{file="/var/log/devflow/server.log",level="error"} 3.0
    devflow_log_protocol_messages_total{file="/tmp/devflow-monitor.out"} 212.0
    devflow_log_read_bytes_total{file="/var/log/devflow/server.log"} 18231.0
    devflow_log_rotations_total{file="/var/log/devflow/server.log",kind="rename"} 1.0
    devflow_http_requests_total{code="2xx"} 1042.0
    devflow_http_request_duration_seconds_bucket{le="0.1"} 1017.0
    devflow_app_build_info{version="0.1.0"} 1.0
    devflow_app_monitor_state{monitor="file",state="active"} 1.0

The last two are what the server says of itself in its logs (core/logformat.py
AppFacts): its version in its MCP initialize reply on stdout, each monitor's
last `Monitor started` / `Monitor stopped` on stderr. A server with an HTTP
/status says them there: where a probe collector runs, it publishes them, its
own answer first and these where it has none (serve.py wires `app_fields` to
it); this collector publishes them only where no probe runs.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time

from devflow_monitor.core import catalog
from devflow_monitor.core.config import Config
from devflow_monitor.core.files import write_json_atomic
from devflow_monitor.core.logformat import MONITORS, AccessLogParser, AppFacts, is_compressed, rotated_from
from devflow_monitor.exporter.collectors.base import Collector, Worker
from devflow_monitor.exporter.collectors.logcount import LogCounts
from devflow_monitor.exporter.collectors.logrotation import TailedFile
from devflow_monitor.exporter.collectors.logwatch import DirectoryWatcher
from devflow_monitor.exporter.collectors.probe import monitors_family, version_family
from devflow_monitor.exporter.logstate import FileCounts, entry_state, load_own_state, parse_entry, state_document

log = logging.getLogger(__name__)

READ_BUDGET_BYTES = 64 << 20  # per file per pass, so one huge backlog does not starve the other files
SCRAPE_READ_BUDGET_BYTES = 8 << 20  # per file in a scrape's pass: about 30 ms of reading; the thread reads the rest
ROTATE_WAIT_SECONDS = 5.0  # quiet time after which a renamed-away file is closed, once the app writes elsewhere
# A crash re-reads at most this much of the logs (offsets and counters are saved together, so totals
# stay exact); each write costs two fsyncs, and every 5 s they would be half the reader's wake-ups.
STATE_INTERVAL_SECONDS = 60.0
MIN_PASS_GAP_SECONDS = 0.05  # a burst of inotify events (rename, then create) wakes the reader once
MAX_FILES = 64  # files tracked at once; of more globbed ones, the most recently modified (with a warning)
STOP_SECONDS = 30.0  # how long stop() waits for the reader thread's pass to end
PASS_END_SECONDS = 5.0  # then for a scrape's pass, before giving up on saving the state


class LogsCollector(Collector):
    """Counts log records by file and level, and access-log requests; see the module docstring."""

    name = "logs"

    def __init__(self, config: Config):
        super().__init__()
        settings = config.collectors.logs
        self._patterns = [os.path.expanduser(p) for p in config.devflow.log_files]
        self._access_path = os.path.expanduser(config.devflow.access_log) if config.devflow.access_log else None
        self._poll = max(0.05, float(settings.poll_interval_seconds))  # only where inotify is unavailable
        self._rotate_wait = max(ROTATE_WAIT_SECONDS, 2 * self._poll)
        access = AccessLogParser(settings.access_log_pattern) if self._access_path else None
        # _counts.lock guards the counters (see LogCounts). _pass_lock: one pass at a time (the reader
        # thread's, or a scrape's); its holder owns the rest of the reader state: _files, _saved,
        # _failing and each TailedFile. Order: _pass_lock, then _counts.lock.
        self._pass_lock = threading.Lock()
        self._counts = LogCounts(self._access_path, access)
        self._files: dict[str, TailedFile] = {}
        # Entries of the state file whose path is not tracked: not found (yet), or cut by MAX_FILES.
        self._state_path, self._saved = None, {}
        if settings.state_file:
            self._state_path, self._saved = load_own_state(settings.state_file, config.devflow.database_path,
                                                           self._counts.http, self._counts.app)
        self._failing: dict[str, str] = {}  # path -> the bug last logged for it
        self._last_pass_failed = False  # set by a pass, read by `healthy`: one bool, no lock needed
        self._wake = threading.Event()  # a pass is due: set by file events, a used-up budget, a state file due
        self._closing = threading.Event()  # set while stop() waits for the passes to end
        self._watcher = DirectoryWatcher(self._patterns + ([self._access_path] if self._access_path else []),
                                         self._wake, self._poll)
        self._warned: set[str] = set()
        self._state_written = 0.0
        self._worker = Worker("logs-reader", self._run, join_seconds=STOP_SECONDS, wake=self._wake)
        self.workers.append(self._worker)
        # False where a probe collector publishes the server's version and monitors (then with app_fields()).
        self.publishes_app_facts = True

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._worker.running:
            return
        self._closing.clear()
        self._watcher.start()
        super().start()

    def stop(self) -> None:
        self._closing.set()
        self._watcher.stop()
        super().stop()  # wakes the reader thread and waits up to STOP_SECONDS for it
        try:
            # A pass still running now is stuck in a read (a stuck filesystem): closing its files
            # under it would corrupt the state. A scrape's pass ends early once _closing is set.
            if not self._pass_lock.acquire(timeout=PASS_END_SECONDS):
                log.warning("log reader did not stop within %g s; offsets not saved", STOP_SECONDS)
                return
            try:
                self._close()
            finally:
                self._pass_lock.release()
        finally:
            self._closing.clear()  # a bare read_once() after stop() reads every file again

    def close(self) -> None:
        """Save the state and close every file (stop() does this; a bare read_once() user calls it).

        The positions stay in memory, so a later start() or read_once() continues from them.
        """
        with self._pass_lock:  # a scrape's pass may still be running
            self._close()

    def _close(self) -> None:
        self._save_state()
        for tailed in self._files.values():
            tailed.release()

    def _run(self, stopping: threading.Event) -> None:
        while True:
            started = time.monotonic()
            # Cleared before the check and the pass: a stop (Worker sets `stopping`, then _wake) or a
            # change during the pass ends the wait that follows.
            self._wake.clear()
            if stopping.is_set():
                return
            with self._pass_lock:
                self._pass(READ_BUDGET_BYTES)
                if self._state_due():
                    self._save_state()
            self._wake.wait(self._sleep_seconds())
            gap = MIN_PASS_GAP_SECONDS - (time.monotonic() - started)
            if gap > 0:
                stopping.wait(gap)

    def _sleep_seconds(self) -> float | None:
        """How long the reader thread sleeps unless woken: for ever, unless polling or the state file is due."""
        due = []
        if self._watcher.must_poll:
            due.append(self._poll)
        if self._counts.dirty:
            due.append(max(0.0, STATE_INTERVAL_SECONDS - (time.monotonic() - self._state_written)))
        return min(due, default=None)

    def _stopping_now(self) -> bool:
        """stop() is waiting for the passes to end: a pass stops early, leaving the rest to the next run."""
        return self._closing.is_set()

    def _read_at_scrape(self) -> None:
        """A started collector reads what was appended since the last pass, then collect() copies the counters."""
        if not self._worker.running or self._closing.is_set():
            return  # a bare read_once() user decides when to read
        if not self._pass_lock.acquire(blocking=False):
            return  # the reader thread is in a pass (a backlog): publish the counts so far
        try:
            self._pass(SCRAPE_READ_BUDGET_BYTES)
        finally:
            self._pass_lock.release()
        if self._state_due():
            self._wake.set()  # the reader thread writes the state file, off the scrape's path

    def _state_due(self) -> bool:
        return self._counts.dirty and time.monotonic() - self._state_written >= STATE_INTERVAL_SECONDS

    def _pass(self, budget: int) -> None:
        try:
            self.read_once(budget)
        except Exception:  # a bug must not end the reader or fail the scrape; the next pass retries
            self._last_pass_failed = True
            log.exception("logs: reading pass failed")

    # --- one pass --------------------------------------------------------------------------------

    def read_once(self, budget: int = READ_BUDGET_BYTES) -> None:
        """One pass: find the files, notice rotations, read what is new (at most `budget` bytes a file).

        Used by the thread, by collect() and by the bench; the caller holds _pass_lock or runs no thread.
        """
        self._watcher.watch_new_dirs()
        wanted, cut = self._discover()
        self._evict(cut)
        for path, explicit in wanted:
            if path not in self._files:
                self._track(path, explicit)
        failed = False
        for tailed in list(self._files.values()):
            if self._stopping_now():
                return
            failed = not self._advance(tailed, budget) or failed
        self._forget_vanished_globbed()
        self._last_pass_failed = failed

    def _advance(self, tailed: TailedFile, budget: int) -> bool:
        """Read one path; False when that met a bug, which is logged at ERROR (the other paths are still read).

        TailedFile counts OSErrors as read errors; anything else reaching here is a bug, not a read error.
        """
        try:
            more = tailed.advance(budget, self._stopping_now)
        except Exception as exc:
            bug = f"{type(exc).__name__}: {exc}"
            if self._failing.get(tailed.path) != bug:  # a bug that repeats every pass is logged once
                self._failing[tailed.path] = bug
                log.exception("logs: reading %s failed", tailed.path)
            return False
        finally:
            with self._counts.lock:
                counts = self._counts.files[tailed.path]
                counts.size, counts.mtime = tailed.size, tailed.mtime
        self._failing.pop(tailed.path, None)
        if more:
            self._wake.set()  # a budget ran out: come back soon for the rest
        return True

    # --- finding files ---------------------------------------------------------------------------

    def _discover(self) -> tuple[list[tuple[str, bool]], set[str]]:
        """(path, explicit) for every file to read now, bounded by MAX_FILES; and the paths cut.

        Explicit paths always; of more globbed files than fit, the ones still being
        read, then the most recently modified (today's dated log, not the oldest).
        """
        found: dict[str, bool] = {}
        if self._access_path:
            found[self._access_path] = True
        for pattern in self._patterns:
            if not glob.has_magic(pattern):
                found.setdefault(pattern, True)
                continue
            for path in sorted(glob.glob(pattern)):
                name = os.path.basename(path)
                if is_compressed(name) or rotated_from(name) or os.path.isdir(path):
                    continue
                found.setdefault(path, False)
        found = {p: explicit for p, explicit in found.items() if not is_compressed(p)}
        globbed = [p for p, explicit in found.items() if not explicit]
        room = max(0, MAX_FILES - (len(found) - len(globbed)))
        cut: set[str] = set()
        if len(globbed) > room:
            self._warn_once("max_files", "logs: more than %d files match; reading the %d most recently modified",
                            MAX_FILES, room)
            busy = {p for p in globbed if p in self._files and self._files[p].busy()}
            globbed.sort(key=lambda p: (p not in busy, -_mtime(p)))
            cut = set(globbed[room:])
            found = {p: v for p, v in found.items() if p not in cut}
        return list(found.items()), cut

    def _track(self, path: str, explicit: bool) -> None:
        """Start reading a path, continuing its totals and positions from the state file."""
        tailed = TailedFile(path, explicit, self._counts, self._rotate_wait)
        counts = FileCounts()
        saved = self._saved.pop(path, None)
        if saved is not None:
            entry = parse_entry(saved)
            if entry is None:
                self._warn_once("state:" + path, "logs: ignoring malformed state of %s", path)
            else:
                counts, reader, rotated = entry
                tailed.resume_from(reader, rotated)
        self._files[path] = tailed
        with self._counts.lock:
            self._counts.files[path] = counts

    def _untrack(self, path: str) -> tuple[TailedFile, FileCounts]:
        tailed = self._files.pop(path)
        with self._counts.lock:
            counts = self._counts.files.pop(path)
        self._failing.pop(path, None)
        self._counts.dirty = True
        return tailed, counts

    def _evict(self, paths: set[str]) -> None:
        """Stop reading globbed files cut by MAX_FILES; their totals and positions wait in _saved."""
        for path in paths:
            if path not in self._files:
                continue
            tailed, counts = self._untrack(path)
            tailed.release()
            self._saved[path] = entry_state(counts, *tailed.positions())

    def _forget_vanished_globbed(self) -> None:
        """Drop series of globbed files that are gone and fully read (dated files would grow labels forever)."""
        for path, tailed in list(self._files.items()):
            if tailed.explicit or not tailed.closed or os.path.lexists(path):
                continue
            self._untrack(path)

    # --- state file --------------------------------------------------------------------------------

    def _save_state(self) -> None:
        """Write offsets and counters together, atomically."""
        self._state_written = time.monotonic()
        if self._state_path is None:
            return
        # Entries of paths not tracked are kept while their file exists (cut by MAX_FILES), is named in the
        # configuration, or its directory is missing (it may come back, and then continues its totals). A globbed
        # file deleted from a directory that exists (a dated log logrotate removed) is forgotten, so the
        # state file does not grow forever.
        named = self._named()
        files = {path: entry for path, entry in self._saved.items()
                 if os.path.lexists(path) or path in named or not os.path.isdir(os.path.dirname(path))}
        with self._counts.lock:
            files.update({path: entry_state(self._counts.files[path], *tailed.positions())
                          for path, tailed in self._files.items()})
            state = state_document(files, self._counts.http, self._counts.app)
        self._counts.dirty = False
        try:
            write_json_atomic(self._state_path, state, indent=None)
        except OSError as exc:
            self._warn_once("state", "logs: cannot write state file %s: %s", self._state_path, exc)

    def _named(self) -> set[str]:
        """The log files the configuration names without a glob."""
        named = {p for p in self._patterns if not glob.has_magic(p)}
        return named | ({self._access_path} if self._access_path else set())

    def _warn_once(self, key: str, message: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    # --- scrape ------------------------------------------------------------------------------------

    def counted(self, path: str) -> FileCounts | None:
        """A copy of what has been counted for `path` so far, without reading (None if it is not tracked)."""
        with self._counts.lock:
            counts = self._counts.files.get(str(path))
            return counts.copy() if counts is not None else None

    def app_facts(self) -> AppFacts:
        """A copy of what the server's log lines said of its version and monitors, so far."""
        with self._counts.lock:
            return self._counts.app.copy()

    def app_fields(self) -> dict:
        """app_facts() in the probe's field shapes (probe.parse_fields): {"version": str, "monitors": {monitor:
        {state}}}, a field only once the logs told it; a monitor the logs never named is "unknown"."""
        facts, fields = self.app_facts(), {}
        if facts.version:
            fields["version"] = facts.version
        if facts.monitors:
            fields["monitors"] = {monitor: {facts.monitors.get(monitor, "unknown")} for monitor in MONITORS}
        return fields

    def collect(self):
        self._read_at_scrape()
        lines, protocol, nbytes = catalog.LOG_LINES.family(), catalog.LOG_PROTOCOL_MESSAGES.family(), \
            catalog.LOG_BYTES.family()
        errors, size, rotations = catalog.LOG_READ_ERRORS.family(), catalog.LOG_FILE_SIZE.family(), \
            catalog.LOG_ROTATIONS.family()
        last_error, modified = catalog.LOG_LAST_ERROR.family(), catalog.LOG_FILE_MODIFIED.family()
        with self._counts.lock:
            for path, counts in self._counts.files.items():
                if path != self._access_path:
                    for level, n in counts.lines.items():
                        lines.add_metric([path, level], n)
                    protocol.add_metric([path], counts.protocol_messages)
                nbytes.add_metric([path], counts.bytes)
                for reason, n in counts.read_errors.items():
                    errors.add_metric([path, reason], n)
                for kind, n in counts.rotations.items():
                    rotations.add_metric([path, kind], n)
                if counts.last_error is not None:
                    last_error.add_metric([path], counts.last_error)
                if counts.size is not None:
                    size.add_metric([path], counts.size)
                    modified.add_metric([path], counts.mtime)
            http = None
            if self._counts.http is not None:
                durations = self._counts.http.durations
                http = (dict(self._counts.http.requests), durations.cumulative(), durations.sum)
        yield from (lines, protocol, nbytes, last_error, errors, size, rotations, modified)
        if self.publishes_app_facts:
            yield from app_families(self.app_fields())
        if http is not None:
            requests, buckets, total = http
            family = catalog.HTTP_REQUESTS.family()
            for code, n in sorted(requests.items()):
                family.add_metric([code], n)
            yield family
            histogram = catalog.HTTP_DURATION.family()
            histogram.add_metric([], buckets, total)
            yield histogram

    @property
    def healthy(self) -> bool:
        """False while the last pass met a bug or the reader thread is down (success 0 at the scrape)."""
        return super().healthy and not self._last_pass_failed


def app_families(fields: dict):
    """devflow_app_build_info and devflow_app_monitor_state from fields in the probe's shapes; none for a field
    that is absent (never stale)."""
    yield from version_family(fields)
    yield from monitors_family(fields)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
