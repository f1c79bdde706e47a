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

A Node crash prints no level field. It is one record of level `fatal`, counted at its first line:

    /home/dev/devflow/node_modules/better-sqlite3/lib/database.js:65     the script and line,
        throw new TypeError('Cannot open database because the directory does not exist');
        ^                                                                the source line, a caret,

    TypeError: Cannot open database because the directory does not exist
        at new Database (/home/dev/devflow/node_modules/better-sqlite3/lib/database.js:65:9)

    Node.js v20.11.1                                                     and Node's version last

Without the source lines a crash starts at its exception (`TypeError: ...`,
`Error [ERR_MODULE_NOT_FOUND]: ...`, `Uncaught ...`) where no record is open;
V8's fatal errors at `FATAL ERROR:` (its GC trace before it is not a record); a
crash seen only by its `Node.js vX` line is counted at that line.

Not records: continuation lines, which belong to the record before them. An
indented line, a line that starts with a closing `}`, `]` or `)` (the body of a
multi-line `[DEBUG] File event: file:change {` ... `}` dump, a stack's `    at`
lines), a blank line. And after an error or warning record in a text format, and
in a crash, every line up to the next record start: the multi-line text of the
error it logs (`[ERROR][GitMonitor] Error processing commit 50c1...: GitError:
fatal: ...` with git's hint lines after it), and the crash's lines up to its
`Node.js vX`. Such a record stays open across chunks: count() takes and returns
whether the chunk ended inside one (the log reader keeps it with the read
position). MCP's JSON-RPC messages on stdout (a JSON object with a "jsonrpc"
key, in any key order: the SDK writes `{"result":...,"jsonrpc":"2.0","id":1}`)
are the protocol, not log records: they are counted apart, as PROTOCOL.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterator, NamedTuple

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
# The words of _LEVEL_WORDS at warn and above (upper case, lower case or capitalised): records with these in
# a text format take the lines after them. Spelt out, not (?i:...): sre then skips a branch by its first byte.
_WARN_OR_WORSE = (rb'(?:[Ee](?:RR(?:OR)?|rr(?:or)?|MERG(?:ENCY)?|merg(?:ency)?)|[Ff](?:ATAL|atal)'
                  rb'|[Cc](?:RIT(?:ICAL)?|rit(?:ical)?)|[Aa](?:LERT|lert)|[Pp](?:ANIC|anic)|[Ww](?:ARN(?:ING)?|arn(?:ing)?))')

# --- Node's crash output ---
_TRAILER = rb'Node\.js v\d'  # Node's last line before it exits on an uncaught exception
# The script and line (a path, file:///..., node:internal/..., <anonymous_script>), the source line, its caret.
_LOCATION = rb'[^\s\[{]\S*:\d+\r?\n[^\n]*\n[ \t]*\^'
_CRASH_START = (rb'(?:' + _LOCATION
                + rb'|\w*(?:Error|Exception)(?: \[[^\]\n]*\])?:'  # TypeError: ... / Error [ERR_X]: ...
                + rb'|Uncaught [^\n:]*:|FATAL ERROR:'
                + rb'|Node\.js v(?=\d))')
_DATE = rb'\d{4}-\d\d-\d\d[ T]'
# Lines that end an open record: a record start in a known format, a crash's first or last line. Not V8's
# GC trace ("[4711:0x55d0...] 41012 ms: Mark-Compact") nor Node's print of an error object
# ("[UnhandledPromiseRejection: ...] {"): they belong to the crash around them.
_BREAK = rb'\[(?!\w+:[ 0])|\{|' + _DATE + rb'|' + _LOCATION + rb'|FATAL ERROR:|' + _TRAILER
# The lines that continue an open record, and the crash's last line if it comes.
_CONTINUATION = rb'(?:\n(?!' + _BREAK + rb')[^\n]*)*(?:\n' + _TRAILER + rb'[^\n]*)?'


# A chunk handed to LevelCounter.count() starts with the newline that ended the line
# before it, so every record start is "\n" + prefix: sre then scans for the
# literal "\n" in C and tries the alternatives only at line starts.
# Group 1 is the record's key, which level_of() folds into its level:
#   - after a level prefix, the level word (`INFO`), or 'jsonrpc"' for a protocol message; a word at warn
#     or above in a text format with the `]` or space after it (`ERROR]`): such a record takes the lines
#     that follow it (the tail below, chosen by that last byte);
#   - at the line start, a crash's first line up to its `:` (`TypeError:`, the location lines up to the
#     caret `^`: it takes the lines that follow too), or `Node.js v`;
#   - at the line start, the first byte of any other line: no level (`unknown`);
#   - empty at the chunk's last newline, unless an open record took it: the chunk ends outside a record.
# In a JSON line the first "severity" key wins: the audit log writes its own before any nested one.
def _record_start(protocol: bool) -> bytes:
    return rb'(?:' + _start_and_key(protocol) + rb'(?:(?<=[\] ^:])[^\n]*' + _CONTINUATION + rb')?|\Z)'


def _start_and_key(protocol: bool) -> bytes:
    """A record's level prefix, if any, and its key (group 1)."""
    return (
        rb'(?:\[(?!\d+:0x)(?:\d{4}-[^\]\n]*\] +\[)?'   # [LEVEL] or [ISO-8601] [LEVEL]
        rb'|' + _DATE + rb'[^ \n]* +\[?'               # YYYY-MM-DD HH:MM:SS LEVEL
        # A JSON-RPC message, before "severity" (a result may carry one); the greedy look-ahead is the fast one.
        + (rb'|\{(?=[^\n]*"jsonrpc" *:)[^\n]*?"(?=jsonrpc")' if protocol else b'')
        + rb'|\{[ \t]*"[^\n]*?"severity" *: *"'        # JSON line: "severity": "LEVEL"
        rb'|)'                                          # none: a crash, or a line without a level
        rb'((?<=[^\n])(?:' + (rb'jsonrpc"|' if protocol else b'') + _WARN_OR_WORSE + rb'[\] ]|\w+(?=[\]" :\r\n]))'
        rb'|(?<![^\n])(?:' + _CRASH_START + rb'|(?!<---|\[\d+:0x)[^\s\]})^:]))')


_RECORD_START = re.compile(b'\n' + _record_start(protocol=False))
# Only chunks that hold a JSON-RPC key pay for looking for one (stdout); the others count about 10% faster.
_RECORD_START_OR_PROTOCOL = re.compile(b'\n' + _record_start(protocol=True))
_PROTOCOL_KEY = b'"jsonrpc"'
_SKIP_CONTINUATION = re.compile(_CONTINUATION)
_WORD = re.compile(rb'\w+')

# The same rules for one line at a time, for the benchmark's per-line reference: the key of a line that
# starts a record (a crash's location needs the two lines after it), and the lines that end an open record.
LINE_RECORD_START = re.compile(_start_and_key(protocol=True))
LINE_BREAK = re.compile(_BREAK)
LINE_TRAILER = re.compile(_TRAILER)

_KEY_CACHE_LIMIT = 1024  # distinct short keys remembered; garbage words and crash lines are folded each time


def has_protocol(buf: bytes, start: int, end: int) -> bool:
    """buf[start:end] may hold a JSON-RPC message (stdout): only such chunks pay for looking for one."""
    return buf.find(_PROTOCOL_KEY, start, end) >= 0


def takes_following_lines(key: bytes) -> bool:
    """A record of this key (group 1 of the record start) is open until the next record start."""
    return len(key) > 1 and key[-1:] in b"] ^:"


class Record(NamedTuple):
    """A record found by LevelCounter.records(): from its first line to the end of the lines it takes
    (or of its level word, for a record that takes none)."""

    level: str
    start: int
    end: int
    crash: bool  # a Node crash, which has no level field


class LevelCounter:
    """Counts records by normalised level in chunks of complete lines."""

    def __init__(self):
        self._key_level: dict[bytes, str] = {b'jsonrpc"': PROTOCOL}

    def count(self, buf: bytes, start: int, end: int, in_record: bool = False,
              protocol: bool | None = None) -> tuple[dict[str, int], bool]:
        """Records by level (and PROTOCOL messages) in buf[start:end], which begins and ends with a newline;
        and whether that ends inside a record that the next chunk may continue.

        The leading newline is the end of the previous line (or a stand-in at
        the start of a file); only records that start after it are counted.
        `in_record`: the previous chunk ended inside such a record, whose lines come first.
        `protocol`: has_protocol() of the chunk, if the caller knows it.
        """
        if protocol is None:
            protocol = has_protocol(buf, start, end)
        if in_record:
            start = _SKIP_CONTINUATION.match(buf, start, end).end()
            if start >= end:
                return {}, True
        pattern = _RECORD_START_OR_PROTOCOL if protocol else _RECORD_START
        keys = pattern.findall(buf, start, end)
        if not keys:
            return {}, False
        still_open = takes_following_lines(keys[-1])
        levels: dict[str, int] = {}
        for key, n in Counter(keys).items():
            if key:
                level = self.level_of(key)
                levels[level] = levels.get(level, 0) + n
        return levels, still_open

    def records(self, buf: bytes, start: int, end: int) -> Iterator[Record]:
        """Each record in buf[start:end], as count() counts them.

        Slower than count(): for a few lines (doctor's tail of a log), not for a log's whole stream.
        """
        pattern = _RECORD_START_OR_PROTOCOL if buf.find(_PROTOCOL_KEY, start, end) >= 0 else _RECORD_START
        for match in pattern.finditer(buf, start, end):
            key = match.group(1)
            if key and (level := self.level_of(key)) != PROTOCOL:
                yield Record(level, match.start() + 1, match.end(), _is_crash_key(key))

    def level_of(self, key: bytes) -> str:
        level = self._key_level.get(key)
        if level is None:
            level = _level_of_key(key)
            if len(self._key_level) < _KEY_CACHE_LIMIT and len(key) <= 32:
                self._key_level[key] = level
        return level


_EXCEPTION_LINE = re.compile(rb'^(?:\w*(?:Error|Exception)(?: \[[^\]\n]*\])?:|Uncaught |FATAL ERROR:)[^\n]*', re.M)


def exception_line(record: bytes) -> bytes | None:
    """The line of a crash record that names its exception (`TypeError: ...`), or None if it has none."""
    match = _EXCEPTION_LINE.search(record)
    return match.group(0).rstrip(b"\r") if match else None


def _level_of_key(key: bytes) -> str:
    if len(key) == 1:  # the first byte of a line without a level field
        return "unknown"
    if _is_crash_key(key):
        return "fatal"
    return _LEVEL_WORDS.get(key.rstrip(b"] ").decode("ascii").lower(), "unknown")


def _is_crash_key(key: bytes) -> bool:
    """Not a level word (with the `]` or space after it), nor a line's first byte, nor 'jsonrpc"'."""
    return len(key) > 1 and key != b'jsonrpc"' and not _WORD.fullmatch(key[:-1] if key[-1:] in b"] " else key)


# --- what the server says about itself ---------------------------------------------------------------

# The MCP initialize reply on stdout: {"result":{...,"serverInfo":{"name":"devflow-monitor","version":"0.1.0"}},...}
_SERVER_INFO_KEY = b'"serverInfo"'
_SERVER_VERSION = re.compile(rb'"serverInfo" *: *\{[^{}\n]*?"version" *: *"([^"\n]{1,64})"')
# A monitor's start or stop on stderr: [INFO][FileMonitor] Monitor started (GitMonitor, TestMonitor alike).
_MONITOR_KEY = b"] Monitor st"
_MONITOR_LINE = re.compile(rb'\n\[\w+\] ?\[(File|Git|Test)\w*\] Monitor (started|stopped)\b')
MONITORS = ("file", "git", "test")
_MONITOR_STATE = {b"started": "active", b"stopped": "stopped"}


class AppFacts:
    """The server's version (its MCP initialize reply's serverInfo) and each monitor's state (its last
    `Monitor started` or `Monitor stopped` line): what a server without an HTTP /status says in its logs."""

    def __init__(self):
        self.version: str | None = None
        self.monitors: dict[str, str] = {}  # file/git/test -> active or stopped

    def read(self, buf: bytes, start: int, end: int, protocol: bool) -> bool:
        """Take the facts of buf[start:end] (complete lines, after a newline); True if it held any.
        `protocol`: has_protocol() of the chunk (the initialize reply is a JSON-RPC message).

        Substring searches decide whether a chunk is worth a regex: most hold neither.
        """
        found = False
        if protocol and buf.find(_SERVER_INFO_KEY, start, end) >= 0:
            versions = _SERVER_VERSION.findall(buf, start, end)
            if versions:  # bounded label: a server bug must not mint endless series
                self.version = re.sub(r"[^0-9A-Za-z._+-]", "_", versions[-1].decode("utf-8", "replace"))
                found = True
        if buf.find(_MONITOR_KEY, start, end) >= 0:
            for name, state in _MONITOR_LINE.findall(buf, start, end):
                self.monitors[name.decode().lower()] = _MONITOR_STATE[state]
                found = True
        return found

    def merge(self, newer: AppFacts) -> None:
        """Take what `newer`, read after these, says."""
        self.version = newer.version or self.version
        self.monitors.update(newer.monitors)

    def copy(self) -> AppFacts:
        other = AppFacts()
        other.version, other.monitors = self.version, dict(self.monitors)
        return other

    def to_state(self) -> dict:
        return {"version": self.version, "monitors": dict(self.monitors)}

    def restore(self, state) -> None:
        """Continue from to_state(); what is malformed is left out."""
        if not isinstance(state, dict):
            return
        version, monitors = state.get("version"), state.get("monitors")
        if isinstance(version, str) and 0 < len(version) <= 64:
            self.version = version
        if isinstance(monitors, dict):
            self.monitors.update({monitor: value for monitor, value in monitors.items()
                                  if monitor in MONITORS and value in _MONITOR_STATE.values()})


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
