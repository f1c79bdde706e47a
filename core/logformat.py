"""DevFlow's log formats (docs/devflow.md "Logs"): which lines are records, at which level; and
the names logrotate gives the copies it keeps.

Levels are counted on bytes, in whole chunks of complete lines: one compiled
regex finds the record starts of a chunk in C (`findall`), so counting keeps up
with a log written at full speed. The access log, far smaller, is parsed line by
line (AccessLogParser).

Record starts, each counted once at the level of its own level field:

    [INFO][GitMonitor] New commit detected: e6d47ac - chore: update
    [2026-11-26T11:37:33.687Z] [INFO] [ProjectManager] message
    2025-08-02 14:00:01 ERROR message
    {"timestamp": "...", "eventType": "...", "severity": "warning", "category": "..."}
    Running migration 1...                        (no level field: `unknown`)

The level is never taken from a level word inside the message (`[INFO] retrying
after ERROR` is info). A line without a known level word (`[GitMonitor] ...`, a
JSON line without severity, a plain line) is a record of level `unknown`.

Not records: continuation lines, which belong to the record before them: an
indented line, a line that starts with a closing `}`, `]` or `)` (the body of a
multi-line `[DEBUG] File event: file:change {` ... `}` dump, a stack's `    at`
lines), and an error's header line in a stack (`GitError: fatal: ...`); blank
lines. MCP's JSON-RPC messages on stdout (a JSON object with a "jsonrpc" key, in
any key order: the SDK writes `{"result":...,"jsonrpc":"2.0","id":1}`) are the
protocol, not log records: they are counted apart, as PROTOCOL.
"""

from __future__ import annotations

import re
from collections import Counter

from devflow_monitor.core.histogram import Histogram

LEVELS = ("debug", "info", "warn", "error", "fatal", "unknown")
# The default of the settings' app.error_levels; the exporter counts its last-error time by these.
ERROR_LEVELS = frozenset({"error", "fatal"})
PROTOCOL = "protocol"  # what LevelCounter.count() returns for JSON-RPC messages: not a level

# Level words as written by Node loggers, syslog and the audit log, folded to LEVELS.
_LEVEL_WORDS = {
    "trace": "debug", "debug": "debug", "verbose": "debug",
    "info": "info", "information": "info", "notice": "info",
    "warn": "warn", "warning": "warn",
    "error": "error", "err": "error",
    "fatal": "fatal", "critical": "fatal", "crit": "fatal", "alert": "fatal", "emerg": "fatal",
    "emergency": "fatal", "panic": "fatal",
}

# A chunk handed to LevelCounter.count() starts with the newline that ended the line
# before it, so every record start is "\n" + prefix: sre then scans for the
# literal "\n" in C and tries the alternatives only at line starts.
# Group 1 is the level word, or 'jsonrpc"' for a protocol message; a record
# without a readable level matches the last alternative with the group empty,
# and counts as `unknown`. In a JSON line the first "severity" key wins: the
# audit log writes its own before any nested one.
def _record_start(protocol: bool) -> bytes:
    return (
        rb'(?:'
        rb'(?:\[(?:\d{4}-[^\]\n]*\] +\[)?'            # [LEVEL] or [ISO-8601] [LEVEL]
        rb'|\d{4}-\d\d-\d\d[ T][^ \n]* +\[?'           # YYYY-MM-DD HH:MM:SS LEVEL
        # A JSON-RPC message, before "severity" (a result may carry one); the greedy look-ahead is the fast one.
        + (rb'|\{(?=[^\n]*"jsonrpc" *:)[^\n]*?"(?=jsonrpc")' if protocol else b'')
        + rb'|\{[ \t]*"[^\n]*?"severity" *: *"'          # JSON line: "severity": "LEVEL"
        rb')(jsonrpc"|\w+)(?=[\]" :\r\n])'
        rb'|(?=[^\s\]})])(?!\w*(?:Error|Exception):)'  # any other line but a continuation: no level
        rb')')


_RECORD_START = re.compile(b'\n' + _record_start(protocol=False))
# Only chunks that hold a JSON-RPC key pay for looking for one (stdout); the others count about 10% faster.
_RECORD_START_OR_PROTOCOL = re.compile(b'\n' + _record_start(protocol=True))
_PROTOCOL_KEY = b'"jsonrpc"'
# The same rules for one line at a time (with its newline): the benchmark's per-line reference.
LINE_RECORD_START = re.compile(_record_start(protocol=True))

_WORD_CACHE_LIMIT = 1024  # distinct raw level words remembered; garbage words are folded each time


class LevelCounter:
    """Counts records by normalised level in chunks of complete lines."""

    def __init__(self):
        self._word_level: dict[bytes, str] = {b"": "unknown", b'jsonrpc"': PROTOCOL}

    def count(self, buf: bytes, start: int, end: int) -> dict[str, int]:
        """Records by level (and PROTOCOL messages) in buf[start:end], which begins and ends with a newline.

        The leading newline is the end of the previous line (or a stand-in at
        the start of a file); only records that start after it are counted.
        """
        pattern = _RECORD_START_OR_PROTOCOL if buf.find(_PROTOCOL_KEY, start, end) >= 0 else _RECORD_START
        words = Counter(pattern.findall(buf, start, end))
        levels: dict[str, int] = {}
        for word, n in words.items():
            level = self.level_of(word)
            levels[level] = levels.get(level, 0) + n
        return levels

    def level_of(self, word: bytes) -> str:
        level = self._word_level.get(word)
        if level is None:
            level = _LEVEL_WORDS.get(word.decode("ascii", "replace").lower(), "unknown")
            if len(self._word_level) < _WORD_CACHE_LIMIT:
                self._word_level[word] = level
        return level


# --- file names -----------------------------------------------------------------------------------

COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".z", ".zip", ".7z", ".br")
# What logrotate leaves beside server.log: numbered (server.log.1) and dateext copies
# (server.log-20250802, server.log-2025080214, server.log-2025-08-02), compressed or not.
_ROTATED_SUFFIX = re.compile(r"(?:\.\d{1,4}|[.-]\d{8}(?:\d{2})?|[.-]\d{4}-\d\d-\d\d)$")


def is_compressed(name: str) -> bool:
    return name.lower().endswith(COMPRESSED_SUFFIXES)


def rotated_from(name: str) -> str | None:
    """The live log's name a rotated copy was made from (server.log for server.log.2.gz), or None."""
    lower = name.lower()
    stem = next((name[:-len(suffix)] for suffix in COMPRESSED_SUFFIXES if lower.endswith(suffix)), name)
    match = _ROTATED_SUFFIX.search(stem)
    return stem[:match.start()] if match and match.start() > 0 else None


# --- line contents -----------------------------------------------------------------------------------

def invalid_utf8_lines(buf: bytes, start: int, end: int) -> int:
    """How many lines of buf[start:end] are not valid UTF-8 (0 fast for ASCII chunks)."""
    if buf.isascii():
        return 0
    view = memoryview(buf)
    bad = 0
    pos = start
    while pos < end:
        try:
            str(view[pos:end], "utf-8")
            break
        except UnicodeDecodeError as exc:
            bad += 1
            newline = buf.find(b"\n", pos + exc.start, end)
            if newline < 0:
                break
            pos = newline + 1
    return bad


# Buckets around the guide's 100 ms response-time target.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
HTTP_CODE_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_DURATION_UNITS = {b"ms": 0.001, b"s": 1.0, b"us": 0.000001, b"": 1.0}
_CODE_CLASS = re.compile(r"\dxx")  # the `code` label values AccessLogParser produces


class HttpTotals:
    """Requests by status class and their response times (a Histogram with HTTP_BUCKETS)."""

    def __init__(self):
        self.requests: dict[str, int] = dict.fromkeys(HTTP_CODE_CLASSES, 0)
        self.durations = Histogram(HTTP_BUCKETS)

    def merge(self, other: HttpTotals) -> None:
        for code, n in other.requests.items():
            self.requests[code] = self.requests.get(code, 0) + n
        self.durations.merge(other.durations)

    def to_state(self) -> dict:
        durations = self.durations
        return {"requests": dict(self.requests), "buckets": list(durations.counts),
                "sum": durations.sum, "count": durations.count}

    def restore(self, state: dict) -> bool:
        """Continue totals saved by to_state(); False, and nothing changed, if malformed or of another layout."""
        try:
            requests = {code: int(n) for code, n in state["requests"].items()}
            buckets = [int(n) for n in state["buckets"]]
            duration_sum, duration_count = float(state["sum"]), int(state["count"])
        except (AttributeError, KeyError, TypeError, ValueError):
            return False
        if len(buckets) != len(self.durations.counts) or not all(map(_CODE_CLASS.fullmatch, requests)):
            return False
        self.requests.update(requests)
        self.durations.counts, self.durations.sum, self.durations.count = buckets, duration_sum, duration_count
        return True


class AccessLogParser:
    """Reads access-log lines with the configured pattern (config `collectors.logs.access_log_pattern`).

    The pattern has a named group `status`, optionally `duration` and `unit`
    (ms or s; a bare number is seconds), e.g. for
    `127.0.0.1 - - [02/Aug/2025:14:00:01 +0000] "GET /health HTTP/1.1" 200 312 4.2ms`.
    Access logs are read line by line: they are far smaller than the app logs.
    """

    def __init__(self, pattern: str):
        self._pattern = re.compile(pattern.encode())
        groups = self._pattern.groupindex
        self._has_duration = "duration" in groups
        self._has_unit = "unit" in groups

    def parse(self, buf: bytes, start: int, end: int) -> tuple[HttpTotals, int]:
        """Totals of the lines in buf[start:end], and how many lines did not match the pattern."""
        totals = HttpTotals()
        unmatched = 0
        for line in buf[start:end].split(b"\n"):
            if not line:
                continue
            match = self._pattern.search(line.rstrip(b"\r"))
            status = match.group("status") if match else None
            if not status or not status[:1].isdigit():
                unmatched += 1
                continue
            code = status[:1].decode() + "xx"  # ten values at most
            totals.requests[code] = totals.requests.get(code, 0) + 1
            duration = match.group("duration") if self._has_duration else None
            if duration:
                unit = (match.group("unit") or b"") if self._has_unit else b""
                try:
                    totals.durations.observe(float(duration) * _DURATION_UNITS.get(unit.lower(), 1.0))
                except ValueError:
                    pass
        return totals, unmatched
