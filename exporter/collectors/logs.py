"""logs: tails DevFlow's log files and counts records by level; the access log gives HTTP figures.

This module is the reader: it finds the files, follows them through rotation
and counts what is new. The line formats are in core/logformat.py, the
positions, counters and state file in exporter/logstate.py.

When lines are read (issue 12): a started collector reads what was appended
at each scrape. collect() first runs a pass (at most SCRAPE_READ_BUDGET_BYTES
per file; a larger backlog is left to the background thread), then copies the
counters; that pass also catches whatever an event missed (an overflowed inotify
queue). Nothing is subscribed for appends: inotify's IN_MODIFY fires for every
line the app writes, and a pass per wake-up cost 14 CPU-s/h and 2,850 wake-ups
a minute with the simulator at 5 events/s, for counts that nobody reads before
the scrape. A background thread sleeps until watchdog reports what needs a prompt
reaction in a watched directory: one of our logs, or a rotated copy of one
(server.log.1, .gz), created, renamed or deleted. So a deleted log is released at
once, and a copytruncate is seen as it happens: its copy is created before the
truncation, so that pass reads the live file to its end or, if it comes just
after, finds the rest in the complete copy. The same thread writes the state
file (at most once a minute, after a scrape that read something), and polls
every poll_interval_seconds only where inotify is unavailable. A copy made in
another directory (logrotate's olddir) wakes nothing and cannot be read: the
truncation is seen at the next scrape, and the lines written between the last
pass and the copy are lost and counted as a truncated_unread read error. A copy
compressed and removed at once (compress without delaycompress) may be gone too
when the truncation is seen; the pass its creation woke has read the file to its
end, but as nothing shows that no line came in between, truncated_unread is
counted all the same.

Rotation: rename-and-create (logrotate's default) is seen as a new inode at the
path. The app may never reopen its log: DevFlow's Node server has no SIGUSR1
handler, and launchd keeps stdout/stderr open, so it goes on writing to the
renamed file. The old file is therefore read by its open descriptor for as long
as it is written to, and closed only once the app has moved on (the new file
has grown since the rotation and the old one has been quiet for a few seconds),
after a day without a write, or when more than MAX_ROTATED pile up. A deleted
file is closed as soon as it is read to its end, in the same pass, so that its
disk space is freed.

Truncation is seen as the file shrinking, or its bytes before our offset
changing. If the file still starts with the bytes we read, it was cut shorter
(`truncate -s`): what is left was counted already, so reading goes on from the
cut. Otherwise it was emptied and written anew (copytruncate, also when the
truncated file was then renamed away): it is read again from its start, and the
lines we had not read yet are taken from the uncompressed copy when it is there,
and counted as a read error (truncated_unread) when it is not. Compressed files
(.gz, ...) are never read.

Read offsets and the counters are saved together in the state file, so a
restarted exporter continues its totals exactly: it neither recounts a 1 GB log
nor skips what was written while it was down. A saved position that cannot be
finished (the file is gone) is a read error, never silent.

With more than MAX_FILES globbed files (dated audit logs), the most recently
modified are read; one fully read and idle makes room for a newer one, and
continues its totals if it is written to again.

Sample output:

    devflow_log_lines_total{file="/var/log/devflow/server.log",level="error"} 3.0
    devflow_log_protocol_messages_total{file="/tmp/devflow-monitor.out"} 212.0
    devflow_log_read_bytes_total{file="/var/log/devflow/server.log"} 18231.0
    devflow_log_rotations_total{file="/var/log/devflow/server.log",kind="rename"} 1.0
    devflow_http_requests_total{code="2xx"} 1042.0
    devflow_http_request_duration_seconds_bucket{le="0.1"} 1017.0
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import logging
import os
import re
import stat
import threading
import time
from pathlib import Path

from devflow_monitor.core import catalog
from devflow_monitor.core.config import Config
from devflow_monitor.core.files import write_json_atomic
from devflow_monitor.core.logformat import (ERROR_LEVELS, PROTOCOL, AccessLogParser, HttpTotals, LevelCounter,
                                                invalid_utf8_lines, is_compressed, rotated_from)
from devflow_monitor.exporter.collectors.base import Collector
from devflow_monitor.exporter.logstate import (FINGERPRINT_BYTES, Reader, TailedFile, load_state,
                                               state_document)

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 20  # a longer line is counted by its start and skipped, so memory stays bounded
LINE_HEAD_BYTES = 4096  # how much of an over-long line is kept to read its level
READ_BUDGET_BYTES = 64 << 20  # per file per pass, so one huge backlog does not starve the other files
SCRAPE_READ_BUDGET_BYTES = 8 << 20  # per file in a scrape's pass: about 30 ms of reading; the thread reads the rest
ROTATE_WAIT_SECONDS = 5.0  # quiet time after which a renamed-away file is closed, once the app writes elsewhere
ROTATED_IDLE_SECONDS = 86400.0  # a renamed-away file nobody wrote to for a day is closed even if the app never moved
MAX_ROTATED = 8  # renamed-away files kept open per path; beyond, the longest quiet is closed
# A crash re-reads at most this much of the logs (offsets and counters are saved together, so totals
# stay exact); each write is two fsyncs, which were half the reader's wake-ups at 5 s.
STATE_INTERVAL_SECONDS = 60.0
MIN_PASS_GAP_SECONDS = 0.05  # a burst of inotify events (rename, then create) wakes the reader once
MAX_FILES = 64  # files tracked at once; of more globbed ones, the most recently modified (with a warning)


class LogsCollector(Collector):
    """Counts log records by file and level, and access-log requests; see the module docstring."""

    name = "logs"

    def __init__(self, config: Config):
        super().__init__()
        settings = config.collectors.logs
        self._patterns = [os.path.expanduser(p) for p in config.devflow.log_files]
        self._access_path = os.path.expanduser(config.devflow.access_log) if config.devflow.access_log else None
        self._state_path = Path(settings.state_file).expanduser() if settings.state_file else None
        self._poll = max(0.05, float(settings.poll_interval_seconds))  # only where inotify is unavailable
        self._rotate_wait = max(ROTATE_WAIT_SECONDS, 2 * self._poll)
        self._access = AccessLogParser(settings.access_log_pattern) if self._access_path else None
        # _pass_lock: one pass at a time (the reader thread's, or a scrape's); its holder owns the reader
        # state, which is everything but the counters, the Events and _last_pass_failed.
        # _lock guards what collect() copies while a pass writes it: _files (the dict; each TailedFile's
        # counters, see logstate) and _http. Order: _pass_lock, then _lock. The two Events are thread-safe.
        self._pass_lock = threading.Lock()
        self._lock = threading.Lock()
        self._files: dict[str, TailedFile] = {}
        self._http = HttpTotals() if self._access_path else None
        self._levels = LevelCounter()  # its level-word cache is the pass's
        self._saved: dict[str, dict] = (load_state(self._state_path, self._http) if self._state_path
                                        else {})  # by path, for files not tracked (yet, or any more)
        self._last_pass_failed = False  # set by a pass, read by `healthy`: one bool, no lock needed
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer = None
        self._watched_dirs: set[str] = set()
        self._must_poll = False  # a directory (or all) without inotify: the reader thread polls
        self._warned: set[str] = set()
        self._state_written = 0.0
        self._dirty = False  # counters changed since the state file was written
        all_patterns = self._patterns + ([self._access_path] if self._access_path else [])
        self._event_filter = re.compile("|".join(fnmatch.translate(p) for p in all_patterns) or "(?!)")

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._watched_dirs = set()  # a new observer watches nothing yet
        self._must_poll = False
        self._start_observer()
        self._thread = threading.Thread(target=self._run, name="logs-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        if self._thread is not None:
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                # Still inside a read (a stuck filesystem): closing its files under it would corrupt state.
                log.warning("log reader did not stop within 30 s; offsets not saved")
                return
            self._thread = None
        self.close()

    def close(self) -> None:
        """Save the state and close every file (stop() does this; a bare read_once() user calls it).

        The positions stay in memory, so a later start() or read_once() continues from them.
        """
        with self._pass_lock:  # a scrape's pass may still be running
            self._save_state()
            for tailed in self._files.values():
                tailed.release()

    def _run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            self._wake.clear()  # before reading: a change made during the pass wakes the next one
            with self._pass_lock:
                self._pass(READ_BUDGET_BYTES)
                if self._state_due():
                    self._save_state()
            self._wake.wait(self._sleep_seconds())
            gap = MIN_PASS_GAP_SECONDS - (time.monotonic() - started)
            if gap > 0:
                self._stopping.wait(gap)

    def _sleep_seconds(self) -> float | None:
        """How long the reader thread sleeps unless woken: for ever, unless polling or the state file is due."""
        due = []
        if self._must_poll:
            due.append(self._poll)
        if self._dirty:
            due.append(max(0.0, STATE_INTERVAL_SECONDS - (time.monotonic() - self._state_written)))
        return min(due, default=None)

    def _read_at_scrape(self) -> None:
        """A started collector reads what was appended since the last pass, then collect() copies the counters."""
        if self._thread is None or self._stopping.is_set():
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
        return self._dirty and time.monotonic() - self._state_written >= STATE_INTERVAL_SECONDS

    def _pass(self, budget: int) -> None:
        try:
            self.read_once(budget)
        except Exception:  # a bug must not end the reader or fail the scrape; the next pass retries
            self._last_pass_failed = True
            log.exception("logs: reading pass failed")

    def read_once(self, budget: int = READ_BUDGET_BYTES) -> None:
        """One pass: find the files, notice rotations, read what is new (at most `budget` bytes a file).

        Used by the thread, by collect() and by the bench; the caller holds _pass_lock or runs no thread.
        """
        self._watch_new_dirs()
        wanted, cut = self._discover()
        self._evict(cut)
        for path, explicit, access in wanted:
            if path not in self._files:
                tailed = TailedFile(path, explicit, access)
                saved = self._saved.pop(path, None)
                if saved is not None and not tailed.restore(saved):
                    self._warn_once("state:" + path, "logs: ignoring malformed state of %s", path)
                with self._lock:
                    self._files[path] = tailed
        failed = False
        for tailed in list(self._files.values()):
            if self._stopping_now():
                return
            try:
                self._poll_file(tailed, budget)
                self._drain_rotated(tailed, budget)
            except Exception as exc:  # one file's failure must not stop the others
                failed = self._file_failed(tailed, exc) or failed
        self._forget_vanished_globbed()
        self._last_pass_failed = failed

    # --- finding files ---------------------------------------------------------------------------

    def _discover(self) -> tuple[list[tuple[str, bool, bool]], set[str]]:
        """(path, explicit, is_access_log) for every file to read now, bounded by MAX_FILES; and the paths cut.

        Explicit paths always; of more globbed files than fit, the ones still being
        read, then the most recently modified (today's dated log, not the oldest).
        """
        found: dict[str, tuple[bool, bool]] = {}
        if self._access_path:
            found[self._access_path] = (True, True)
        for pattern in self._patterns:
            if not glob.has_magic(pattern):
                found.setdefault(pattern, (True, False))
                continue
            for path in sorted(glob.glob(pattern)):
                name = os.path.basename(path)
                if is_compressed(name) or rotated_from(name) or os.path.isdir(path):
                    continue
                found.setdefault(path, (False, False))
        found = {p: v for p, v in found.items() if not is_compressed(p)}
        globbed = [p for p, (explicit, _) in found.items() if not explicit]
        room = max(0, MAX_FILES - (len(found) - len(globbed)))
        cut: set[str] = set()
        if len(globbed) > room:
            self._warn_once("max_files", "logs: more than %d files match; reading the %d most recently modified",
                            MAX_FILES, room)
            busy = {p for p in globbed if p in self._files and self._files[p].busy()}
            globbed.sort(key=lambda p: (p not in busy, -_mtime(p)))
            cut = set(globbed[room:])
            found = {p: v for p, v in found.items() if p not in cut}
        return [(p, *v) for p, v in found.items()], cut

    def _evict(self, paths: set[str]) -> None:
        """Stop reading globbed files cut by MAX_FILES; their totals and positions wait in _saved."""
        for path in paths:
            tailed = self._files.get(path)
            if tailed is None:
                continue
            tailed.release()
            with self._lock:
                del self._files[path]
                self._saved[path] = tailed.to_state()
            self._dirty = True

    def _forget_vanished_globbed(self) -> None:
        """Drop series of globbed files that are gone and fully read (dated files would grow labels forever)."""
        for path, tailed in list(self._files.items()):
            if tailed.explicit or tailed.reader or tailed.rotated or os.path.lexists(path):
                continue
            with self._lock:
                del self._files[path]
            self._dirty = True

    # --- reading one path ------------------------------------------------------------------------

    def _poll_file(self, tailed: TailedFile, budget: int) -> None:
        try:
            st = os.stat(tailed.path)
        except FileNotFoundError:
            self._path_gone(tailed)
            return
        except OSError as exc:
            self._problem(tailed, _reason(exc))
            return
        if not stat.S_ISREG(st.st_mode):
            self._problem(tailed, "not_a_file")
            if tailed.reader is not None:  # the path was replaced: finish the file we had
                self._retire(tailed, None)
            with self._lock:
                tailed.size = tailed.mtime = None
            return
        reader = tailed.reader
        if reader is not None and (reader.dev, reader.ino) != (st.st_dev, st.st_ino):
            self._retire(tailed, "rename")
            reader = None
        if reader is None:
            reader = self._open(tailed)
            if reader is None:
                return
        elif st.st_size < reader.pos or (st.st_size != tailed.last_seen_size and not reader.fingerprint_holds()):
            self._truncated(tailed, reader)
        with self._lock:
            tailed.size, tailed.mtime = st.st_size, st.st_mtime
        tailed.last_seen_size = st.st_size
        if tailed.problem != "io_error":  # stat and open work again: a new failure counts anew
            tailed.problem = None
        got = self._read(tailed, reader, budget)
        if got:
            tailed.path_bytes += got
            tailed.problem = None

    def _open(self, tailed: TailedFile) -> Reader | None:
        try:
            fd = os.open(tailed.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            self._problem(tailed, _reason(exc))
            return None
        try:
            opened = os.fstat(fd)
            regular = stat.S_ISREG(opened.st_mode)
            if regular:
                reader = Reader(fd, opened)
                self._resume(tailed, reader)
        except BaseException:
            os.close(fd)  # a failed resume must not leak the descriptor
            raise
        if not regular:
            os.close(fd)
            self._problem(tailed, "not_a_file")
            return None
        tailed.reader = reader
        tailed.last_seen_size = opened.st_size
        return reader

    def _resume(self, tailed: TailedFile, reader: Reader) -> None:
        """Continue where the last run stopped, also in files rotated away meanwhile."""
        saved, tailed.saved_reader = tailed.saved_reader, None
        rotated, tailed.saved_rotated = tailed.saved_rotated, []
        if saved and reader.resume_at(saved):
            if reader.truncated():
                self._truncated(tailed, reader)
            elif not reader.head:
                reader.read_head()
        elif saved:  # another file at the path: ours was renamed away while we were down
            rotated.insert(0, saved)
            with self._lock:
                tailed.rotations["rename"] += 1
        for position in rotated:
            self._adopt_rotated(tailed, position)

    def _adopt_rotated(self, tailed: TailedFile, saved: dict) -> None:
        """Find a file of the state file renamed away by rotation (same inode) and finish it from its offset."""
        for _, path, st in _uncompressed_files(os.path.dirname(tailed.path)):
            if st.st_ino != saved["inode"] or path == tailed.path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue
            reader, ours = Reader(fd, os.fstat(fd)), False
            try:
                ours = reader.resume_at(saved)
            finally:
                if not ours:  # another file, or a position it cannot take: never leak the descriptor
                    reader.close()
            if ours:
                tailed.rotated.append(reader)  # _drain_rotated checks it for truncation, then reads it
                return
        self._count_error(tailed, "vanished")  # what was written to it after our offset is lost

    def _path_gone(self, tailed: TailedFile) -> None:
        """The path does not exist: rotation in progress (renamed) or the file was deleted."""
        with self._lock:
            tailed.size = tailed.mtime = None
        if tailed.reader is None:
            return
        try:
            deleted = os.fstat(tailed.reader.fd).st_nlink == 0
        except OSError:
            deleted = True
        if deleted:
            self._problem(tailed, "vanished")
        self._retire(tailed, None if deleted else "rename")

    def _retire(self, tailed: TailedFile, kind: str | None) -> None:
        """The path now names another file (or none): _drain_rotated reads ours on until the app moves on."""
        reader = tailed.reader
        tailed.reader = None
        reader.last_growth = time.monotonic()
        reader.path_bytes_at_rotation = tailed.path_bytes
        tailed.rotated.append(reader)
        if len(tailed.rotated) > MAX_ROTATED:
            self._close_rotated(tailed, min(tailed.rotated, key=lambda r: r.last_growth))
        if kind:
            with self._lock:
                tailed.rotations[kind] += 1
        self._dirty = True

    def _drain_rotated(self, tailed: TailedFile, budget: int) -> None:
        """Read the renamed-away files; close one once the app writes elsewhere and it has been quiet,
        or as soon as it is deleted and read to its end."""
        now = time.monotonic()
        for reader in list(tailed.rotated):
            if reader.truncated():  # e.g. copytruncate, then renamed away before we looked
                self._truncated(tailed, reader)
            if self._read(tailed, reader, budget):
                reader.last_growth = now
            if self._stopping_now():  # the reader stays in the state file, so the next run finishes it
                continue
            quiet = now - reader.last_growth
            moved_on = tailed.path_bytes > reader.path_bytes_at_rotation
            if ((moved_on and quiet >= self._rotate_wait) or quiet >= ROTATED_IDLE_SECONDS
                    or reader.deleted_and_drained()):
                self._close_rotated(tailed, reader)

    def _close_rotated(self, tailed: TailedFile, reader: Reader) -> None:
        self._finish(tailed, reader)
        tailed.rotated.remove(reader)
        reader.close()

    def _stopping_now(self) -> bool:
        return self._stopping.is_set() and self._thread is not None

    def _finish(self, tailed: TailedFile, reader: Reader) -> None:
        """A rotated file is done: its last line may lack a newline, count it anyway."""
        if not reader.skipping and len(reader.pending) > 1:
            self._consume(tailed, reader, b"\n", from_file=False)

    def _truncated(self, tailed: TailedFile, reader: Reader) -> None:
        """The file shrank or its bytes before our offset changed: see the module docstring."""
        if reader.head_kept():
            if not reader.continue_after_cut():
                self._count_error(tailed, "truncated_unread")  # regrown past our offset before we saw the cut
        else:
            if reader.consumed > 0 and not self._read_from_copy(tailed, reader):
                self._count_error(tailed, "truncated_unread")  # what was written after our offset may be lost
            reader.restart()
        with self._lock:
            tailed.rotations["truncate"] += 1
        self._dirty = True

    def _read_from_copy(self, tailed: TailedFile, reader: Reader) -> bool:
        """Find the uncompressed copy (same bytes before our offset) and count its lines after the offset."""
        directory, base = os.path.split(tailed.path)
        candidates = [(st.st_mtime, path) for name, path, st in _uncompressed_files(directory)
                      if name != base and name.startswith(base)
                      and st.st_ino != reader.ino and st.st_size >= reader.consumed]
        for _, path in sorted(candidates, reverse=True):
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue
            copy = Reader(fd, os.fstat(fd), reader.consumed, reader.skipping, reader.fingerprint)
            try:
                if copy.fingerprint_holds():
                    self._read(tailed, copy, budget=None)
                    self._finish(tailed, copy)
                    return True
            finally:
                copy.close()
        return False

    def _read(self, tailed: TailedFile, reader: Reader, budget: int | None) -> int:
        """Read and count what is new in the reader's file; returns how many bytes were read."""
        total = 0
        while budget is None or total < budget:
            try:
                data = os.read(reader.fd, CHUNK_BYTES)
            except OSError as exc:
                self._problem(tailed, _reason(exc))
                return total
            if not data:
                return total
            total += len(data)
            self._consume(tailed, reader, data)
        self._wake.set()  # budget used up: come back soon for the rest
        return total

    def _consume(self, tailed: TailedFile, reader: Reader, data: bytes, from_file: bool = True) -> None:
        """Count the complete lines of pending + data; keep the incomplete last line for later.

        Bytes count as their lines are consumed: the saved offset is a line start,
        so a half-written last line is counted once, when it is complete.
        """
        levels: dict[str, int] = {}
        errors: dict[str, int] = {}
        consumed = reader.consumed
        if from_file:
            reader.keep_head(data)
            reader.pos += len(data)
        if reader.skipping:
            newline = data.find(b"\n")
            if newline < 0:
                reader.remember(data)
                self._account(tailed, reader.consumed - consumed, levels, errors)
                return
            reader.remember(data[max(0, newline + 1 - FINGERPRINT_BYTES):newline + 1])
            reader.skipping = False
            buf = data[newline:]
        else:
            buf = reader.pending + data
        cut = buf.rfind(b"\n")
        if cut > 0:
            self._count_lines(tailed, buf, cut + 1, levels, errors)
            # buf[0] is the previous newline (remembered already) or a stand-in at offset 0.
            reader.remember(buf[max(1, cut + 1 - FINGERPRINT_BYTES):cut + 1])
        pending = buf[cut:]
        if len(pending) > MAX_LINE_BYTES:
            # Count the over-long line by its start, then drop it up to its newline.
            if not tailed.access:
                _add(levels, self._levels.count(pending, 0, LINE_HEAD_BYTES))
            errors["line_too_long"] = errors.get("line_too_long", 0) + 1
            reader.remember(pending)
            pending = b"\n"
            reader.skipping = True
        reader.pending = pending
        error_time = None
        if any(levels.get(level) for level in ERROR_LEVELS):
            error_time = _written_by(reader.fd)
        self._account(tailed, reader.consumed - consumed, levels, errors, error_time)

    def _count_lines(self, tailed: TailedFile, buf: bytes, end: int, levels: dict, errors: dict) -> None:
        bad = invalid_utf8_lines(buf, 1, end)
        if bad:
            errors["invalid_utf8"] = bad
        if tailed.access:
            totals, unmatched = self._access.parse(buf, 1, end - 1)
            with self._lock:
                self._http.merge(totals)
            if unmatched:
                errors["access_line_unparsed"] = unmatched
        else:
            _add(levels, self._levels.count(buf, 0, end))

    def _account(self, tailed: TailedFile, nbytes: int, levels: dict, errors: dict,
                 error_time: float | None = None) -> None:
        with self._lock:
            tailed.bytes += nbytes
            tailed.protocol_messages += levels.pop(PROTOCOL, 0)
            for level, n in levels.items():
                tailed.lines[level] += n
            for reason, n in errors.items():
                tailed.read_errors[reason] += n
            if error_time is not None and (tailed.last_error is None or error_time > tailed.last_error):
                tailed.last_error = error_time
        self._dirty = True

    # --- errors ------------------------------------------------------------------------------------

    def _file_failed(self, tailed: TailedFile, exc: Exception) -> bool:
        """Reading one file failed unexpectedly: count it; True when it is a bug rather than an OS error."""
        bug = not isinstance(exc, OSError)
        reason = "io_error" if bug else _reason(exc)
        if tailed.problem != reason:  # a failure that repeats every pass is logged once
            log.warning("logs: reading %s failed: %r", tailed.path, exc, exc_info=bug)
        self._problem(tailed, reason)
        return bug

    def _problem(self, tailed: TailedFile, reason: str) -> None:
        """A lasting condition (permission denied, a directory at the path) counts once per occurrence."""
        if tailed.problem != reason:
            tailed.problem = reason
            self._count_error(tailed, reason)

    def _count_error(self, tailed: TailedFile, reason: str) -> None:
        with self._lock:
            tailed.read_errors[reason] += 1
        self._dirty = True
        log.debug("logs: %s: %s", tailed.path, reason)

    def _warn_once(self, key: str, message: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    # --- state file --------------------------------------------------------------------------------

    def _save_state(self) -> None:
        """Write offsets and counters together, atomically."""
        self._state_written = time.monotonic()
        if self._state_path is None:
            return
        # Keep what we saved for files not seen yet this run (their directory may appear later).
        files = {path: saved for path, saved in self._saved.items() if os.path.lexists(path)}
        with self._lock:
            files.update({path: tailed.to_state() for path, tailed in self._files.items()})
            state = state_document(files, self._http)
        self._dirty = False
        try:
            write_json_atomic(self._state_path, state, indent=None)
        except OSError as exc:
            self._warn_once("state", "logs: cannot write state file %s: %s", self._state_path, exc)

    # --- watchdog ----------------------------------------------------------------------------------

    def _start_observer(self) -> None:
        try:
            from watchdog.observers import Observer
            self._observer = Observer()
            self._observer.start()
        except Exception as exc:  # no inotify, limits reached: the periodic stat still reads everything
            self._warn_once("watchdog", "logs: file events unavailable (%s); polling every %ss", exc, self._poll)
            self._observer = None
            self._must_poll = True
            return
        self._watch_new_dirs()

    def _watch_new_dirs(self) -> None:
        """Watch the directory of every pattern once it exists (a missing /var/log/devflow may appear later)."""
        if self._observer is None:
            return
        from watchdog import events
        wanted = [_static_dir(p) for p in self._patterns + ([self._access_path] if self._access_path else [])]
        for directory, recursive in wanted:
            if directory in self._watched_dirs or not os.path.isdir(directory):
                continue
            try:
                # Creations, renames and deletions only: no IN_MODIFY (a line), IN_ATTRIB or IN_CLOSE_WRITE.
                self._observer.schedule(_Wakeup(self._event_filter, self._wake, recursive), directory,
                                        recursive=recursive,
                                        event_filter=[events.FileCreatedEvent, events.FileMovedEvent,
                                                      events.FileDeletedEvent, events.DirCreatedEvent,
                                                      events.DirMovedEvent, events.DirDeletedEvent])
            except Exception as exc:  # e.g. inotify watch limit: polling covers this directory
                self._warn_once("watch:" + directory, "logs: cannot watch %s (%s); polling every %ss",
                                directory, exc, self._poll)
                self._must_poll = True
            self._watched_dirs.add(directory)

    # --- scrape ------------------------------------------------------------------------------------

    def collect(self):
        self._read_at_scrape()
        lines, protocol, nbytes = catalog.LOG_LINES.family(), catalog.LOG_PROTOCOL_MESSAGES.family(), \
            catalog.LOG_BYTES.family()
        errors, size, rotations = catalog.LOG_READ_ERRORS.family(), catalog.LOG_FILE_SIZE.family(), \
            catalog.LOG_ROTATIONS.family()
        last_error, modified = catalog.LOG_LAST_ERROR.family(), catalog.LOG_FILE_MODIFIED.family()
        with self._lock:
            for path, tailed in self._files.items():
                if not tailed.access:
                    for level, n in tailed.lines.items():
                        lines.add_metric([path, level], n)
                    protocol.add_metric([path], tailed.protocol_messages)
                nbytes.add_metric([path], tailed.bytes)
                for reason, n in tailed.read_errors.items():
                    errors.add_metric([path, reason], n)
                for kind, n in tailed.rotations.items():
                    rotations.add_metric([path, kind], n)
                if tailed.last_error is not None:
                    last_error.add_metric([path], tailed.last_error)
                if tailed.size is not None:
                    size.add_metric([path], tailed.size)
                    modified.add_metric([path], tailed.mtime)
            http = None
            if self._http is not None:
                durations = self._http.durations
                http = (dict(self._http.requests), durations.cumulative(), durations.sum)
        yield from (lines, protocol, nbytes, last_error, errors, size, rotations, modified)
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
        """False while the background reader's last pass failed (CollectorSet reports it as success 0)."""
        return not self._last_pass_failed


class _Wakeup:
    """watchdog handler: wake the reader when one of our logs, or a rotated copy of one, comes or goes."""

    def __init__(self, matches: re.Pattern, wake: threading.Event, directories: bool):
        self._matches = matches
        self._wake = wake
        self._directories = directories  # a glob with a wildcard directory: new directories matter

    def dispatch(self, event) -> None:
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path and self._concerns(os.fsdecode(path)):
                self._wake.set()
                return
        if event.is_directory and self._directories:
            self._wake.set()

    def _concerns(self, path: str) -> bool:
        directory, name = os.path.split(path)
        live = rotated_from(name)  # server.log for server.log.1: copytruncate's copy, a rotated file deleted
        return bool(self._matches.match(path) or (live and self._matches.match(os.path.join(directory, live))))


def _written_by(fd: int) -> float:
    """When the bytes just read were written at the latest: the file's mtime, never later than now.

    The logs are read at each scrape, so that is the app's last write before the
    scrape: at most a scrape interval after the error (a backlog's error: its
    file's last write), never the time we happened to read it.
    """
    try:
        return min(os.fstat(fd).st_mtime, time.time())
    except OSError:
        return time.time()


def _add(total: dict, more: dict) -> None:
    for key, n in more.items():
        total[key] = total.get(key, 0) + n


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission_denied"
    if exc.errno in (errno.EISDIR, errno.ENOTDIR):
        return "not_a_file"
    if isinstance(exc, FileNotFoundError):
        return "vanished"
    return "io_error"


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _static_dir(pattern: str) -> tuple[str, bool]:
    """The deepest directory of a path or glob without wildcards, and whether to watch below it."""
    parts = Path(pattern).parts
    static = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            return str(Path(*static)) if static else ".", True
        static.append(part)
    return str(Path(*static)) if static else ".", False


def _uncompressed_files(directory: str):
    """(name, path, stat) of the regular, uncompressed files in a directory; nothing if unreadable."""
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return
    for name in names:
        if is_compressed(name):
            continue
        path = os.path.join(directory, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            yield name, path, st
