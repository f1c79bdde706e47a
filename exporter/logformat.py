"""DevFlow's log line formats (FACTS.md "Logs"): which lines start a record, at which level.

Levels are counted on bytes, in whole chunks of complete lines: one compiled
regex finds the record starts of a chunk in C (`findall`), so counting keeps up
with a log written at full speed. The access log, far smaller, is parsed line by
line (AccessLogParser).

Record starts (anything else is a continuation of the record before it, such as
the body of a multi-line `[DEBUG] File event: file:change {` ... `}` dump):

    [INFO][GitMonitor] New commit detected: e6d47ac - chore: update
    [2026-11-26T11:37:33.687Z] [INFO] [ProjectManager] message
    2025-08-02 14:00:01 ERROR message
    {"timestamp": "...", "eventType": "...", "severity": "warning", "category": "..."}

The level is taken from the record's own level field, never from a level word
inside the message (`[INFO] retrying after ERROR` is info). A record start
without a known level word (`[GitMonitor] ...`, a JSON line without severity)
counts as `unknown`.
"""

from __future__ import annotations

import re
from collections import Counter

LEVELS = ("debug", "info", "warn", "error", "fatal", "unknown")
ERROR_LEVELS = frozenset({"error", "fatal"})

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
# Group 1 is the level word; a record start without a readable level (a JSON
# line without severity, a timestamped line without a level) matches one of the
# last alternatives with the group empty, and counts as `unknown`. In a JSON
# line the first "severity" key wins: the audit log writes its own before any nested one.
_RECORD_START_BODY = (
    rb'(?:'
    rb'(?:\[(?:\d{4}-[^\]\n]*\] +\[)?'           # [LEVEL] or [ISO-8601] [LEVEL]
    rb'|\d{4}-\d\d-\d\d[ T][^ \n]* +\[?'          # YYYY-MM-DD HH:MM:SS LEVEL
    rb'|\{[ \t]*"[^\n]*?"severity" *: *"'         # JSON line: "severity": "LEVEL"
    rb')(\w+)(?=[\]" :\r\n])'
    rb'|\[\d{4}-\d\d-\d\d|\d{4}-\d\d-\d\d[ T]\d\d:\d\d|\{[ \t]*")')
_RECORD_START = re.compile(rb'\n' + _RECORD_START_BODY)
# The same rules for one line at a time (with its newline): the benchmark's per-line reference.
LINE_RECORD_START = re.compile(_RECORD_START_BODY)

_WORD_CACHE_LIMIT = 1024  # distinct raw level words remembered; garbage words are folded each time


class LevelCounter:
    """Counts records by normalised level in chunks of complete lines."""

    def __init__(self):
        self._word_level: dict[bytes, str] = {b"": "unknown"}

    def count(self, buf: bytes, start: int, end: int) -> dict[str, int]:
        """Records by level in buf[start:end], which begins with a newline and ends with one.

        The leading newline is the end of the previous line (or a stand-in at
        the start of a file); only records that start after it are counted.
        """
        words = Counter(_RECORD_START.findall(buf, start, end))
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
    """Requests by status class and response times: a histogram with HTTP_BUCKETS."""

    def __init__(self):
        self.requests: dict[str, int] = dict.fromkeys(HTTP_CODE_CLASSES, 0)
        self.buckets = [0] * (len(HTTP_BUCKETS) + 1)  # per bucket, not cumulative; the last is +Inf
        self.duration_sum = 0.0
        self.duration_count = 0

    def observe(self, seconds: float) -> None:
        index = 0
        while index < len(HTTP_BUCKETS) and seconds > HTTP_BUCKETS[index]:
            index += 1
        self.buckets[index] += 1
        self.duration_sum += seconds
        self.duration_count += 1

    def merge(self, other: "HttpTotals") -> None:
        for code, n in other.requests.items():
            self.requests[code] = self.requests.get(code, 0) + n
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets)]
        self.duration_sum += other.duration_sum
        self.duration_count += other.duration_count

    def cumulative_buckets(self) -> list[tuple[str, int]]:
        """(le, count) pairs as a Prometheus histogram wants them, ending with +Inf."""
        out, running = [], 0
        for bound, n in zip((*map(str, HTTP_BUCKETS), "+Inf"), self.buckets):
            running += n
            out.append((bound, running))
        return out

    def to_state(self) -> dict:
        return {"requests": dict(self.requests), "buckets": list(self.buckets),
                "sum": self.duration_sum, "count": self.duration_count}

    def restore(self, state: dict) -> bool:
        """Continue totals saved by to_state(); False, and nothing changed, if malformed or of another layout."""
        try:
            requests = {code: int(n) for code, n in state["requests"].items()}
            buckets = [int(n) for n in state["buckets"]]
            duration_sum, duration_count = float(state["sum"]), int(state["count"])
        except (AttributeError, KeyError, TypeError, ValueError):
            return False
        if len(buckets) != len(self.buckets) or not all(map(_CODE_CLASS.fullmatch, requests)):
            return False
        self.requests.update(requests)
        self.buckets, self.duration_sum, self.duration_count = buckets, duration_sum, duration_count
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
                    totals.observe(float(duration) * _DURATION_UNITS.get(unit.lower(), 1.0))
                except ValueError:
                    pass
        return totals, unmatched
