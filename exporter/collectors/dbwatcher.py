"""Reads the DevFlow SQLite database for the database and event-queue collectors, never in the writer's way.

How it stays cheap and harmless at 10M rows:
- connections are read-only (`mode=ro`) with a short busy timeout, opened for
  each read and closed after it, so the exporter holds no lock between reads;
- a scrape is one short read transaction of index look-ups (page counts,
  newest/oldest timestamp, oldest pending row) plus the rowid range of rows
  added since the last scrape (`GROUP BY +type` keeps SQLite off the type index);
- counts (rows per table, events per type, outbox) and the integrity check
  run in a background worker ("database-counts") that sleeps until its next
  deadline (or until a scrape sees a new file); their metrics say so in HELP
  and carry the time of their last refresh. Counts are incremental (`dbcounts`)
  and skip the database entirely when no file changed. A full count or check
  holds one read snapshot while it runs, during which a checkpoint cannot
  reset the WAL;
- nothing is ever created or written beside the database
  (`devflow_db.connect_readonly`); a read of a closed database's file is
  thrown away if a writer touched it meanwhile.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from devflow_monitor.core import backup_status
from devflow_monitor.core.config import Config
from devflow_monitor.core.devflow_db import (IMMUTABLE, connect_readonly, disk_usage, file_state, integrity_errors,
                                             read_mode, write_locked)
from devflow_monitor.exporter.collectors.base import Worker
from devflow_monitor.exporter.collectors.dbcounts import FULL_RECOUNT_SECONDS, Counts, TypeLabels, count_rows

log = logging.getLogger(__name__)

STATES = ("ok", "missing", "locked", "corrupt", "unreadable")
# Rows read from the rowid range per scrape; a bigger burst is finished by the following scrapes.
MAX_NEW_ROWS_PER_SCRAPE = 100_000
# A failed count (locked, corrupt) is retried after this pause.
RETRY_SECONDS = 5.0
# stat() errors that mean "no file here"; any other (a symlink loop, a directory without x) is "unreadable".
MISSING_ERRNOS = (errno.ENOENT, errno.ENOTDIR)

# A scrape's whole read as one statement, hence one snapshot: a first row of figures (page counts
# from the header, the rest from the timestamp, primary-key and sync_status indexes), then one row
# per event type among the rows with ids in (?, ?]. `+type` keeps SQLite on the rowid range instead
# of walking the whole type index.
OLDEST_PENDING_SQL = ("SELECT timestamp FROM events WHERE id = "
                      "(SELECT min(id) FROM events WHERE sync_status = 'pending')")
SCRAPE_SQL = f"""
SELECT 'figures', p.page_count, s.page_size, f.freelist_count,
       (SELECT max(timestamp) FROM events), (SELECT min(timestamp) FROM events),
       (SELECT coalesce(max(id), 0) FROM events), ({OLDEST_PENDING_SQL})
FROM pragma_page_count() AS p, pragma_page_size() AS s, pragma_freelist_count() AS f
UNION ALL
SELECT 'rows', type, count(*), NULL, NULL, NULL, NULL, NULL FROM events WHERE id > ? AND id <= ? GROUP BY +type
"""


def classify_error(exc: sqlite3.Error) -> str:
    message = str(exc).lower()
    if "locked" in message or "busy" in message:
        return "locked"
    if "not a database" in message or "malformed" in message or "corrupt" in message:
        return "corrupt"
    return "unreadable"


@dataclass
class Integrity:
    identity: tuple[int, int]
    ok: bool
    timestamp: float
    duration: float


class Reader:
    """Opens the database read-only for each read and closes it again.

    Holding nothing between reads matters: in WAL mode an open connection keeps a
    shared lock on the file, which would stop the app (or a maintenance job) from
    ever taking an exclusive lock. Opening costs about 0.3 ms (measured).
    """

    def __init__(self, path: Path, busy_timeout_ms: int, cache_kib: int | None = None):
        self.path = path
        self.busy_timeout = busy_timeout_ms / 1000
        self.cache_kib = cache_kib

    def stat(self) -> tuple[os.stat_result | None, str]:
        """The file's stat and its state when that already says it: "missing", "unreadable" or "" (look inside)."""
        try:
            return os.stat(self.path), ""
        except OSError as exc:
            return None, "missing" if exc.errno in MISSING_ERRNOS else "unreadable"

    def read(self, queries):
        """Run `queries(conn)` on a fresh read-only connection; a read that a writer may have raced
        (the file opened immutable, then touched) raises "database is locked" to be retried."""
        mode = read_mode(self.path)
        before = file_state(self.path) if mode == IMMUTABLE else None
        if before is not None and write_locked(self.path):
            raise sqlite3.OperationalError("database is locked (a writer holds the exclusive lock)")
        conn = connect_readonly(self.path, timeout=self.busy_timeout, mode=mode)
        try:
            if self.cache_kib:
                conn.execute(f"PRAGMA cache_size=-{self.cache_kib}")
            result = queries(conn)
        finally:
            conn.close()
        if before is not None and file_state(self.path) != before:
            raise sqlite3.OperationalError("database is locked (written during an immutable read)")
        return result


class DatabaseWatcher:
    """State shared by the database and event-queue collectors: the ingest cursor and the background counts."""

    def __init__(self, config: Config):
        settings = config.collectors.database
        self.path = config.devflow.database_path
        self.backup_status_file = Path(config.backup.status_file).expanduser()
        self.counts_interval = settings.counts_interval_seconds
        # Appended to the HELP of every metric that comes from the background count.
        self.cached_help = (f" Counted in the background every {self.counts_interval:g}s (the rows added since; all "
                            f"rows at least every {FULL_RECOUNT_SECONDS / 3600:g}h), not per scrape.")
        self.integrity_interval = settings.integrity_interval_seconds
        self.quick_integrity_check = settings.integrity_check == "quick"
        self.labels = TypeLabels(settings.max_event_types)
        self.scrape_reader = Reader(self.path, settings.busy_timeout_ms)
        # Full counts stream through the table once: a big page cache would only raise the exporter's RSS.
        self.background_reader = Reader(self.path, settings.busy_timeout_ms, cache_kib=256)
        # `lock` guards counts, integrity, ingested, cursor, identity and oldest_pending_ms.
        self.lock = threading.Lock()
        self.counts = Counts()
        self.integrity: Integrity | None = None
        # Ingest counter: totals since the exporter first saw the file, and the last id folded into them.
        self.ingested: dict[str, int] = {}
        self.cursor = 0
        self.identity: tuple[int, int] | None = None  # the file the ingest cursor belongs to
        self.oldest_pending_ms = None  # from the last scrape read, for the event-queue collector
        # Set by a scrape that sees a new file (or none), so the worker counts it without waiting for its deadline.
        self._wake = threading.Event()
        # One worker however many collectors list it: Worker.start is idempotent.
        self.worker = Worker("database-counts", self._count_on_schedule, wake=self._wake)

    # --- background work -------------------------------------------------------------------
    def _count_on_schedule(self, stopping: threading.Event) -> None:
        next_counts = next_integrity = 0.0
        seen = None  # (device, inode) of the file last looked at
        while not stopping.is_set():
            timeout = None  # no file: sleep until a scrape sees one
            st, _ = self.background_reader.stat()
            identity = (st.st_dev, st.st_ino) if st else None
            if identity != seen:
                # A new file at the path (first sight, or a restore): count and check it now.
                seen = identity
                next_counts = next_integrity = time.monotonic()
            if identity is not None:
                if time.monotonic() >= next_counts:
                    ok, duration = self._refresh_counts(identity)
                    # At most a tenth of the time goes to counting, however big the table grows.
                    next_counts = time.monotonic() + max(self.counts_interval if ok else RETRY_SECONDS,
                                                         10 * duration)
                if self.integrity_interval and time.monotonic() >= next_integrity and not stopping.is_set():
                    ok = self._check_integrity(identity)
                    next_integrity = time.monotonic() + (self.integrity_interval if ok else RETRY_SECONDS)
                due = min(next_counts, next_integrity) if self.integrity_interval else next_counts
                timeout = max(0.0, due - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()

    def _refresh_counts(self, identity: tuple[int, int]) -> tuple[bool, float]:
        """Bring the counts up to date (see `dbcounts`); returns (success, seconds spent)."""
        started = time.perf_counter()
        with self.lock:
            previous = self.counts if self.counts.identity == identity else Counts()
        files = file_state(self.path)
        if previous.timestamp and files == previous.files:
            with self.lock:  # nothing was written: the figures stand, as of now
                self.counts = replace(previous, timestamp=time.time())
            return True, time.perf_counter() - started
        full = not previous.timestamp or time.monotonic() - previous.full_at > FULL_RECOUNT_SECONDS
        try:
            counts = self.background_reader.read(lambda conn: count_rows(conn, previous, full, self.labels))
        except sqlite3.Error as exc:
            log.debug("background count failed: %s", exc)
            return False, time.perf_counter() - started
        counts.identity, counts.files = identity, files
        counts.timestamp, counts.duration = time.time(), time.perf_counter() - started
        with self.lock:
            self.counts = counts
        return True, counts.duration

    def _check_integrity(self, identity: tuple[int, int]) -> bool:
        """Run the scheduled check; False when it could not run (locked, unreadable): retried soon."""
        started = time.perf_counter()
        try:
            errors = self.background_reader.read(lambda c: integrity_errors(c, quick=self.quick_integrity_check))
        except sqlite3.Error as exc:
            if classify_error(exc) != "corrupt":
                # A lock or an unreadable file says nothing about integrity: no result rather than a false alarm.
                log.info("integrity check of %s could not run: %s", self.path, exc)
                return False
            errors = [str(exc)]
        if errors:
            log.warning("integrity check of %s failed: %s", self.path, errors[:3])
        with self.lock:
            self.integrity = Integrity(identity, not errors, time.time(), time.perf_counter() - started)
        return True

    # --- per-scrape reads --------------------------------------------------------------------
    def read_scrape(self) -> dict:
        """Everything cheap about the database, in one statement."""
        st, state = self.scrape_reader.stat()
        result: dict = {"files": self._file_sizes(st), "filesystem": self._filesystem()}
        if st is None:
            self._wake.set()  # the background count sleeps until the file is back
            return self._with_state(result, state, None)
        identity = (st.st_dev, st.st_ino)
        with self.lock:
            read_from = self.cursor if identity == self.identity else None

        if read_from is None:  # first sight of this file: the rows already there are not "new"
            low = high = 0
        else:
            low, high = read_from, read_from + MAX_NEW_ROWS_PER_SCRAPE
        try:
            rows = self.scrape_reader.read(lambda conn: conn.execute(SCRAPE_SQL, (low, high)).fetchall())
            figures = next(row[1:] for row in rows if row[0] == "figures")
            (pages, page_size, freelist, newest, oldest, max_id, oldest_pending) = figures
            new_rows = [row[1:3] for row in rows if row[0] == "rows"]
        except sqlite3.Error as exc:
            state = classify_error(exc)
            log.debug("database read failed (%s): %s", state, exc)
            return self._with_state(result, state, identity)
        with self.lock:
            self.oldest_pending_ms = oldest_pending
            self._advance_ingest(identity, read_from, new_rows, max_id)
        if read_from is None:
            self._wake.set()  # a new file: let the background thread count it now
        result.update(pages=pages, page_size=page_size, freelist=freelist, newest_ms=newest, oldest_ms=oldest)
        return self._with_state(result, "ok", identity)

    def _advance_ingest(self, identity, read_from: int | None, new_rows: list, max_id: int) -> None:
        """Fold the rows read since the cursor into the totals; call with the lock held."""
        if read_from is None or max_id < self.cursor:
            # First sight of this file, or another file at the path (a restore): keep the totals,
            # count what is written from now on.
            self.identity, self.cursor = identity, max_id
            return
        for event_type, n in new_rows:
            label = self.labels(event_type)
            self.ingested[label] = self.ingested.get(label, 0) + n
        # Every id up to here was read in this snapshot, also across a gap in the ids.
        self.cursor = max(self.cursor, min(max_id, read_from + MAX_NEW_ROWS_PER_SCRAPE))

    def read_outbox(self, query: bool) -> dict:
        """Outbox counts from the background count, and the oldest pending row: from this scrape's
        database read, or (`query`, when the database collector is off) from one index look-up."""
        oldest = self.oldest_pending_ms
        if query and self.scrape_reader.stat()[0] is not None:
            try:
                oldest = self.scrape_reader.read(lambda c: c.execute(OLDEST_PENDING_SQL).fetchone()[0])
            except (sqlite3.Error, TypeError):
                oldest = None
        st, _ = self.scrape_reader.stat()
        with self.lock:
            counts = self.counts if st and self.counts.identity == (st.st_dev, st.st_ino) else Counts()
            return {"counts": dict(counts.outbox), "refreshed": counts.timestamp, "oldest_pending_ms": oldest}

    def _with_state(self, result: dict, state: str, identity: tuple[int, int] | None) -> dict:
        """Add the state and the background results that describe this very file, readable now."""
        with self.lock:
            if state != "ok":
                self.oldest_pending_ms = None
            current = identity is not None and state in ("ok", "locked", "corrupt")
            counts = self.counts if current and self.counts.identity == identity else Counts()
            integrity = self.integrity if current and self.integrity and self.integrity.identity == identity else None
            result.update(state=state, counts=counts, integrity=integrity, ingested=dict(self.ingested))
        return result

    def _file_sizes(self, st: os.stat_result | None) -> dict[str, int]:
        sizes = {"db": st.st_size if st else 0}
        for name, suffix in (("wal", "-wal"), ("shm", "-shm")):
            try:
                sizes[name] = os.stat(f"{self.path}{suffix}").st_size
            except OSError:
                sizes[name] = 0
        return sizes

    def _filesystem(self) -> tuple[int, int] | None:
        """Free and total bytes where the database is (or will be: the nearest existing parent)."""
        try:
            return disk_usage(self.path)
        except OSError:
            return None

    def backup_status(self) -> dict | None:
        """The last recorded backup of this database only (core/backup_status.py): a backup of another
        database, or a status that names none (an older one), must not keep this one's stale alert quiet."""
        return backup_status.last_success(self.backup_status_file, self.path)

