"""The log tailer's state: where it is in each file, what it counted, and the state file that keeps both.

A file is known by its inode and by bytes it has read: the FINGERPRINT_BYTES
before the read offset (they change when the file is truncated and written
again) and its first HEAD_BYTES (they stay when the file is only cut shorter).
Read offsets and counters are saved together, atomically, so a restarted
exporter continues its totals exactly. Device numbers can change across reboots
and containers, so a saved position is taken by inode and device, or by inode
and unchanged fingerprint.

Who may touch what (the reader is collectors/logs.py; a pass runs in its background
thread or in a scrape, one at a time under LogsCollector._pass_lock):
- Reader: owned by the pass.
- TailedFile counters (`lines`, `protocol_messages`, `bytes`, `read_errors`,
  `rotations`, `last_error`, `size`, `mtime`): written by the pass and read by
  collect() and the state file writer, all under LogsCollector._lock.
- The rest of TailedFile (its readers, saved positions, `path_bytes`,
  `problem`): owned by the pass.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from devflow_monitor.core.logformat import LEVELS, HttpTotals

log = logging.getLogger(__name__)

FINGERPRINT_BYTES = 64  # bytes before the read offset that must not change while we hold it
HEAD_BYTES = 256  # a file's first bytes (several lines, timestamped in most formats): a cut keeps them, a rewrite not
STATE_VERSION = 1
READ_ERROR_REASONS = ("permission_denied", "not_a_file", "vanished", "io_error", "line_too_long",
                      "invalid_utf8", "truncated_unread", "access_line_unparsed")
ROTATION_KINDS = ("rename", "truncate")


class Reader:
    """One open file (one inode) and where we are in it. Owned by the pass."""

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
        self.path_bytes_at_rotation = 0  # TailedFile.path_bytes when this file was renamed away
        os.lseek(fd, offset, os.SEEK_SET)

    @property
    def consumed(self) -> int:
        """Offset up to which every line has been counted (always a line start)."""
        return self.pos if self.skipping else self.pos - (len(self.pending) - 1)

    def restart(self) -> None:
        self.pos, self.pending, self.skipping, self.fingerprint, self.head = 0, b"\n", False, b"", b""
        os.lseek(self.fd, 0, os.SEEK_SET)

    def resume_at(self, saved: dict) -> bool:
        """Take a saved position if it is of this file; else stay at 0.

        The same inode and device, or the same inode and unchanged bytes before
        the offset: device numbers can change across reboots and containers.
        """
        if saved["inode"] != self.ino:
            return False
        self.pos, self.skipping, self.fingerprint = saved["offset"], saved["skipping"], saved["fingerprint"]
        self.head = saved["head"]
        if saved["dev"] == self.dev or self.fingerprint_holds():
            os.lseek(self.fd, self.pos, os.SEEK_SET)
            return True
        self.restart()
        return False

    def read_head(self) -> None:
        """Take the head from the file itself (a position saved before heads were), while it is unchanged."""
        self.head = os.pread(self.fd, min(HEAD_BYTES, self.consumed), 0)

    def keep_head(self, data: bytes) -> None:
        """`data` are the bytes about to be read at `pos`: keep those that fall in the head."""
        if len(self.head) == self.pos < HEAD_BYTES:
            self.head += data[:HEAD_BYTES - self.pos]

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

    def remember(self, newest: bytes) -> None:
        """Keep the last FINGERPRINT_BYTES before `consumed`; `newest` are the bytes just consumed."""
        self.fingerprint = (self.fingerprint + newest[-FINGERPRINT_BYTES:])[-FINGERPRINT_BYTES:]

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
        """Where to continue, as position() reads it from the state file."""
        return {"dev": self.dev, "inode": self.ino, "offset": self.consumed, "skipping": self.skipping,
                "fingerprint": self.fingerprint, "head": self.head}

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class TailedFile:
    """One configured or globbed path: its counters and the readers of its current and rotated files."""

    def __init__(self, path: str, explicit: bool, access: bool):
        self.path = path
        self.explicit = explicit
        self.access = access
        # Owned by the pass.
        self.reader: Reader | None = None
        self.rotated: list[Reader] = []
        self.saved_reader: dict | None = None  # from the state file, used when the path is first opened
        self.saved_rotated: list[dict] = []
        self.last_seen_size = 0  # size at the previous stat, to skip the fingerprint check while it is unchanged
        self.path_bytes = 0  # bytes read from whatever file is at the path: the app has moved on when it grows
        self.problem: str | None = None  # a lasting error is counted once, when it starts
        # Guarded by LogsCollector._lock: published by collect() and saved in the state file.
        self.lines = dict.fromkeys(LEVELS, 0)
        self.protocol_messages = 0
        self.bytes = 0
        self.read_errors = dict.fromkeys(READ_ERROR_REASONS, 0)
        self.rotations = dict.fromkeys(ROTATION_KINDS, 0)
        self.last_error: float | None = None
        self.size: int | None = None
        self.mtime: float | None = None

    def to_state(self) -> dict:
        # Positions restored but not used yet (the path has not been opened this run) are kept as they were.
        reader = self.reader.position() if self.reader else self.saved_reader
        rotated = [r.position() for r in self.rotated] + self.saved_rotated
        return {"reader": _position_state(**reader) if reader else None,
                "rotated": [_position_state(**r) for r in rotated], "lines": dict(self.lines),
                "protocol_messages": self.protocol_messages, "bytes": self.bytes,
                "read_errors": dict(self.read_errors), "rotations": dict(self.rotations),
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
            protocol_messages, nbytes = int(state.get("protocol_messages", 0)), int(state.get("bytes", 0))
            last_error = state.get("last_error")
            last_error = None if last_error is None else float(last_error)
            reader = position(state["reader"]) if state.get("reader") else None
            rotated = [position(entry) for entry in state.get("rotated") or []]
        except (AttributeError, KeyError, TypeError, ValueError):
            return False
        for target, values in counters:
            target.update(values)
        self.protocol_messages, self.bytes, self.last_error = protocol_messages, nbytes, last_error
        self.saved_reader, self.saved_rotated = reader, rotated
        return True


def _position_state(dev: int, inode: int, offset: int, skipping: bool, fingerprint: bytes, head: bytes) -> dict:
    return {"dev": dev, "inode": inode, "offset": offset, "skipping": skipping, "fingerprint": fingerprint.hex(),
            "head": head.hex()}


def position(saved: dict) -> dict:
    """A reader position from the state file, type-checked (raises on malformed input)."""
    offset = int(saved["offset"])
    fingerprint = bytes.fromhex(saved.get("fingerprint", ""))
    if offset < len(fingerprint):
        raise ValueError("offset before the end of its fingerprint")
    return {"dev": int(saved["dev"]), "inode": int(saved["inode"]), "offset": offset,
            "skipping": bool(saved.get("skipping")), "fingerprint": fingerprint,
            "head": bytes.fromhex(saved.get("head", ""))}  # absent in files from before heads were kept


def load_state(path: Path, http: HttpTotals | None) -> dict[str, dict]:
    """The saved state of each file by path, and the HTTP totals restored into `http`; {} if missing or malformed.

    A file of the wrong shape is ignored as a whole (counting starts over), never half taken.
    """
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("logs: ignoring unreadable state file %s: %s", path, exc)
        return {}
    files = state.get("files") if isinstance(state, dict) else None
    valid = (isinstance(files, dict) and state.get("version") == STATE_VERSION
             and all(isinstance(entry, dict) for entry in files.values()))
    # Last: restore() takes the HTTP totals whole or not at all.
    if valid and http is not None and state.get("http") is not None:
        valid = http.restore(state["http"])
    if not valid:
        log.warning("logs: ignoring state file %s: not the shape this version writes", path)
        return {}
    return files


def state_document(files: dict[str, dict], http: HttpTotals | None) -> dict:
    """What load_state() reads back: files by path (TailedFile.to_state()) and the HTTP totals."""
    state = {"version": STATE_VERSION, "files": files}
    if http is not None:
        state["http"] = http.to_state()
    return state
