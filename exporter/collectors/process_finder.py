"""Finding the DevFlow server process: by pidfile, command line or listening port.

`ProcessFinder` says which processes are the server (never the exporter, its ancestors or its children);
the operator commands use it too, so they and the exporter agree on which process is DevFlow. With a
workdir (the public build's cwd), a process found by command line or port is the server only if it runs in
that directory or holds its database open: another project's `node .../server/index.js` matches the same
pattern.
`IncrementalScan` is the same search made cheap enough to repeat every few seconds: a look reads the
command line only of processes started since the last look (the pids the kernel handed out since, from
/proc/loadavg) and of those first seen in the last minute (a fork shows its parent's command line until
it execs), so it costs the same with 100 or 2,000 processes on the machine; once an hour it reads them
all again (the first look too, with their start times, to know which are young). Where /proc/loadavg does
not count this namespace's pids (gVisor, a container's lxcfs), each look lists /proc to tell the new ones.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from devflow_monitor.core import procfs
from devflow_monitor.core.config import Config

log = logging.getLogger(__name__)

# Clock granularity between a process's start time and its pidfile's modification time.
PIDFILE_SLACK_SECONDS = 2.0
# Read every command line again this often: catches a process that exec'd the server long after it started.
FULL_SCAN_SECONDS = 3600.0
# A process's command line is read on every look during its first minute (a fork shows its parent's
# command line until it execs: a wrapper script may exec the server seconds later), then no more.
YOUNG_SECONDS = 60.0
# A pid caught inside exec is read again this many times, this far apart, within the same look: up to 0.5 s,
# for a machine so busy that the exec waits for a CPU.
EXEC_RETRIES = 50
EXEC_PAUSE_SECONDS = 0.01
# Up to this many new pids, each one's command line is tried (3 us for a pid no longer there: 1.5 ms in
# all, about what listing /proc costs with 2,000 processes); past it, /proc is listed.
PROBE_LIMIT = 512
RESERVED_PIDS = 300  # Linux's first pid after a wrap (kernel/pid.c)
# After sock_diag is refused (a sandbox, or not Linux), psutil answers until this much later. A timeout
# is not a refusal: psutil answers that one call and the next asks netlink again.
NETLINK_RETRY_SECONDS = 300.0


@dataclass(frozen=True)
class Target:
    """One process, identified by pid and start time so a reused pid is never mistaken for it."""
    pid: int
    create_time: float


class ProcessFinder:
    """Finds DevFlow server processes, never the exporter itself, its ancestors or its children."""

    def __init__(self, pidfile: str | None, pattern: str, port: int, match_port: bool = False,
                 workdir: str | None = None):
        self.pidfile = Path(pidfile).expanduser() if pidfile else None
        self.pattern = re.compile(pattern)
        self.port = port
        # The public build's cwd, resolved as /proc/PID/cwd shows it, and the database it keeps there.
        self.workdir = os.path.realpath(os.path.expanduser(workdir)) if workdir else None
        self.workdir_database = os.path.join(self.workdir, "data", "devflow.db") if self.workdir else None
        self._unreadable_warned = False
        # Off by default: the public build listens on no port, so the owner of :3000 would be
        # some other dev server taken for DevFlow.
        self.match_port = match_port
        me = psutil.Process()
        self.own_pid = me.pid
        # The shell or service manager that started us may carry the pattern in its command line too.
        self.ancestors = {p.pid for p in me.parents()}
        # Monotonic time before which psutil answers port_listening, set when sock_diag refuses. Scrapes
        # and the background look both write it; a lost write costs one more try at most.
        self.netlink_refused_until = 0.0

    @classmethod
    def from_config(cls, config: Config) -> "ProcessFinder":
        devflow = config.devflow
        return cls(devflow.pidfile, devflow.process_pattern, devflow.port, devflow.match_port, devflow.workdir)

    def from_pidfile(self) -> list[Target]:
        pid = procfs.read_pidfile(self.pidfile)
        if pid is None or self.is_own(pid):
            return []
        try:
            created = psutil.Process(pid).create_time()
            written = self.pidfile.stat().st_mtime
        except (psutil.Error, OSError):
            return []
        # A process younger than the pidfile only reused a dead server's PID.
        if created > written + PIDFILE_SLACK_SECONDS:
            return []
        return [Target(pid, created)]

    def scan(self) -> list[Target]:
        """Every matching process, oldest first (the oldest is the one reported)."""
        if self.pidfile:
            return self.from_pidfile()
        found = []
        for proc in psutil.process_iter(["cmdline", "create_time"]):
            cmdline = " ".join(proc.info["cmdline"] or ())
            if cmdline and self.pattern.search(cmdline) and not self.is_own(proc.pid) \
                    and self.in_workdir(proc.pid):
                found.append(Target(proc.pid, proc.info["create_time"]))
        return self.with_port_owners(found)

    def target(self, pid: int) -> Target | None:
        """A matching pid as a Target, unless it is ours, runs in another workdir or is already gone."""
        if self.is_own(pid) or not self.in_workdir(pid):
            return None
        try:
            return Target(pid, psutil.Process(pid).create_time())
        except psutil.Error:
            return None

    def with_port_owners(self, found: list[Target]) -> list[Target]:
        # Which process owns a socket takes a walk over every process's fds: only when one listens.
        if not found and self.match_port and self.port_listening():
            found = self._port_owners()
        return sorted(found, key=lambda t: (t.create_time, t.pid))

    def port_listening(self) -> bool:
        """Whether anything listens on the port: one sock_diag dump, psutil where that fails."""
        if time.monotonic() >= self.netlink_refused_until:
            try:
                return self.port in procfs.listening_ports()
            except TimeoutError:
                log.debug("sock_diag did not answer in time; psutil answers this once")
            except (OSError, AttributeError, struct.error) as exc:  # AttributeError: no AF_NETLINK here
                if not self.netlink_refused_until:
                    log.info("sock_diag refused (%s); reading listening sockets with psutil, asking again "
                             "every %gs", exc, NETLINK_RETRY_SECONDS)
                self.netlink_refused_until = time.monotonic() + NETLINK_RETRY_SECONDS
        try:
            return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port
                       for c in psutil.net_connections(kind="tcp"))
        except psutil.Error:
            return False

    def _port_owners(self) -> list[Target]:
        targets = []
        try:
            connections = psutil.net_connections(kind="tcp")
        except psutil.Error:
            return targets
        for conn in connections:
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == self.port \
                    and conn.pid and not self.is_own(conn.pid) and self.in_workdir(conn.pid):
                try:
                    targets.append(Target(conn.pid, psutil.Process(conn.pid).create_time()))
                except psutil.Error:
                    pass
        return targets

    def in_workdir(self, pid: int) -> bool:
        """True without a workdir; with one, whether `pid` runs in it or holds its database open. A process
        whose cwd cannot be read (another user's) is not taken: nothing says it is the watched server."""
        if self.workdir is None:
            return True
        cwd = procfs.read_cwd(pid)
        if cwd == self.workdir:
            return True
        handles = procfs.count_fds(pid, self.workdir_database)
        if handles is not None:
            return handles.to_path > 0
        if cwd is None and not self._unreadable_warned and psutil.pid_exists(pid):
            self._unreadable_warned = True
            log.warning("cannot read the working directory of PID %d (another user's process?): it is not "
                        "taken for the server in %s", pid, self.workdir)
        return False

    def is_own(self, pid: int) -> bool:
        """The exporter itself, an ancestor, or a descendant (found by walking up from `pid`)."""
        if pid == self.own_pid or pid in self.ancestors:
            return True
        try:
            return any(parent.pid == self.own_pid for parent in psutil.Process(pid).parents())
        except psutil.Error:
            return False


class IncrementalScan:
    """`ProcessFinder.scan()` that reads the command lines of new and young processes only (see the module
    docstring), so a look costs the same with 100 or 2,000 processes on the machine.

    Not thread-safe: its cursors move at each look, so the caller runs one look at a time.
    """

    def __init__(self, finder: ProcessFinder, pid_cursor: bool | None = None):
        self.finder = finder
        # Whether /proc/loadavg tells the new pids (decided at the first look); else each look lists /proc.
        self.pid_cursor = pid_cursor
        self.young: dict[int, float] = {}  # pid -> monotonic time of the look that first saw it
        self.matches: dict[int, Target] = {}
        self.last_pid = 0  # with the cursor: the kernel's last pid at the previous look
        self.listed: set[int] = set()  # without it: the pids /proc listed at the previous look
        self.full_at: float | None = None  # monotonic time of the last look that read every command line

    def scan(self) -> list[Target]:
        if not procfs.PROC_STAT:  # not Linux: the full scan each time
            return self.finder.scan()
        if self.pid_cursor is None:
            self.pid_cursor = procfs.loadavg_counts_our_pids()
            if not self.pid_cursor:
                log.info("/proc/loadavg does not count this pid namespace's pids; listing /proc at each look")
        now = time.monotonic()
        first = self.full_at is None
        full = first or now - self.full_at > FULL_SCAN_SECONDS
        try:
            new, listing = self.new_and_listed(first, full)
        except (OSError, ValueError, IndexError) as exc:  # out of fds, say: the next look tries again
            log.warning("cannot tell which processes are new: %s", exc)
            return self.finder.with_port_owners(list(self.matches.values()))
        if full:
            self.full_at = now
        self.matches = {pid: t for pid, t in self.matches.items() if self.same_process(t)}
        blank = [pid for pid in listing | new | self.young.keys()
                 if pid not in self.matches and self.consider(pid, pid in new, now) == "" and pid in new]
        # A process caught inside exec has its command line a moment later: read it again within this look,
        # so that a server its parent has just seen start is found now, not at the next look. Only new pids
        # whose command line was blank can be inside exec.
        for _ in range(EXEC_RETRIES):
            caught = [pid for pid in blank if procfs.in_exec(pid)]
            if not caught:
                break
            time.sleep(EXEC_PAUSE_SECONDS)
            blank = [pid for pid in caught if self.consider(pid, True, now) == ""]
        # Expired only after the reads: a young pid is read at least once after the look that found it,
        # however far apart the looks are.
        self.young = {pid: seen for pid, seen in self.young.items() if now - seen <= YOUNG_SECONDS}
        return self.finder.with_port_owners(list(self.matches.values()))

    def consider(self, pid: int, is_new: bool, now: float) -> str | None:
        """Match one pid's command line, and return it; keep a new one that does not match yet as young."""
        cmdline = procfs.read_cmdline(pid)
        if cmdline and self.finder.pattern.search(cmdline):
            # /proc/TID answers for every thread too: a server's threads are not more servers.
            process = procfs.is_process(pid)
            target = self.finder.target(pid) if process else None
            if target:
                self.matches[pid] = target
            if target or not process or not self.finder.workdir:
                self.young.pop(pid, None)
            elif is_new:  # outside the workdir: read again while young, it may open the workdir's database
                self.young.setdefault(pid, now)
        elif is_new:
            # Read again while young: it may exec the server, and a pid the kernel counted a moment
            # before /proc showed it, or one in the middle of exec, has no command line yet.
            self.young.setdefault(pid, now)
        elif cmdline is None:  # gone
            self.young.pop(pid, None)
        return cmdline

    def new_and_listed(self, first: bool, full: bool) -> tuple[set[int], set[int]]:
        """The pids started since the previous look, and /proc's listing when `full`. At the first look,
        those started in the last minute: one may exec the server soon."""
        if not self.pid_cursor:
            listing = procfs.listed_pids()
            new = procfs.started_within(listing, YOUNG_SECONDS) if first else listing - self.listed
            self.listed = listing
            return new, listing if full else set()
        last = procfs.read_last_pid()
        listing = procfs.listed_pids() if full else set()
        if first:
            new = procfs.started_within(listing, YOUNG_SECONDS) | newest_pids(1, last)
        else:
            new = new_pids(self.last_pid, last, listing or None)
        self.last_pid = last  # only once the pids up to it are in hand
        return new, listing

    @staticmethod
    def same_process(target: Target) -> bool:
        """Still the process that matched, not another one that reused its pid."""
        try:
            return psutil.Process(target.pid).create_time() == target.create_time
        except psutil.Error:
            return False


def new_pids(previous: int, last: int, listing: set[int] | None = None) -> set[int]:
    """The pids handed out after `previous` up to `last`, processes and threads (they share the pid space).

    Pids are handed out in increasing order and wrap at pid_max. A few new ones are taken whole, /proc
    shown or not; many (a build), or a wrap, are picked from /proc's listing, one read for all. More than
    pid_max forks between two looks cannot be told from none: the hourly look catches what that misses.
    """
    if previous <= last and last - previous <= PROBE_LIMIT:
        return set(range(previous + 1, last + 1))
    if listing is None:
        listing = procfs.listed_pids()
    wrapped = last < previous
    first = RESERVED_PIDS if wrapped else previous + 1
    return newest_pids(first, last) | {pid for pid in listing if first <= pid <= last or (wrapped and pid > previous)}


def newest_pids(first: int, last: int) -> set[int]:
    """The last few pids up to `last`, listed in /proc or not: the kernel counts a pid a moment before
    /proc lists its process."""
    return set(range(max(first, last - 15), last + 1))
