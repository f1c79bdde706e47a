"""One open log file (one inode): where reading is in it, and the complete lines that are new.

A file is known by its inode and by bytes already read: the FINGERPRINT_BYTES
before the read offset (they change when the file is truncated and written
again) and its first HEAD_BYTES (they stay when the file is only cut shorter).
Device numbers can change across reboots and containers, so a saved position is
taken by inode and device, or by inode and unchanged fingerprint.

Lines are handed out whole: the offset kept is always a line start, so a
half-written last line is counted once, when it is complete. A line longer than
MAX_LINE_BYTES is handed out by its start and the rest of it skipped, so memory
stays bounded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

CHUNK_BYTES = 1 << 20  # one os.read
MAX_LINE_BYTES = 1 << 20  # a longer line is counted by its start and skipped, so memory stays bounded
FINGERPRINT_BYTES = 64  # bytes before the read offset that must not change while we hold it
HEAD_BYTES = 256  # a file's first bytes (several lines, timestamped in most formats): a cut keeps them, a rewrite not


@dataclass
class Lines:
    """What one read made complete: the lines `data[1:end]`, `data[0]` being the newline before them.

    `end` is 0 when no line was completed. `consumed` is how many bytes of the file
    these lines (and a skipped over-long line) take; `read` how many bytes came
    from the file. `long_line` is the start of a line over MAX_LINE_BYTES (from
    its preceding newline), counted by that start and dropped. `reader` is the
    Reader they come from: whoever counts them keeps its `in_record`.
    """

    data: bytes
    end: int
    consumed: int
    read: int
    long_line: bytes | None
    fd: int
    reader: Reader

    def written_at(self) -> float:
        """When these bytes were written at the latest: the file's mtime, never later than now.

        The logs are read at each scrape, so that is the app's last write before the
        scrape: at most a scrape interval after the line (a backlog's line: its file's
        last write), never the time we happened to read it.
        """
        try:
            return min(os.fstat(self.fd).st_mtime, time.time())
        except OSError:
            return time.time()


class Reader:
    """One open file and where we are in it: the offset, the incomplete last line and the bytes that identify it."""

    def __init__(self, fd: int, st: os.stat_result, offset: int = 0, skipping: bool = False,
                 fingerprint: bytes = b"", head: bytes = b""):
        self.fd = fd
        self.dev, self.ino = st.st_dev, st.st_ino
        self.pos = offset  # file offset of the next os.read
        self.pending = b"\n"  # newline that ended the last complete line, then the incomplete line
        self.skipping = skipping  # inside an over-long line: drop bytes up to the next newline
        self.fingerprint = fingerprint  # the file's bytes just before `consumed`
        self.head = head  # the file's first bytes read, up to HEAD_BYTES
        self.last_growth = time.monotonic()
        # The lines handed out so far end inside a record that the next lines may continue (an error's
        # multi-line text, a crash): the counting state of this file, saved with the offset.
        self.in_record = False
        self.path_bytes_at_rotation = 0  # bytes its TailedFile had read at the path when this file was renamed away
        os.lseek(fd, offset, os.SEEK_SET)

    @property
    def consumed(self) -> int:
        """Offset up to which every line has been handed out (always a line start)."""
        return self.pos if self.skipping else self.pos - (len(self.pending) - 1)

    # --- reading -----------------------------------------------------------------------------------

    def read_new(self, limit: int = CHUNK_BYTES) -> Lines | None:
        """Read at most `limit` bytes; the lines they complete, or None at the end of the file."""
        data = os.read(self.fd, limit)
        if not data:
            return None
        consumed = self.consumed
        self._keep_head(data)
        self.pos += len(data)
        return self._split(data, consumed, len(data))

    def finish(self) -> Lines | None:
        """The file is done: its last line may lack a newline, hand it out anyway (None if there is none)."""
        if self.skipping or len(self.pending) <= 1:
            return None
        return self._split(b"\n", self.consumed, 0)

    def _split(self, data: bytes, consumed: int, read: int) -> Lines:
        """The complete lines of pending + data; keep the incomplete last line for later.

        `consumed` is where counted lines ended before `data` was read.
        """
        if self.skipping:
            newline = data.find(b"\n")
            if newline < 0:
                self._remember(data)
                return Lines(b"", 0, self.consumed - consumed, read, None, self.fd, self)
            self._remember(data[max(0, newline + 1 - FINGERPRINT_BYTES):newline + 1])
            self.skipping = False
            buf = data[newline:]
        else:
            buf = self.pending + data
        cut = buf.rfind(b"\n")
        if cut > 0:
            # buf[0] is the previous newline (remembered already) or a stand-in at offset 0.
            self._remember(buf[max(1, cut + 1 - FINGERPRINT_BYTES):cut + 1])
        pending = buf[cut:]
        long_line = None
        if len(pending) > MAX_LINE_BYTES:
            long_line = pending
            self._remember(pending)
            pending = b"\n"
            self.skipping = True
        self.pending = pending
        return Lines(buf, cut + 1 if cut > 0 else 0, self.consumed - consumed, read, long_line, self.fd, self)

    def _keep_head(self, data: bytes) -> None:
        """`data` are the bytes about to be read at `pos`: keep those that fall in the head."""
        if len(self.head) == self.pos < HEAD_BYTES:
            self.head += data[:HEAD_BYTES - self.pos]

    def _remember(self, newest: bytes) -> None:
        """Keep the last FINGERPRINT_BYTES before `consumed`; `newest` are the bytes just consumed."""
        self.fingerprint = (self.fingerprint + newest[-FINGERPRINT_BYTES:])[-FINGERPRINT_BYTES:]

    # --- identity and truncation -------------------------------------------------------------------

    def restart(self) -> None:
        self.pos, self.pending, self.skipping, self.fingerprint, self.head = 0, b"\n", False, b"", b""
        self.in_record = False
        os.lseek(self.fd, 0, os.SEEK_SET)

    def resume_at(self, saved: dict) -> bool:
        """Take a saved position if it is of this file; else stay at 0.

        The same inode and device, or the same inode and unchanged bytes before
        the offset: device numbers can change across reboots and containers.
        """
        if saved["inode"] != self.ino:
            return False
        self.pos, self.skipping, self.fingerprint = saved["offset"], saved["skipping"], saved["fingerprint"]
        self.head, self.in_record = saved["head"], saved["in_record"]
        if saved["dev"] == self.dev or self.fingerprint_holds():
            os.lseek(self.fd, self.pos, os.SEEK_SET)
            return True
        self.restart()
        return False

    def read_head(self) -> None:
        """Take the head from the file itself (a position saved without one), while it is unchanged."""
        self.head = os.pread(self.fd, min(HEAD_BYTES, self.consumed), 0)

    def truncated(self) -> bool:
        """True when the file shrank below our offset or was truncated and written again (copytruncate)."""
        return os.fstat(self.fd).st_size < self.pos or not self.fingerprint_holds()

    def head_kept(self) -> bool:
        """After a truncation: the file starts with the head we read, so it was cut shorter, not rewritten.

        The whole head must still be there, and be more than a few bytes: a log
        without timestamps, written anew after a copytruncate, can start with
        the same few dozen bytes.
        """
        head = self.head
        return (len(head) >= FINGERPRINT_BYTES and os.fstat(self.fd).st_size >= len(head)
                and os.pread(self.fd, len(head), 0) == head)

    def continue_after_cut(self) -> bool:
        """The file was cut shorter, keeping its head: go on from the cut, which counted lines end at.

        What stays before the cut was counted already, and the app's next line
        starts at the cut. False when the file grew past our offset again before
        we saw the cut: where it was is unknown, so we go on from our own offset
        at the next line start, and the lines between are lost.
        """
        size = os.fstat(self.fd).st_size
        known = size < self.pos
        if size < self.consumed:
            self.pos, self.pending, self.skipping = size, b"\n", False
        elif known:  # the cut is inside the line we hold: keep its start
            self.pending = self.pending[:1 + size - self.consumed]
            self.pos = size
        else:
            self.pos, self.pending, self.skipping = self.consumed, b"\n", True
        start = max(0, self.consumed - FINGERPRINT_BYTES)
        self.fingerprint = os.pread(self.fd, self.consumed - start, start)
        self.head = os.pread(self.fd, min(HEAD_BYTES, self.pos), 0)
        os.lseek(self.fd, self.pos, os.SEEK_SET)
        return known

    def fingerprint_holds(self) -> bool:
        """False when the bytes before our offset changed: truncated and written again."""
        if not self.fingerprint:
            return True
        start = self.consumed - len(self.fingerprint)
        return os.pread(self.fd, len(self.fingerprint), start) == self.fingerprint

    def deleted_and_drained(self) -> bool:
        """No name links to the file any more and we have read all of it: holding it only keeps its disk space."""
        st = os.fstat(self.fd)
        return st.st_nlink == 0 and self.pos >= st.st_size

    def position(self) -> dict:
        """Where to continue, as logstate.position() reads it from the state file."""
        return {"dev": self.dev, "inode": self.ino, "offset": self.consumed, "skipping": self.skipping,
                "fingerprint": self.fingerprint, "head": self.head, "in_record": self.in_record}

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
