"""The log reader's persisted state: each path's counters and read positions, and the state file holding both.

Read positions and counters are saved together, atomically, so a restarted
exporter continues its totals exactly: it neither recounts a 1 GB log nor skips
what was written while it was down. The state file maps each path to one entry:

    {"version": 1,
     "files": {"/var/log/devflow/server.log": {
         "reader": {"dev": 2049, "inode": 131, "offset": 18231, "skipping": false,
                    "fingerprint": "<hex>", "head": "<hex>", "in_record": false},
         "rotated": [], "lines": {"error": 3, ...}, "protocol_messages": 0, "bytes": 18231,
         "read_errors": {...}, "rotations": {"rename": 1, "truncate": 0}, "last_error": 1754143201.0}},
     "http": {...},
     "app": {"version": "0.1.0", "monitors": {"file": "active", "git": "active"}}}

A position is where one file (one inode) has been read to; collectors/logreader.py
decides whether a file is the one a position belongs to.

The file belongs to one exporter: each rewrites it whole, so the default name
holds a hash of the exporter's database (state_path()), and two exporters
watching two DevFlow projects never resume from each other's stale copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from devflow_monitor.core.logformat import LEVELS, AppFacts, HttpTotals

log = logging.getLogger(__name__)

STATE_VERSION = 1
READ_ERROR_REASONS = ("permission_denied", "not_a_file", "vanished", "io_error", "line_too_long",
                      "invalid_utf8", "truncated_unread", "access_line_unparsed")
ROTATION_KINDS = ("rename", "truncate")


class FileCounts:
    """What has been counted for one path; `size` and `mtime` are the path's at the last look (None: no file)."""

    def __init__(self):
        self.lines = dict.fromkeys(LEVELS, 0)
        self.protocol_messages = 0
        self.bytes = 0
        self.read_errors = dict.fromkeys(READ_ERROR_REASONS, 0)
        self.rotations = dict.fromkeys(ROTATION_KINDS, 0)
        self.last_error: float | None = None
        self.size: int | None = None
        self.mtime: float | None = None

    def copy(self) -> FileCounts:
        other = FileCounts()
        other.lines, other.read_errors, other.rotations = dict(self.lines), dict(self.read_errors), \
            dict(self.rotations)
        other.protocol_messages, other.bytes, other.last_error = self.protocol_messages, self.bytes, self.last_error
        other.size, other.mtime = self.size, self.mtime
        return other

    def to_state(self) -> dict:
        return {"lines": dict(self.lines), "protocol_messages": self.protocol_messages, "bytes": self.bytes,
                "read_errors": dict(self.read_errors), "rotations": dict(self.rotations),
                "last_error": self.last_error}

    @classmethod
    def from_state(cls, state: dict) -> FileCounts:
        """The counters of a state file entry; raises (AttributeError, TypeError, ValueError) if malformed."""
        counts = cls()
        for name, target in (("lines", counts.lines), ("read_errors", counts.read_errors),
                             ("rotations", counts.rotations)):
            target.update({key: int(value) for key, value in (state.get(name) or {}).items() if key in target})
        counts.protocol_messages = int(state.get("protocol_messages", 0))
        counts.bytes = int(state.get("bytes", 0))
        last_error = state.get("last_error")
        counts.last_error = None if last_error is None else float(last_error)
        return counts


def entry_state(counts: FileCounts, reader: dict | None, rotated: list[dict]) -> dict:
    """One path's entry of the state file: its counters and its positions (`reader` at the path, `rotated` away)."""
    return {"reader": _position_state(**reader) if reader else None,
            "rotated": [_position_state(**r) for r in rotated], **counts.to_state()}


def parse_entry(state: dict) -> tuple[FileCounts, dict | None, list[dict]] | None:
    """What entry_state() wrote: counters, reader position, rotated positions; None (nothing taken) if malformed."""
    try:
        counts = FileCounts.from_state(state)
        reader = position(state["reader"]) if state.get("reader") else None
        rotated = [position(entry) for entry in state.get("rotated") or []]
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return counts, reader, rotated


def _position_state(dev: int, inode: int, offset: int, skipping: bool, fingerprint: bytes, head: bytes,
                    in_record: bool) -> dict:
    return {"dev": dev, "inode": inode, "offset": offset, "skipping": skipping, "fingerprint": fingerprint.hex(),
            "head": head.hex(), "in_record": in_record}


def position(saved: dict) -> dict:
    """A reader position from the state file, type-checked (raises on malformed input)."""
    offset = int(saved["offset"])
    fingerprint = bytes.fromhex(saved.get("fingerprint", ""))
    if offset < len(fingerprint):
        raise ValueError("offset before the end of its fingerprint")
    return {"dev": int(saved["dev"]), "inode": int(saved["inode"]), "offset": offset,
            "skipping": bool(saved.get("skipping")), "fingerprint": fingerprint,
            "head": bytes.fromhex(saved.get("head", "")),  # an entry may lack the head: it is read from the file
            "in_record": bool(saved.get("in_record"))}


DATABASE_KEY = "{database}"
# The one file every exporter shared before the name held its database, taken over when its own is missing.
SHARED_NAME = "log-offsets.json"


def state_path(template: str, database: Path) -> Path:
    """collectors.logs.state_file with {database} replaced by a short hash of the database's absolute path."""
    key = hashlib.sha256(os.path.abspath(database).encode()).hexdigest()[:12]
    return Path(template.replace(DATABASE_KEY, key)).expanduser()


def load_own_state(template: str, database: Path, http: HttpTotals | None,
                   app: AppFacts) -> tuple[Path, dict[str, dict]]:
    """This exporter's state file and its entries (see load_state).

    Where it does not exist yet, the entries of the file all exporters shared
    before are taken over, so an upgrade does not count every log again; not its
    HTTP totals, which were the last writer's.
    """
    path = state_path(template, database)
    shared = path.with_name(SHARED_NAME)
    if DATABASE_KEY in template and not path.exists() and shared.exists():
        return path, load_state(shared, None, AppFacts())
    return path, load_state(path, http, app)


def load_state(path: Path, http: HttpTotals | None, app: AppFacts) -> dict[str, dict]:
    """The saved entry of each file by path, the HTTP totals restored into `http` and the server's facts into
    `app`; {} if missing or malformed.

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
    app.restore(state.get("app"))
    return files


def state_document(files: dict[str, dict], http: HttpTotals | None, app: AppFacts) -> dict:
    """What load_state() reads back: entries by path (entry_state()), the HTTP totals, the server's facts."""
    state = {"version": STATE_VERSION, "files": files, "app": app.to_state()}
    if http is not None:
        state["http"] = http.to_state()
    return state
