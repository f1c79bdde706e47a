"""The simulator's log files and the lines the DevFlow server writes into them.

Formats (docs/devflow.md): devflow-monitor.err (stderr style), devflow-monitor.out (stdout style),
server.log and error.log (the guide's `2025-08-02 14:00:01 ERROR ...`), access.log (common log format
plus response time) and audit/audit-YYYY-MM-DD.log (JSON lines). Every file is opened in append mode
and reopened after rotation (SIGUSR1, or a changed inode).

A batch of lines is a dict: file name (or "audit" for today's audit file) -> lines.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from devflow_monitor.core import devflow_db

# The log file watcher reports chokidar's event names, not the stored types (docs/devflow.md shows `file:change`).
WATCHER_NAMES = {"created": "add", "changed": "change", "deleted": "unlink"}


class LogFiles:
    """Append-mode log files that follow rotation: reopened on SIGUSR1 and whenever the inode changed."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self._lock = threading.Lock()   # guards _open and the files in it
        self._open: dict[str, tuple[object, int, int]] = {}   # relative path -> (file, st_dev, st_ino)
        self._reopen_requested = False
        if directory is not None:
            (directory / "audit").mkdir(parents=True, exist_ok=True)

    def request_reopen(self) -> None:
        """Called from the SIGUSR1 handler: only set a flag, the next write reopens."""
        self._reopen_requested = True

    def record(self, lines: dict[str, list[str]]) -> None:
        """Append a batch, "audit" lines to today's audit file; a failed write is reported, not raised."""
        if "audit" in lines:
            lines[f"audit/audit-{datetime.now(timezone.utc):%Y-%m-%d}.log"] = lines.pop("audit")
        try:
            self.write(lines)
        except OSError as exc:   # a full disk or a vanished directory must not stop the server
            print(f"devflow-monitor simulate: cannot write logs: {exc}", file=sys.stderr, flush=True)

    def write(self, batches: dict[str, list[str]]) -> None:
        """Append lines to files (relative names); one stat and one flush per file."""
        if self.directory is None:
            return
        with self._lock:
            if self._reopen_requested:
                self._reopen_requested = False
                self._close_all()
            for name, lines in batches.items():
                if lines:
                    handle = self._handle(name)
                    handle.write("".join(line + "\n" for line in lines))
                    handle.flush()

    def close(self) -> None:
        with self._lock:
            self._close_all()

    def _handle(self, name: str):
        path = self.directory / name
        entry = self._open.get(name)
        if entry is not None:
            try:
                stat = os.stat(path)
                if (stat.st_dev, stat.st_ino) == entry[1:]:
                    return entry[0]
            except FileNotFoundError:
                pass
            entry[0].close()
        if name.startswith("audit/"):
            self._close_matching("audit/")   # a new day's audit file: yesterday's is done
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a", encoding="utf-8", opener=_open_0640)
        stat = os.fstat(handle.fileno())
        self._open[name] = (handle, stat.st_dev, stat.st_ino)
        return handle

    def _close_matching(self, prefix: str) -> None:
        for name in [name for name in self._open if name.startswith(prefix)]:
            self._open.pop(name)[0].close()

    def _close_all(self) -> None:
        self._close_matching("")


def _open_0640(path, flags):
    return os.open(path, flags, 0o640)   # the guide's logrotate `create 0640`


def merge(into: dict[str, list[str]], more: dict[str, list[str]]) -> None:
    """Add another batch's lines to `into`, file by file."""
    for name, lines in more.items():
        into.setdefault(name, []).extend(lines)


def lines_for(level: str, component: str, message: str, wall: float | None = None) -> dict[str, list[str]]:
    """One message in every format that carries it: .err, .out, server.log and (errors) error.log."""
    wall = time.time() if wall is None else wall
    upper = level.upper()
    guide = f"{guide_time(wall)} {upper} [{component}] {message}"
    lines = {"devflow-monitor.out": [f"[{iso_ms(wall)}] [{upper}] [{component}] {message}"],
             "devflow-monitor.err": [f"[{upper}][{component}] {message}"],
             "server.log": [guide]}
    if level == "error":
        lines["error.log"] = [guide]
    return lines


def event_lines(event_type: str, timestamp_ms: int, seq: int) -> dict[str, list[str]]:
    """The lines the server writes for one event, built from the same `data` JSON it stores."""
    event = json.loads(devflow_db.event_data(event_type, timestamp_ms, seq))
    payload, category, action = event["data"], event["category"], event["data"]["action"]
    wall = timestamp_ms / 1000
    audit = json.dumps({"timestamp": iso_ms(wall), "eventType": event_type, "severity": "info",
                        "category": category, "source": event["source"], "id": event["id"]})
    if category in ("file", "dir"):
        watcher = WATCHER_NAMES.get(action, action) + ("Dir" if category == "dir" else "")
        dump = [f"[DEBUG] File event: {category}:{watcher} {{", f"  type: '{event_type}',",
                f"  path: '{payload['path']}',", f"  timestamp: {timestamp_ms}", "}"]
        # File events reach stderr only as debug dumps, and server.log as one line.
        lines = {"devflow-monitor.err": dump,
                 "server.log": [f"{guide_time(wall)} INFO [FileMonitor] {event_type} {payload['path']}"]}
    elif category == "git":
        lines = lines_for("info", "GitMonitor", _git_message(action, payload, seq), wall)
    else:
        level = "warn" if action == "failed" else "info"
        lines = lines_for(level, f"{category.capitalize()}Monitor", f"{event_type} recorded", wall)
    lines["audit"] = [audit]
    return lines


def audit_error(component: str, message: str, wall: float) -> str:
    """The audit log's JSON line for an error."""
    return json.dumps({"timestamp": iso_ms(wall), "eventType": "system:error", "severity": "error",
                       "category": "system", "source": component, "message": message})


def _git_message(action: str, payload: dict, seq: int) -> str:
    branch = f"feature/sim-{seq % 13}"
    return {
        "commit": f"New commit detected: {payload.get('hash', '')[:7]} - {payload.get('message', '')}",
        "merge": f"Merge detected: {branch} into main",
        "branch_created": f"Branch created: {branch}",
        "branch_updated": f"Branch updated: {branch}",
        "branch_deleted": f"Branch deleted: {branch}",
        "monitor_started": "Git monitor started",
        "monitor_stopped": "Git monitor stopped",
    }.get(action, f"Git event: {action}")


def iso_ms(wall: float) -> str:
    """`2026-11-26T11:37:33.687Z`, JavaScript's toISOString()."""
    moment = datetime.fromtimestamp(wall, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def guide_time(wall: float) -> str:
    """`2025-08-02 14:00:01`, the guide's server.log timestamp (UTC here)."""
    return datetime.fromtimestamp(wall, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def access_line(client: str, wall: float, method: str, path: str, status: int, size: int,
                elapsed_ms: float) -> str:
    """Common log format plus the response time in milliseconds."""
    when = datetime.fromtimestamp(wall, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{client} - - [{when}] "{method} {path} HTTP/1.1" {status} {size} {elapsed_ms:.1f}ms'
