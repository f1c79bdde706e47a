"""The server's exits, judged clean or crash, for the process collector.

An MCP client (an editor, a desktop AI app) starts the public build over stdio and stops it when it
closes, so in on_demand mode an exit alone is no fault. An exit is a crash when:
- the server's client (its parent when it was found; not init, which adopts orphans) still runs
  `grace` seconds after the exit was seen: a client that closes stops its server, then exits itself;
- or a fatal record reached its logs since it was last seen running: Node prints the uncaught exception,
  its stack and `Node.js v20...`, which the logs collector counts as one `fatal` record.
Otherwise it is clean. In daemon mode the parent is a service manager that outlives every stop, so only
the logs tell a crash.

The judgement waits for the grace at a later scrape, never inside one: the exit is seen at a scrape,
whose logs pass then reads what the server wrote before it exited, so a scrape after the grace knows
both. The fatal records come from `devflow_log_lines_total{level="fatal"}` as the logs collector
published it at the end of the last scrape (`CollectorSet` hands it over).

Not thread-safe: the process collector calls it with its `_lock` held.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from devflow_monitor.core import procfs
from devflow_monitor.exporter.collectors.process_finder import Target

REASONS = ("clean", "crash")
INIT_PID = 1  # adopts orphans: an exit under it says nothing about a client


@dataclass(frozen=True)
class Exit:
    reason: str  # one of REASONS
    at: float  # when the exporter saw the server gone, seconds since the epoch


@dataclass(frozen=True)
class _Pending:
    at: float  # epoch seconds, published as the exit's time
    seen: float  # monotonic seconds, from which the grace runs
    client: Target | None
    fatal_before: int  # fatal records counted before the server was last seen running


class FatalRecords:
    """Fatal records counted in the logs since the first figures arrived, across files: a file whose series
    goes (a globbed log deleted) does not lower it, and one that appears adds all of its records."""

    def __init__(self):
        self.seen = 0
        self._last: dict[str, float] | None = None

    def update(self, by_file: dict[str, float] | None) -> None:
        """The latest `devflow_log_lines_total{level="fatal"}` by file; None when the logs are not read."""
        if by_file is None:
            return
        if self._last is not None:
            self.seen += int(sum(max(0.0, n - self._last.get(path, 0.0)) for path, n in by_file.items()))
        self._last = dict(by_file)


class ExitJudge:
    """Counts the exits of the server the process collector reports, by reason."""

    def __init__(self, grace: float, watch_client: bool):
        self.grace = grace
        self.watch_client = watch_client  # on_demand: the parent is the MCP client
        self.counts = dict.fromkeys(REASONS, 0)
        self.last: Exit | None = None
        self.fatal = FatalRecords()
        self._client: Target | None = None
        # The fatal records counted at the two latest scrapes that saw the server running. An exit is judged
        # against the earlier one: a server may print its crash, be read by a scrape, and exit a moment later.
        self._fatal_marks = (0, 0)
        self._pending: _Pending | None = None

    def found(self, proc: psutil.Process) -> None:
        """A server is now the one reported: remember its client."""
        self._client = self._parent(proc) if self.watch_client else None
        self._fatal_marks = (self.fatal.seen, self.fatal.seen)

    def running(self) -> None:
        """The server was seen running at this scrape."""
        self._fatal_marks = (self._fatal_marks[1], self.fatal.seen)

    def gone(self) -> None:
        """The server reported so far has gone; judged after the grace."""
        if self._pending is not None:  # the one before it exited within the grace too: judge it now
            self._judge(self._pending)
        self._pending = _Pending(time.time(), time.monotonic(), self._client, self._fatal_marks[0])
        self._client = None

    def judge_due(self) -> None:
        """Judge the pending exit once a fatal record tells a crash, or its grace has passed."""
        pending = self._pending
        if pending is None:
            return
        if self.fatal.seen > pending.fatal_before or time.monotonic() - pending.seen >= self.grace:
            self._judge(pending)

    def _judge(self, pending: _Pending) -> None:
        crashed = self.fatal.seen > pending.fatal_before or _still_running(pending.client)
        reason = "crash" if crashed else "clean"
        self.counts[reason] += 1
        self.last = Exit(reason, pending.at)
        self._pending = None

    @staticmethod
    def _parent(proc: psutil.Process) -> Target | None:
        try:
            parent = proc.parent()
            if parent is None or parent.pid == INIT_PID:
                return None
            return Target(parent.pid, parent.create_time())
        except psutil.Error:
            return None


def _still_running(target: Target | None) -> bool:
    if target is None:
        return False
    try:
        proc = psutil.Process(target.pid)
        return proc.create_time() == target.create_time and procfs.alive(proc)
    except psutil.Error:
        return False
