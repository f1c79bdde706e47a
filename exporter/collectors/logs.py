"""logs: tails DevFlow's log files and counts records by level; the access log gives HTTP figures.

A background thread reads; watchdog wakes it when a watched directory changes
and a periodic stat is the safety net (an inotify queue can overflow, some
filesystems have none). collect() only copies counters under a lock: lines are
counted when they are written, not when Prometheus scrapes.

Rotation: rename-and-create (logrotate's default) is seen as a new inode at the
path. The app may never reopen its log: DevFlow's Node server has no SIGUSR1
handler, and launchd keeps stdout/stderr open, so it goes on writing to the
renamed file. The old file is therefore read by its open descriptor for as long
as it is written to, and closed only once the app has moved on (the new file
has grown since the rotation and the old one has been quiet for a few seconds),
after a day without a write, or when more than MAX_ROTATED pile up. copytruncate
is seen as the file shrinking (or its bytes before our offset changing), also
when the truncated file was then renamed away; the lines we had not read yet
are taken from the uncompressed copy when it is there, and counted as a read
error (truncated_unread) when it is not. Compressed files (.gz, ...) are never
read.

Read offsets and the counters are saved together (atomically) in the state
file, so a restarted exporter continues its totals exactly: it neither recounts
a 1 GB log nor skips what was written while it was down. A file is known again
by its inode and the bytes before the offset (device numbers can change across
reboots). A saved position that cannot be finished (the file is gone) is a read
error, never silent.

With more than MAX_FILES globbed files (dated audit logs), the most recently
modified are read; one fully read and idle makes room for a newer one, and
continues its totals if it is written to again.

Sample output:

    devflow_log_lines_total{file="/var/log/devflow/server.log",level="error"} 3.0
    devflow_log_read_bytes_total{file="/var/log/devflow/server.log"} 18231.0
    devflow_log_rotations_total{file="/var/log/devflow/server.log",kind="rename"} 1.0
    devflow_http_requests_total{code="2xx"} 1042.0
    devflow_http_request_duration_seconds_bucket{le="0.1"} 1017.0
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import json
import logging
import os
import re
import stat
import threading
import time
from pathlib import Path

from devflow_monitor.exporter import catalog
from devflow_monitor.exporter.config import Config
from devflow_monitor.exporter.logformat import (ERROR_LEVELS, LEVELS, AccessLogParser, HttpTotals, LevelCounter,
                                invalid_utf8_lines)

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 20  # a longer line is counted by its start and skipped, so memory stays bounded
LINE_HEAD_BYTES = 4096  # how much of an over-long line is kept to read its level
READ_BUDGET_BYTES = 64 << 20  # per file per pass, so one huge backlog does not starve the other files
ROTATE_WAIT_SECONDS = 5.0  # quiet time after which a renamed-away file is closed, once the app writes elsewhere
ROTATED_IDLE_SECONDS = 86400.0  # a renamed-away file nobody wrote to for a day is closed even if the app never moved
MAX_ROTATED = 8  # renamed-away files kept open per path; beyond, the longest quiet is closed
STATE_INTERVAL_SECONDS = 5.0
MIN_PASS_GAP_SECONDS = 0.05  # a burst of inotify events wakes the reader at most this often
MAX_FILES = 64  # files tracked at once; of more globbed ones, the most recently modified (with a warning)
FINGERPRINT_BYTES = 64  # bytes before the read offset that must not change while we hold it

COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".z", ".zip", ".7z", ".br")
# logrotate's numbered (server.log.1) and dateext (server.log-20250802) names, skipped by globs.
_ROTATED_NAME = re.compile(r"\.\d+$|-\d{8}(\d{2})?$")
READ_ERROR_REASONS = ("permission_denied", "not_a_file", "vanished", "io_error", "line_too_long",
                      "invalid_utf8", "truncated_unread", "access_line_unparsed")
ROTATION_KINDS = ("rename", "truncate")


class _Reader:
    """One open file (one inode) and where we are in it."""

    def __init__(self, fd: int, st: os.stat_result, offset: int = 0, skipping: bool = False,
                 fingerprint: bytes = b""):
        self.fd = fd
        self.dev, self.ino = st.st_dev, st.st_ino
        self.pos = offset  # file offset of the next os.read
        self.pending = b"\n"  # newline that ended the last complete line, then the incomplete line
        self.skipping = skipping  # inside an over-long line: drop bytes up to the next newline
        self.fingerprint = fingerprint  # the file's bytes just before `consumed`
        self.last_growth = time.monotonic()
        self.path_bytes_at_rotation = 0  # _TailedFile.path_bytes when this file was renamed away
        os.lseek(fd, offset, os.SEEK_SET)

    @property
    def consumed(self) -> int:
        """Offset up to which every line has been counted (always a line start)."""
        return self.pos if self.skipping else self.pos - (len(self.pending) - 1)

    def restart(self) -> None:
        self.pos, self.pending, self.skipping, self.fingerprint = 0, b"\n", False, b""
        os.lseek(self.fd, 0, os.SEEK_SET)

    def resume_at(self, saved: dict) -> bool:
        """Take a saved position if it is of this file; else stay at 0.

        The same inode and device, or the same inode and unchanged bytes before
        the offset: device numbers can change across reboots and containers.
        """
        if saved["inode"] != self.ino:
            return False
        self.pos, self.skipping, self.fingerprint = saved["offset"], saved["skipping"], saved["fingerprint"]
        if saved["dev"] == self.dev or self.fingerprint_holds():
            os.lseek(self.fd, self.pos, os.SEEK_SET)
            return True
        self.restart()
        return False

    def truncated(self) -> bool:
        """True when the file shrank below our offset or was truncated and written again (copytruncate)."""
        return os.fstat(self.fd).st_size < self.pos or not self.fingerprint_holds()

    def remember(self, newest: bytes) -> None:
        """Keep the last FINGERPRINT_BYTES before `consumed`; `newest` are the bytes just consumed."""
        self.fingerprint = (self.fingerprint + newest[-FINGERPRINT_BYTES:])[-FINGERPRINT_BYTES:]

    def fingerprint_holds(self) -> bool:
        """False when the bytes before our offset changed: truncated and written again."""
        if not self.fingerprint:
            return True
        start = self.consumed - len(self.fingerprint)
        return os.pread(self.fd, len(self.fingerprint), start) == self.fingerprint

    def position(self) -> dict:
        """Where to continue, as _position() reads it from the state file."""
        return {"dev": self.dev, "inode": self.ino, "offset": self.consumed, "skipping": self.skipping,
                "fingerprint": self.fingerprint}

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class _TailedFile:
    """One configured or globbed path: its counters and the readers of its current and rotated files."""

    def __init__(self, path: str, explicit: bool, access: bool):
        self.path = path
        self.explicit = explicit
        self.access = access
        self.reader: _Reader | None = None
        self.rotated: list[_Reader] = []
        self.saved_reader: dict | None = None  # from the state file, used when the path is first opened
        self.saved_rotated: list[dict] = []
        self.lines = dict.fromkeys(LEVELS, 0)
        self.bytes = 0
        self.read_errors = dict.fromkeys(READ_ERROR_REASONS, 0)
        self.rotations = dict.fromkeys(ROTATION_KINDS, 0)
        self.last_error: float | None = None
        self.size: int | None = None
        self.mtime: float | None = None
        self.last_seen_size = 0  # size at the previous stat, to skip the fingerprint check while it is unchanged
        self.path_bytes = 0  # bytes read from whatever file is at the path: the app has moved on when it grows
        self.problem: str | None = None  # a lasting error is counted once, when it starts

    def to_state(self) -> dict:
        # Positions restored but not used yet (the path has not been opened this run) are kept as they were.
        reader = self.reader.position() if self.reader else self.saved_reader
        rotated = [r.position() for r in self.rotated] + self.saved_rotated
        return {"reader": _position_state(**reader) if reader else None,
                "rotated": [_position_state(**r) for r in rotated], "lines": dict(self.lines),
                "bytes": self.bytes, "read_errors": dict(self.read_errors), "rotations": dict(self.rotations),
                "last_error": self.last_error}

    def release(self) -> None:
        """Close every file, keeping the positions: opening the path again continues from them."""
        if self.reader is not None:
            self.saved_reader = self.reader.position()
        self.saved_rotated = [r.position() for r in self.rotated] + self.saved_rotated
        for reader in [self.reader, *self.rotated]:
            if reader is not None:
                reader.close()
        self.reader, self.rotated = None, []

    def busy(self) -> bool:
        """Not read to the end yet, or still reading a renamed-away file."""
        return bool(self.rotated) or (self.reader is not None and self.reader.pos < (self.size or 0))

    def restore(self, state: dict) -> bool:
        """Continue the totals and positions of the state file; False (and nothing taken) if malformed."""
        try:
            counters = [(target, {key: int(value) for key, value in (state.get(name) or {}).items()
                                  if key in target})
                        for name, target in (("lines", self.lines), ("read_errors", self.read_errors),
                                             ("rotations", self.rotations))]
            nbytes = int(state.get("bytes", 0))
            last_error = state.get("last_error")
            last_error = None if last_error is None else float(last_error)
            reader = _position(state["reader"]) if state.get("reader") else None
            rotated = [_position(entry) for entry in state.get("rotated") or []]
        except (AttributeError, KeyError, TypeError, ValueError):
            return False
        for target, values in counters:
            target.update(values)
        self.bytes, self.last_error, self.saved_reader, self.saved_rotated = nbytes, last_error, reader, rotated
        return True


class LogsCollector:
    """Counts log records by file and level, and access-log requests; see the module docstring."""

    name = "logs"

    def __init__(self, config: Config):
        settings = config.collectors.logs
        self._patterns = [os.path.expanduser(p) for p in config.devflow.log_files]
        self._access_path = os.path.expanduser(config.devflow.access_log) if config.devflow.access_log else None
        self._state_path = Path(settings.state_file).expanduser() if settings.state_file else None
        self._poll = max(0.05, float(settings.poll_interval_seconds))
        self._rotate_wait = max(ROTATE_WAIT_SECONDS, 2 * self._poll)
        self._levels = LevelCounter()
        self._access = AccessLogParser(settings.access_log_pattern) if self._access_path else None
        self._http = HttpTotals() if self._access_path else None
        self._files: dict[str, _TailedFile] = {}
        self._saved: dict[str, dict] = self._load_state()  # by path, for files not tracked (yet, or any more)
        self._last_pass_failed = False  # an unexpected error (a bug): collect() reports the collector failed
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer = None
        self._watched_dirs: set[str] = set()
        self._warned: set[str] = set()
        self._state_written = 0.0
        self._dirty = False
        all_patterns = self._patterns + ([self._access_path] if self._access_path else [])
        self._event_filter = re.compile("|".join(fnmatch.translate(p) for p in all_patterns) or "(?!)")

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._watched_dirs = set()  # a new observer watches nothing yet
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
        self._save_state()
        for tailed in self._files.values():
            tailed.release()

    def _run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            self._wake.clear()  # before reading: a change made during the pass wakes the next one
            try:
                self.read_once()
                if time.monotonic() - self._state_written >= STATE_INTERVAL_SECONDS and self._dirty:
                    self._save_state()
            except Exception:  # a bug must not end the reader; the next pass retries
                self._last_pass_failed = True
                log.exception("logs: reading pass failed")
            self._wake.wait(self._poll)
            gap = MIN_PASS_GAP_SECONDS - (time.monotonic() - started)
            if gap > 0:
                self._stopping.wait(gap)

    def read_once(self) -> None:
        """One pass: find the files, notice rotations, read what is new. Used by the thread and the bench."""
        self._watch_new_dirs()
        wanted, cut = self._discover()
        self._evict(cut)
        for path, explicit, access in wanted:
            if path not in self._files:
                tailed = _TailedFile(path, explicit, access)
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
                self._poll_file(tailed)
                self._drain_rotated(tailed)
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
            if not _has_magic(pattern):
                found.setdefault(pattern, (True, False))
                continue
            for path in sorted(glob.glob(pattern)):
                name = os.path.basename(path)
                if _is_compressed(name) or _ROTATED_NAME.search(name) or os.path.isdir(path):
                    continue
                found.setdefault(path, (False, False))
        found = {p: v for p, v in found.items() if not _is_compressed(p)}
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

    def _poll_file(self, tailed: _TailedFile) -> None:
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
        got = self._read(tailed, reader)
        if got:
            tailed.path_bytes += got
            tailed.problem = None

    def _open(self, tailed: _TailedFile) -> _Reader | None:
        try:
            fd = os.open(tailed.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            self._problem(tailed, _reason(exc))
            return None
        try:
            opened = os.fstat(fd)
            regular = stat.S_ISREG(opened.st_mode)
            if regular:
                reader = _Reader(fd, opened)
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

    def _resume(self, tailed: _TailedFile, reader: _Reader) -> None:
        """Continue where the last run stopped, also in files rotated away meanwhile."""
        saved, tailed.saved_reader = tailed.saved_reader, None
        rotated, tailed.saved_rotated = tailed.saved_rotated, []
        if saved and reader.resume_at(saved):
            if reader.truncated():
                self._truncated(tailed, reader)
        elif saved:  # another file at the path: ours was renamed away while we were down
            rotated.insert(0, saved)
            with self._lock:
                tailed.rotations["rename"] += 1
        for position in rotated:
            self._adopt_rotated(tailed, position)

    def _adopt_rotated(self, tailed: _TailedFile, saved: dict) -> None:
        """Find a file of the state file renamed away by rotation (same inode) and finish it from its offset."""
        for _, path, st in _uncompressed_files(os.path.dirname(tailed.path)):
            if st.st_ino != saved["inode"] or path == tailed.path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue
            reader, ours = _Reader(fd, os.fstat(fd)), False
            try:
                ours = reader.resume_at(saved)
            finally:
                if not ours:  # another file, or a position it cannot take: never leak the descriptor
                    reader.close()
            if ours:
                tailed.rotated.append(reader)  # _drain_rotated checks it for truncation, then reads it
                return
        self._count_error(tailed, "vanished")  # what was written to it after our offset is lost

    def _path_gone(self, tailed: _TailedFile) -> None:
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

    def _retire(self, tailed: _TailedFile, kind: str | None) -> None:
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

    def _drain_rotated(self, tailed: _TailedFile) -> None:
        """Read the renamed-away files; close one once the app writes elsewhere and it has been quiet."""
        now = time.monotonic()
        for reader in list(tailed.rotated):
            if reader.truncated():  # e.g. copytruncate, then renamed away before we looked
                self._truncated(tailed, reader)
            if self._read(tailed, reader):
                reader.last_growth = now
            if self._stopping_now():  # the reader stays in the state file, so the next run finishes it
                continue
            quiet = now - reader.last_growth
            moved_on = tailed.path_bytes > reader.path_bytes_at_rotation
            if (moved_on and quiet >= self._rotate_wait) or quiet >= ROTATED_IDLE_SECONDS:
                self._close_rotated(tailed, reader)

    def _close_rotated(self, tailed: _TailedFile, reader: _Reader) -> None:
        self._finish(tailed, reader)
        tailed.rotated.remove(reader)
        reader.close()

    def _stopping_now(self) -> bool:
        return self._stopping.is_set() and self._thread is not None

    def _finish(self, tailed: _TailedFile, reader: _Reader) -> None:
        """A rotated file is done: its last line may lack a newline, count it anyway."""
        if not reader.skipping and len(reader.pending) > 1:
            self._consume(tailed, reader, b"\n", from_file=False)

    def _truncated(self, tailed: _TailedFile, reader: _Reader) -> None:
        """copytruncate: read what we had not read yet from the copy, then start the file again at 0."""
        if reader.consumed > 0 and not self._read_from_copy(tailed, reader):
            self._count_error(tailed, "truncated_unread")  # what was written after our offset may be lost
        reader.restart()
        with self._lock:
            tailed.rotations["truncate"] += 1
        self._dirty = True

    def _read_from_copy(self, tailed: _TailedFile, reader: _Reader) -> bool:
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
            copy = _Reader(fd, os.fstat(fd), reader.consumed, reader.skipping, reader.fingerprint)
            try:
                if copy.fingerprint_holds():
                    self._read(tailed, copy, budget=None)
                    self._finish(tailed, copy)
                    return True
            finally:
                copy.close()
        return False

    def _read(self, tailed: _TailedFile, reader: _Reader, budget: int | None = READ_BUDGET_BYTES) -> int:
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

    def _consume(self, tailed: _TailedFile, reader: _Reader, data: bytes, from_file: bool = True) -> None:
        """Count the complete lines of pending + data; keep the incomplete last line for later.

        Bytes count as their lines are consumed: the saved offset is a line start,
        so a half-written last line is counted once, when it is complete.
        """
        levels: dict[str, int] = {}
        errors: dict[str, int] = {}
        consumed = reader.consumed
        if from_file:
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

    def _count_lines(self, tailed: _TailedFile, buf: bytes, end: int, levels: dict, errors: dict) -> None:
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

    def _account(self, tailed: _TailedFile, nbytes: int, levels: dict, errors: dict,
                 error_time: float | None = None) -> None:
        with self._lock:
            tailed.bytes += nbytes
            for level, n in levels.items():
                tailed.lines[level] += n
            for reason, n in errors.items():
                tailed.read_errors[reason] += n
            if error_time is not None and (tailed.last_error is None or error_time > tailed.last_error):
                tailed.last_error = error_time
        self._dirty = True

    # --- errors ------------------------------------------------------------------------------------

    def _file_failed(self, tailed: _TailedFile, exc: Exception) -> bool:
        """Reading one file failed unexpectedly: count it; True when it is a bug rather than an OS error."""
        bug = not isinstance(exc, OSError)
        reason = "io_error" if bug else _reason(exc)
        if tailed.problem != reason:  # a failure that repeats every pass is logged once
            log.warning("logs: reading %s failed: %r", tailed.path, exc, exc_info=bug)
        self._problem(tailed, reason)
        return bug

    def _problem(self, tailed: _TailedFile, reason: str) -> None:
        """A lasting condition (permission denied, a directory at the path) counts once per occurrence."""
        if tailed.problem != reason:
            tailed.problem = reason
            self._count_error(tailed, reason)

    def _count_error(self, tailed: _TailedFile, reason: str) -> None:
        with self._lock:
            tailed.read_errors[reason] += 1
        self._dirty = True
        log.debug("logs: %s: %s", tailed.path, reason)

    def _warn_once(self, key: str, message: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    # --- state file --------------------------------------------------------------------------------

    def _load_state(self) -> dict[str, dict]:
        """The saved state of each file by path, and the HTTP totals restored; {} if missing or malformed.

        A file of the wrong shape is ignored as a whole (counting starts over), never half taken.
        """
        if self._state_path is None:
            return {}
        try:
            state = json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("logs: ignoring unreadable state file %s: %s", self._state_path, exc)
            return {}
        files = state.get("files") if isinstance(state, dict) else None
        valid = (isinstance(files, dict) and state.get("version") == 1
                 and all(isinstance(entry, dict) for entry in files.values()))
        # Last: restore() takes the HTTP totals whole or not at all.
        if valid and self._http is not None and state.get("http") is not None:
            valid = self._http.restore(state["http"])
        if not valid:
            log.warning("logs: ignoring state file %s: not the shape this version writes", self._state_path)
            return {}
        return files

    def _save_state(self) -> None:
        """Write offsets and counters together, atomically (tmp + rename)."""
        self._state_written = time.monotonic()
        if self._state_path is None:
            return
        with self._lock:
            # Keep what we saved for files not seen yet this run (their directory may appear later).
            files = {path: saved for path, saved in self._saved.items() if os.path.lexists(path)}
            files.update({path: tailed.to_state() for path, tailed in self._files.items()})
            state = {"version": 1, "files": files}
            if self._http is not None:
                state["http"] = self._http.to_state()
        self._dirty = False
        tmp = self._state_path.with_name(f".{self._state_path.name}.{os.getpid()}.tmp")
        try:
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as handle:
                json.dump(state, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._state_path)
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
                self._observer.schedule(_Wakeup(self._event_filter, self._wake, recursive), directory,
                                        recursive=recursive,
                                        event_filter=[events.FileCreatedEvent, events.FileModifiedEvent,
                                                      events.FileMovedEvent, events.FileDeletedEvent,
                                                      events.FileClosedEvent, events.FileAttribEvent,
                                                      events.DirCreatedEvent, events.DirMovedEvent,
                                                      events.DirDeletedEvent])
                self._watched_dirs.add(directory)
            except Exception as exc:  # e.g. inotify watch limit: polling covers this directory
                self._warn_once("watch:" + directory, "logs: cannot watch %s (%s); polling it", directory, exc)
                self._watched_dirs.add(directory)

    # --- scrape ------------------------------------------------------------------------------------

    def collect(self):
        lines, nbytes, last_error = catalog.LOG_LINES.family(), catalog.LOG_BYTES.family(), \
            catalog.LOG_LAST_ERROR.family()
        errors, size, rotations = catalog.LOG_READ_ERRORS.family(), catalog.LOG_FILE_SIZE.family(), \
            catalog.LOG_ROTATIONS.family()
        modified = catalog.LOG_FILE_MODIFIED.family()
        with self._lock:
            for path, tailed in self._files.items():
                if not tailed.access:
                    for level, n in tailed.lines.items():
                        lines.add_metric([path, level], n)
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
                http = (dict(self._http.requests), self._http.cumulative_buckets(), self._http.duration_sum)
        yield from (lines, nbytes, last_error, errors, size, rotations, modified)
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
    """watchdog handler: wake the reader when a path we read changes."""

    def __init__(self, matches: re.Pattern, wake: threading.Event, directories: bool):
        self._matches = matches
        self._wake = wake
        self._directories = directories  # a glob with a wildcard directory: new directories matter

    def dispatch(self, event) -> None:
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path and self._matches.match(os.fsdecode(path)):
                self._wake.set()
                return
        if event.is_directory and self._directories:
            self._wake.set()


def _position_state(dev: int, inode: int, offset: int, skipping: bool, fingerprint: bytes) -> dict:
    return {"dev": dev, "inode": inode, "offset": offset, "skipping": skipping, "fingerprint": fingerprint.hex()}


def _position(saved: dict) -> dict:
    """A reader position from the state file, type-checked (raises on malformed input)."""
    offset = int(saved["offset"])
    fingerprint = bytes.fromhex(saved.get("fingerprint", ""))
    if offset < len(fingerprint):
        raise ValueError("offset before the end of its fingerprint")
    return {"dev": int(saved["dev"]), "inode": int(saved["inode"]), "offset": offset,
            "skipping": bool(saved.get("skipping")), "fingerprint": fingerprint}


def _written_by(fd: int) -> float:
    """When the bytes just read were written at the latest: the file's mtime, never later than now.

    For a live log that is the moment of the error. An error found in a backlog
    is stamped with the file's last write, which is later than the error itself
    when lines were written after it (but not the time we happened to read it).
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


def _has_magic(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _is_compressed(name: str) -> bool:
    return name.lower().endswith(COMPRESSED_SUFFIXES)


def _static_dir(pattern: str) -> tuple[str, bool]:
    """The deepest directory of a path or glob without wildcards, and whether to watch below it."""
    parts = Path(pattern).parts
    static = []
    for part in parts[:-1]:
        if _has_magic(part):
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
        if _is_compressed(name):
            continue
        path = os.path.join(directory, name)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            yield name, path, st
