"""The log reader's counters: records by level, JSON-RPC messages, bytes, read errors, rotations, HTTP requests;
and what the server's lines say about it (its version, its monitors).

`LogCounts` is the `Tally` every TailedFile reports to: it counts the lines it
is handed (levels in core/logformat.py, or the access log's requests) into the
FileCounts of their path, which collect() publishes and the state file saves.
"""

from __future__ import annotations

import logging
import threading

from devflow_monitor.core.logformat import (ERROR_LEVELS, PROTOCOL, AccessLogParser, AppFacts, HttpTotals,
                                            LevelCounter, has_protocol, invalid_utf8_lines)
from devflow_monitor.exporter.collectors.logreader import Lines
from devflow_monitor.exporter.logstate import FileCounts

log = logging.getLogger(__name__)

LINE_HEAD_BYTES = 4096  # how much of an over-long line is kept to read its level


class LogCounts:
    """The counters of every tracked path and of the access log, and the counting of lines into them."""

    def __init__(self, access_path: str | None, access: AccessLogParser | None):
        self._access_path = access_path
        self._access = access
        self._levels = LevelCounter()  # its level-word cache is the pass's
        # lock guards `files` (the dict and each FileCounts), `http` and `app`: a pass writes them while
        # collect(), /status and the state file writer read them.
        self.lock = threading.Lock()
        self.files: dict[str, FileCounts] = {}
        self.http = HttpTotals() if access is not None else None
        self.app = AppFacts()  # the last version and monitor states any log file told
        self.dirty = False  # changed since the state file was written: set by a pass, cleared by the writer

    def lines(self, path: str, lines: Lines) -> None:
        """Count the complete lines read from `path` and the bytes they take."""
        levels: dict[str, int] = {}
        errors: dict[str, int] = {}
        access = path == self._access_path
        if lines.end:
            bad = invalid_utf8_lines(lines.data, 1, lines.end)
            if bad:
                errors["invalid_utf8"] = bad
            if access:
                totals, unmatched = self._access.parse(lines.data, 1, lines.end - 1)
                with self.lock:
                    self.http.merge(totals)
                if unmatched:
                    errors["access_line_unparsed"] = unmatched
            else:
                protocol = has_protocol(lines.data, 0, lines.end)
                # Continues the record this file's last lines left open (a crash, an error's text).
                counted, lines.reader.in_record = self._levels.count(lines.data, 0, lines.end,
                                                                     lines.reader.in_record, protocol)
                _add(levels, counted)
                facts = AppFacts()
                if facts.read(lines.data, 0, lines.end, protocol):
                    with self.lock:
                        self.app.merge(facts)
        if lines.long_line is not None:  # counted by its start
            if not access:
                counted, lines.reader.in_record = self._levels.count(lines.long_line, 0, LINE_HEAD_BYTES,
                                                                     lines.reader.in_record)
                _add(levels, counted)
            errors["line_too_long"] = errors.get("line_too_long", 0) + 1
        error_time = None
        if any(levels.get(level) for level in ERROR_LEVELS):
            error_time = lines.written_at()
        with self.lock:
            counts = self.files[path]
            counts.bytes += lines.consumed
            counts.protocol_messages += levels.pop(PROTOCOL, 0)
            for level, n in levels.items():
                counts.lines[level] += n
            for reason, n in errors.items():
                counts.read_errors[reason] += n
            if error_time is not None and (counts.last_error is None or error_time > counts.last_error):
                counts.last_error = error_time
        self.dirty = True

    def read_error(self, path: str, reason: str) -> None:
        with self.lock:
            self.files[path].read_errors[reason] += 1
        self.dirty = True
        log.debug("logs: %s: %s", path, reason)

    def rotation(self, path: str, kind: str) -> None:
        with self.lock:
            self.files[path].rotations[kind] += 1
        self.dirty = True

    def moved(self, path: str) -> None:
        self.dirty = True


def _add(total: dict, more: dict) -> None:
    for key, n in more.items():
        total[key] = total.get(key, 0) + n
