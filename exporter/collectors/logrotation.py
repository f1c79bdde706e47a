"""One log path followed through rotation (rename, copytruncate, cut), deletion and restarts.

`TailedFile.advance()` is one pass over a path: it notices what happened to the
file at the path, reads what is new there and in the files renamed away from it,
and reports lines, read errors and rotations to a `Tally`. Its state (open
readers, saved positions) is owned by the pass; see docs/architecture.md
"Log reader" for the rotation rules.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from typing import Callable, Iterator, Protocol

from devflow_monitor.core.logformat import is_compressed
from devflow_monitor.exporter.collectors.logreader import Lines, Reader

log = logging.getLogger(__name__)

ROTATED_IDLE_SECONDS = 86400.0  # a renamed-away file nobody wrote to for a day is closed even if the app never moved
MAX_ROTATED = 8  # renamed-away files kept open per path; beyond, the longest quiet is closed


class Tally(Protocol):
    """What a TailedFile reports to (the collector's counters)."""

    def lines(self, path: str, lines: Lines) -> None: ...

    def read_error(self, path: str, reason: str) -> None: ...

    def rotation(self, path: str, kind: str) -> None: ...

    def moved(self, path: str) -> None:
        """The positions to save changed without anything counted (a file renamed away or deleted)."""


class TailedFile:
    """One configured or globbed path: the reader of the file at it and the readers of its rotated files."""

    def __init__(self, path: str, explicit: bool, tally: Tally, rotate_wait: float):
        self.path = path
        self.explicit = explicit  # configured by name, not found by a glob
        self._tally = tally
        self._rotate_wait = rotate_wait  # quiet time after which a renamed-away file is closed, once the app moved on
        self.reader: Reader | None = None
        self.rotated: list[Reader] = []
        self._saved_reader: dict | None = None  # from the state file, used when the path is first opened
        self._saved_rotated: list[dict] = []
        self.size: int | None = None  # the file at the path at the last look; None while there is none
        self.mtime: float | None = None
        self._last_seen_size = 0  # size at the previous stat, to skip the fingerprint check while it is unchanged
        self._path_bytes = 0  # bytes read from whatever file is at the path: the app has moved on when it grows
        self.problem: str | None = None  # a lasting error is counted once, when it starts
        self._more = False  # a read stopped at its budget in this pass

    # --- the pass ----------------------------------------------------------------------------------

    def advance(self, budget: int, stopping: Callable[[], bool]) -> bool:
        """Read what is new at the path and in its rotated files, at most `budget` bytes a file.

        An OSError is a read error, counted once while it lasts; any other exception
        is a bug and propagates. True when a budget ran out: there is more to read.
        `stopping()` True leaves rotated files open, so the saved state finishes them.
        """
        self._more = False
        try:
            self._poll(budget)
            self._drain_rotated(budget, stopping)
        except OSError as exc:
            reason = _reason(exc)
            if self.problem != reason:  # a failure that repeats every pass is logged once
                log.warning("logs: reading %s failed: %r", self.path, exc)
            self._problem(reason)
        return self._more

    def release(self) -> None:
        """Close every file, keeping the positions: opening the path again continues from them."""
        self._saved_reader, self._saved_rotated = self.positions()
        for reader in [self.reader, *self.rotated]:
            if reader is not None:
                reader.close()
        self.reader, self.rotated = None, []

    def busy(self) -> bool:
        """Not read to the end yet, or still reading a renamed-away file."""
        return bool(self.rotated) or (self.reader is not None and self.reader.pos < (self.size or 0))

    @property
    def closed(self) -> bool:
        """No file is open: everything known of the path has been read."""
        return self.reader is None and not self.rotated

    # --- state file --------------------------------------------------------------------------------

    def positions(self) -> tuple[dict | None, list[dict]]:
        """Where to continue at the path and in the rotated files; a saved position not used yet stays as it was."""
        reader = self.reader.position() if self.reader else self._saved_reader
        return reader, [r.position() for r in self.rotated] + self._saved_rotated

    def resume_from(self, reader: dict | None, rotated: list[dict]) -> None:
        """Continue from positions of the state file when the path is opened."""
        self._saved_reader, self._saved_rotated = reader, rotated

    # --- the file at the path ----------------------------------------------------------------------

    def _poll(self, budget: int) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._path_gone()
            return
        except OSError as exc:
            self._problem(_reason(exc))
            return
        if not stat.S_ISREG(st.st_mode):
            self._problem("not_a_file")
            if self.reader is not None:  # the path was replaced: finish the file we had
                self._retire(None)
            self.size = self.mtime = None
            return
        reader = self.reader
        if reader is not None and (reader.dev, reader.ino) != (st.st_dev, st.st_ino):
            # Another file at the path: ours was renamed away (a rotation), or deleted and the path made anew.
            self._retire(None if _deleted(reader) else "rename")
            reader = None
        if reader is None:
            reader = self._open()
            if reader is None:
                return
        elif st.st_size < reader.pos or (st.st_size != self._last_seen_size and not reader.fingerprint_holds()):
            self._truncated(reader)
        self.size, self.mtime = st.st_size, st.st_mtime
        self._last_seen_size = st.st_size
        if self.problem != "io_error":  # stat and open work again: a new failure counts anew
            self.problem = None
        got = self._read(reader, budget)
        if got:
            self._path_bytes += got
            self.problem = None

    def _open(self) -> Reader | None:
        try:
            fd = _open(self.path)
        except OSError as exc:
            self._problem(_reason(exc))
            return None
        try:
            opened = os.fstat(fd)
            regular = stat.S_ISREG(opened.st_mode)
            if regular:
                reader = Reader(fd, opened)
                self._resume(reader)
        except BaseException:
            os.close(fd)  # a failed resume must not leak the descriptor
            raise
        if not regular:
            os.close(fd)
            self._problem("not_a_file")
            return None
        self.reader = reader
        self._last_seen_size = opened.st_size
        return reader

    def _resume(self, reader: Reader) -> None:
        """Continue where the last run stopped, also in files rotated away meanwhile."""
        saved, self._saved_reader = self._saved_reader, None
        rotated, self._saved_rotated = self._saved_rotated, []
        if saved and reader.resume_at(saved):
            if reader.truncated():
                self._truncated(reader)
            elif not reader.head:
                reader.read_head()
        elif saved:  # another file at the path: ours was renamed away while we were down, or deleted
            if self._adopt_rotated(saved):
                self._tally.rotation(self.path, "rename")
        for position in rotated:
            self._adopt_rotated(position)

    def _adopt_rotated(self, saved: dict) -> bool:
        """Find a file of the state file renamed away by rotation (same inode) and finish it from its offset.

        False when no file beside the path has its inode: it was deleted (or moved elsewhere).
        """
        for _, path, st in _uncompressed_files(os.path.dirname(self.path)):
            if st.st_ino != saved["inode"] or path == self.path:
                continue
            try:
                fd = _open(path)
            except OSError:
                continue
            reader, ours = Reader(fd, os.fstat(fd)), False
            try:
                ours = reader.resume_at(saved)
            finally:
                if not ours:  # another file, or a position it cannot take: never leak the descriptor
                    reader.close()
            if ours:
                self.rotated.append(reader)  # _drain_rotated checks it for truncation, then reads it
                return True
        self._tally.read_error(self.path, "vanished")  # what was written to it after our offset is lost
        return False

    def _path_gone(self) -> None:
        """The path does not exist: rotation in progress (renamed) or the file was deleted."""
        self.size = self.mtime = None
        if self.reader is None:
            return
        deleted = _deleted(self.reader)
        if deleted:
            self._problem("vanished")
        self._retire(None if deleted else "rename")

    def _retire(self, kind: str | None) -> None:
        """The path now names another file (or none): _drain_rotated reads ours on until the app moves on.

        `kind` is the rotation to count: "rename", or None for a deleted file (a deletion is no rotation).
        """
        reader = self.reader
        self.reader = None
        reader.last_growth = time.monotonic()
        reader.path_bytes_at_rotation = self._path_bytes
        self.rotated.append(reader)
        if len(self.rotated) > MAX_ROTATED:
            self._close_rotated(min(self.rotated, key=lambda r: r.last_growth))
        if kind:
            self._tally.rotation(self.path, kind)
        else:
            self._tally.moved(self.path)

    # --- renamed-away files ------------------------------------------------------------------------

    def _drain_rotated(self, budget: int, stopping: Callable[[], bool]) -> None:
        """Read the renamed-away files; close one once the app writes elsewhere and it has been quiet,
        or as soon as it is deleted and read to its end."""
        now = time.monotonic()
        for reader in list(self.rotated):
            if reader.truncated():  # e.g. copytruncate, then renamed away before we looked
                self._truncated(reader)
            if self._read(reader, budget):
                reader.last_growth = now
            if stopping():  # the reader stays in the state file, so the next run finishes it
                continue
            quiet = now - reader.last_growth
            moved_on = self._path_bytes > reader.path_bytes_at_rotation
            if ((moved_on and quiet >= self._rotate_wait) or quiet >= ROTATED_IDLE_SECONDS
                    or reader.deleted_and_drained()):
                self._close_rotated(reader)

    def _close_rotated(self, reader: Reader) -> None:
        self._finish(reader)
        self.rotated.remove(reader)
        reader.close()

    def _finish(self, reader: Reader) -> None:
        """A rotated file is done: its last line may lack a newline, count it anyway."""
        lines = reader.finish()
        if lines is not None:
            self._tally.lines(self.path, lines)

    # --- truncation --------------------------------------------------------------------------------

    def _truncated(self, reader: Reader) -> None:
        """The file shrank or its bytes before our offset changed.

        A file that still starts with the bytes we read was cut shorter: reading goes
        on from the cut. Otherwise it was emptied and written anew: it is read again
        from its start, and the lines not read yet are taken from the uncompressed copy.
        """
        if reader.head_kept():
            if not reader.continue_after_cut():
                self._tally.read_error(self.path, "truncated_unread")  # regrown past our offset before we saw the cut
        else:
            if reader.consumed > 0 and not self._read_from_copy(reader):
                self._tally.read_error(self.path, "truncated_unread")  # what came after our offset may be lost
            reader.restart()
        self._tally.rotation(self.path, "truncate")

    def _read_from_copy(self, reader: Reader) -> bool:
        """Find the uncompressed copy (same bytes before our offset) and count its lines after the offset."""
        directory, base = os.path.split(self.path)
        candidates = [(st.st_mtime, path) for name, path, st in _uncompressed_files(directory)
                      if name != base and name.startswith(base)
                      and st.st_ino != reader.ino and st.st_size >= reader.consumed]
        for _, path in sorted(candidates, reverse=True):
            try:
                fd = _open(path)
            except OSError:
                continue
            copy = Reader(fd, os.fstat(fd), reader.consumed, reader.skipping, reader.fingerprint)
            copy.in_record = reader.in_record
            try:
                if copy.fingerprint_holds():
                    self._read(copy, budget=None)
                    self._finish(copy)
                    return True
            finally:
                copy.close()
        return False

    # --- reading -----------------------------------------------------------------------------------

    def _read(self, reader: Reader, budget: int | None) -> int:
        """Hand what is new in the reader's file to the tally; returns how many bytes were read."""
        total = 0
        while budget is None or total < budget:
            try:
                lines = reader.read_new()
            except OSError as exc:
                self._problem(_reason(exc))
                return total
            if lines is None:
                return total
            total += lines.read
            self._tally.lines(self.path, lines)
        self._more = True
        return total

    def _problem(self, reason: str) -> None:
        """A lasting condition (permission denied, a directory at the path) counts once per occurrence."""
        if self.problem != reason:
            self.problem = reason
            self._tally.read_error(self.path, reason)


def _deleted(reader: Reader) -> bool:
    """No name links to the reader's file any more."""
    try:
        return os.fstat(reader.fd).st_nlink == 0
    except OSError:
        return True


def _open(path: str) -> int:
    return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission_denied"
    if exc.errno in (errno.EISDIR, errno.ENOTDIR):
        return "not_a_file"
    if isinstance(exc, FileNotFoundError):
        return "vanished"
    return "io_error"


def _uncompressed_files(directory: str) -> Iterator[tuple[str, str, os.stat_result]]:
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
