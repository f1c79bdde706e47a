"""The DevFlow server process: found by pidfile, command line or port.

Sample output:

    devflow_process_up 1.0
    devflow_process_matches 1.0
    devflow_process_cpu_seconds_total{mode="user"} 12.4
    devflow_process_resident_memory_bytes 9.6e+07
    devflow_process_open_sockets 2.0
    devflow_process_port_listening{port="3000"} 0.0
    devflow_db_connections 1.0

What it costs between scrapes (issue 12: the old 5 s scan of every command
line was two thirds of the exporter's idle CPU):
- a scrape re-reads the one process it knows (/proc/PID/stat), counts its
  socket fds, and asks the kernel for its listening TCP sockets (sock_diag
  netlink: the kernel filters them, 0.25 ms, where psutil's `net_connections`
  reads every socket and every process's fds);
- a pidfile is read on every scrape, so with a pidfile nothing runs between
  scrapes;
- with a command-line pattern a background thread looks for the server every
  `scan_interval_seconds` while none lives, and every 10 times that (50 s by
  default) while one does, to find a second instance. A look reads the
  command line only of processes started since the last look (the pids the
  kernel handed out since, from /proc/loadavg) and of those first seen in the
  last minute (a fork shows its parent's command line until it execs), so it
  costs the same with 100 or 2,000 processes on the machine; once an hour it
  reads them all again (the first look too, with their start times, to know
  which are young). Where /proc/loadavg does not count this namespace's pids
  (gVisor, a container's lxcfs), each look lists /proc to tell the new ones.
  A known server that exits is seen by the next scrape, and a scrape that
  knows no live server looks itself, so a start or a restart shows on the
  next scrape too.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from devflow_monitor.core import catalog
from devflow_monitor.core.config import Config
from devflow_monitor.exporter.collectors.base import Collector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """One process, identified by pid and start time so a reused pid is never mistaken for it."""
    pid: int
    create_time: float


# Clock granularity between a process's start time and its pidfile's modification time.
PIDFILE_SLACK_SECONDS = 2.0
# While a server lives, look for a second one this many scan intervals apart (5 s -> 50 s: within a minute).
SLOW_SCAN_FACTOR = 10
# Read every command line again this often: catches a process that exec'd the server long after it started.
FULL_SCAN_SECONDS = 3600.0
# A process's command line is read on every look during its first minute (a fork shows its parent's
# command line until it execs: a wrapper script may exec the server seconds later), then no more.
YOUNG_SECONDS = 60.0
# Up to this many new pids, each one's command line is tried (3 us for a pid no longer there: 1.5 ms in
# all, about what listing /proc costs with 2,000 processes); past it, /proc is listed.
PROBE_LIMIT = 512
PROC = Path("/proc")
RESERVED_PIDS = 300  # Linux's first pid after a wrap (kernel/pid.c)


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie: a crashed server its parent has not reaped yet is gone."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def read_cmdline(pid: int) -> str | None:
    """The command line as one string: "" for kernel threads, zombies and a process in the middle of exec,
    None for a process gone or unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


@dataclass(frozen=True)
class Stat:
    """What a scrape needs of a process, from the one read of /proc/PID/stat (psutil reads five files
    for it, and builds a second Process to tell whether the pid was reused)."""
    gone: bool  # a zombie (Z) or dying (X): exited, whatever its parent has not reaped yet
    start_ticks: int
    user: float  # CPU seconds
    system: float
    threads: int
    vms: int  # bytes
    rss: int


PROC_STAT = Path("/proc/self/stat").exists()  # Linux; elsewhere psutil reads the same figures
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if PROC_STAT else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if PROC_STAT else 4096


def read_stat(pid: int) -> Stat | None:
    """/proc/PID/stat (proc(5)), None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields after it follow the last ")".
    fields = raw[raw.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); utime 14, stime 15, num_threads 20, starttime 22, vsize 23, rss 24.
    return Stat(gone=fields[0] in (b"Z", b"X"), start_ticks=int(fields[19]), user=int(fields[11]) / CLOCK_TICKS,
                system=int(fields[12]) / CLOCK_TICKS, threads=int(fields[17]), vms=int(fields[20]),
                rss=int(fields[21]) * PAGE_SIZE)


# sock_diag (linux/inet_diag.h): dump the TCP sockets in state LISTEN of one address family.
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST_DUMP = 0x1 | 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10
NLMSG_HEADER = struct.Struct("=IHHII")
SOCKID_LENGTH = 48  # inet_diag_sockid: ports, addresses, interface, cookie
SPORT_OFFSET = NLMSG_HEADER.size + 4  # inet_diag_msg: family, state, timer, retrans, then the source port


def listening_ports() -> set[int]:
    """Ports with a listening TCP socket (IPv4 and IPv6), from the kernel's sock_diag interface."""
    ports = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(1.0)  # the kernel answers at once; never hang a scrape on it
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            request = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN) + bytes(SOCKID_LENGTH)
            sock.send(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY,
                                        NLM_F_REQUEST_DUMP, seq, 0) + request)
            done = False
            while not done:
                data = sock.recv(65536)
                offset = 0
                while offset < len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind == NLMSG_DONE:
                        done = True
                        break
                    if kind == NLMSG_ERROR or length < NLMSG_HEADER.size:
                        raise OSError("sock_diag answered with an error")
                    ports.add(struct.unpack_from(">H", data, offset + SPORT_OFFSET)[0])
                    offset += (length + 3) & ~3
    return ports


class ProcessFinder:
    """Finds DevFlow server processes, never the exporter itself, its ancestors or its children."""

    def __init__(self, pidfile: str | None, pattern: str, port: int, match_port: bool = False):
        self.pidfile = Path(pidfile).expanduser() if pidfile else None
        self.pattern = re.compile(pattern)
        self.port = port
        # Off by default: the public build listens on no port, so the owner of :3000 would be
        # some other dev server taken for DevFlow.
        self.match_port = match_port
        me = psutil.Process()
        self.own_pid = me.pid
        # The shell or service manager that started us may carry the pattern in its command line too.
        self.ancestors = {p.pid for p in me.parents()}
        self.sock_diag = True  # until the kernel refuses it (not Linux, or a sandbox)

    @classmethod
    def from_config(cls, config: Config) -> "ProcessFinder":
        devflow = config.devflow
        return cls(devflow.pidfile, devflow.process_pattern, devflow.port, devflow.match_port)

    def from_pidfile(self) -> list[Target]:
        pid = read_pidfile(self.pidfile)
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
            if cmdline and self.pattern.search(cmdline) and not self.is_own(proc.pid):
                found.append(Target(proc.pid, proc.info["create_time"]))
        return self.with_port_owners(found)

    def target(self, pid: int) -> Target | None:
        """A matching pid as a Target, unless it is ours or already gone."""
        if self.is_own(pid):
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
        """Whether anything listens on the port: one sock_diag dump, psutil where that is refused."""
        if self.sock_diag:
            try:
                return self.port in listening_ports()
            except (OSError, AttributeError, struct.error):  # AttributeError: no AF_NETLINK here
                log.info("sock_diag unavailable; reading listening sockets with psutil")
                self.sock_diag = False
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
                    and conn.pid and not self.is_own(conn.pid):
                try:
                    targets.append(Target(conn.pid, psutil.Process(conn.pid).create_time()))
                except psutil.Error:
                    pass
        return targets

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

    Not thread-safe: the collector calls it with its lock held.
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
        if not PROC_STAT:  # not Linux: the full scan each time
            return self.finder.scan()
        if self.pid_cursor is None:
            self.pid_cursor = loadavg_counts_our_pids()
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
        for pid in listing | new | self.young.keys():
            if pid in self.matches:
                continue
            cmdline = read_cmdline(pid)
            if cmdline and self.finder.pattern.search(cmdline):
                self.young.pop(pid, None)
                # /proc/TID answers for every thread too: a server's threads are not more servers.
                target = self.finder.target(pid) if is_process(pid) else None
                if target:
                    self.matches[pid] = target
            elif pid in new:
                # Read again while young: it may exec the server, and a pid the kernel counted a moment
                # before /proc showed it, or one in the middle of exec, has no command line yet.
                self.young.setdefault(pid, now)
            elif cmdline is None:  # gone
                self.young.pop(pid, None)
        # Expired only after the reads: a young pid is read at least once after the look that found it,
        # however far apart the looks are.
        self.young = {pid: seen for pid, seen in self.young.items() if now - seen <= YOUNG_SECONDS}
        return self.finder.with_port_owners(list(self.matches.values()))

    def new_and_listed(self, first: bool, full: bool) -> tuple[set[int], set[int]]:
        """The pids started since the previous look, and /proc's listing when `full`. At the first look,
        those started in the last minute: one may exec the server soon."""
        if not self.pid_cursor:
            listing = listed_pids()
            new = started_lately(listing) if first else listing - self.listed
            self.listed = listing
            return new, listing if full else set()
        last = read_last_pid()
        listing = listed_pids() if full else set()
        if first:
            new = started_lately(listing) | newest_pids(1, last)
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


def read_last_pid() -> int:
    """The pid the kernel handed out last (the last field of /proc/loadavg)."""
    with open(PROC / "loadavg", "rb") as handle:
        return int(handle.read().split()[-1])


def loadavg_counts_our_pids() -> bool:
    """Whether /proc/loadavg's last pid is this pid namespace's: gVisor writes 0 there, and a container's
    /proc/loadavg from lxcfs may be the host's."""
    try:
        before = read_last_pid()
        thread = threading.Thread(target=lambda: None, name="pid-probe")
        thread.start()
        thread.join()
        return before < thread.native_id <= read_last_pid()
    except (OSError, ValueError, IndexError, RuntimeError):
        return False


def listed_pids() -> set[int]:
    """Every process (/proc lists thread-group leaders only)."""
    return {int(name) for name in os.listdir(PROC) if name.isdigit()}


def new_pids(previous: int, last: int, listing: set[int] | None = None) -> set[int]:
    """The pids handed out after `previous` up to `last`, processes and threads (they share the pid space).

    Pids are handed out in increasing order and wrap at pid_max. A few new ones are taken whole, /proc
    shown or not; many (a build), or a wrap, are picked from /proc's listing, one read for all. More than
    pid_max forks between two looks cannot be told from none: the hourly look catches what that misses.
    """
    if previous <= last and last - previous <= PROBE_LIMIT:
        return set(range(previous + 1, last + 1))
    if listing is None:
        listing = listed_pids()
    wrapped = last < previous
    first = RESERVED_PIDS if wrapped else previous + 1
    return newest_pids(first, last) | {pid for pid in listing if first <= pid <= last or (wrapped and pid > previous)}


def newest_pids(first: int, last: int) -> set[int]:
    """The last few pids up to `last`, listed in /proc or not: the kernel counts a pid a moment before
    /proc lists its process."""
    return set(range(max(first, last - 15), last + 1))


def started_lately(pids: set[int]) -> set[int]:
    """Those of `pids` whose process started in the last YOUNG_SECONDS (/proc/PID/stat counts from boot;
    the boot-time clock, unlike /proc/uptime, is not a container's own under lxcfs)."""
    uptime = time.clock_gettime(time.CLOCK_BOOTTIME)
    stats = ((pid, read_stat(pid)) for pid in pids)
    return {pid for pid, stat in stats if stat and uptime - stat.start_ticks / CLOCK_TICKS <= YOUNG_SECONDS}


def is_process(pid: int) -> bool:
    """A process rather than one of its threads: its thread-group id is its own pid."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1]) == pid
    except (OSError, ValueError, IndexError):
        pass
    return False


class ProcessCollector(Collector):
    name = "process"

    def __init__(self, config: Config):
        super().__init__()
        devflow = config.devflow
        self.finder = ProcessFinder.from_config(config)
        self.port = devflow.port
        self.database = os.path.realpath(devflow.database_path)
        self.scan_interval = config.collectors.process.scan_interval_seconds
        # _lock guards _scanner, _matches, _process and _start_ticks (the background look and scrapes share
        # them), and the fd limit cache below.
        self._lock = threading.Lock()
        self._scanner = IncrementalScan(self.finder)
        self._matches: list[Target] = []
        self._process: psutil.Process | None = None
        self._start_ticks: int | None = None  # _process's start time as /proc/PID/stat gives it
        # The fd limit of _limit_owner, read once per process.
        self._limit_owner: psutil.Process | None = None
        self._limit: int | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by a scrape that saw the server go: look at the fast pace again
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.finder.pidfile:
            return  # the pidfile is read on every scrape: nothing to do between scrapes
        with self._lock:
            self._matches = self._scanner.scan()  # before the first scrape
        self._thread = threading.Thread(target=self._scan_loop, name="process-scan", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _scan_loop(self) -> None:
        live = False
        while True:
            self._wake.wait(self.scan_interval * (SLOW_SCAN_FACTOR if live else 1))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                with self._lock:
                    self._matches = self._scanner.scan()
                    live = bool(self._matches)
            except Exception:  # the thread must outlive any surprise; the next look tries again
                log.exception("process scan failed")
                live = False

    def current(self) -> tuple[psutil.Process, dict] | None:
        """The reported process and this scrape's sample of it: the known one while it runs, else the
        oldest match."""
        with self._lock:
            proc = self._process
            if self.finder.pidfile and proc is not None and proc.pid != read_pidfile(self.finder.pidfile):
                proc = None
            sample = self._read(proc) if proc is not None else None
            if sample:
                return proc, sample
            if self.finder.pidfile:
                self._matches = self.finder.from_pidfile()
            else:
                # No live server known: look now, so a start or a restart shows on this scrape rather
                # than at the background's next look (up to scan_interval_seconds later).
                self._matches = self._scanner.scan()
                if proc is not None:
                    self._wake.set()  # the one we knew ended: the background looks at the fast pace again
            self._process = None
            for target in self._matches:
                try:
                    candidate = psutil.Process(target.pid)
                    if candidate.create_time() != target.create_time:
                        continue  # the pid was reused
                except psutil.Error:
                    continue
                self._start_ticks = None
                sample = self._read(candidate)
                if sample:
                    self._process = candidate
                    return candidate, sample
            return None

    def collect(self):
        up = catalog.PROCESS_UP.family()
        matches = catalog.PROCESS_MATCHES.family()
        listening = catalog.PROCESS_PORT_LISTENING.family()
        found = self.current()
        with self._lock:
            # A second instance that exited since the last look is not counted (kill 0: no /proc read).
            matches.add_metric([], sum(1 for t in self._matches if psutil.pid_exists(t.pid)))
        listening.add_metric([str(self.port)], 1.0 if self.finder.port_listening() else 0.0)
        yield matches
        yield listening
        up.add_metric([], 1.0 if found else 0.0)
        yield up
        if not found:
            return
        sample = found[1]
        if "cpu_user" in sample:
            cpu = catalog.PROCESS_CPU.family()
            cpu.add_metric(["user"], sample["cpu_user"])
            cpu.add_metric(["system"], sample["cpu_system"])
            yield cpu
        for metric, key in ((catalog.PROCESS_RSS, "rss"), (catalog.PROCESS_VMS, "vms"),
                            (catalog.PROCESS_THREADS, "threads"), (catalog.PROCESS_START_TIME, "start_time"),
                            (catalog.PROCESS_OPEN_FDS, "open_fds"), (catalog.PROCESS_MAX_FDS, "max_fds"),
                            (catalog.PROCESS_SOCKETS, "sockets"), (catalog.DB_CONNECTIONS, "db_handles")):
            if sample.get(key) is not None:
                family = metric.family()
                family.add_metric([], sample[key])
                yield family

    def _read(self, proc: psutil.Process) -> dict | None:
        """This scrape's figures of `proc`, or None when it has gone (exited, a zombie, its pid reused).
        Call with the lock held."""
        if PROC_STAT:
            stat = read_stat(proc.pid)
            if stat is None or stat.gone:
                return None
            if self._start_ticks is None:
                self._start_ticks = stat.start_ticks  # `proc` was just checked against its pid's start time
            elif stat.start_ticks != self._start_ticks:
                return None
            sample = {"cpu_user": stat.user, "cpu_system": stat.system, "rss": stat.rss, "vms": stat.vms,
                      "threads": stat.threads, "start_time": proc.create_time()}
        else:
            if not alive(proc):
                return None
            try:
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    memory = proc.memory_info()
                    sample = {"cpu_user": cpu.user, "cpu_system": cpu.system, "rss": memory.rss,
                              "vms": memory.vms, "threads": proc.num_threads(), "start_time": proc.create_time()}
            except psutil.NoSuchProcess:
                return None
            except psutil.AccessDenied:
                # Another user's process: say it runs, publish nothing we could not read.
                return {"start_time": proc.create_time()}
        sample.update(self._read_fds(proc))
        return sample

    def _read_fds(self, proc: psutil.Process) -> dict:
        """Open fds, sockets and database handles from one pass over the process's fd table."""
        fd_dir = f"/proc/{proc.pid}/fd"
        result: dict = {"max_fds": self._max_fds(proc)}
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return self._read_fds_portably(proc, result)
        sockets = handles = 0
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue  # closed between listdir and readlink
            if target.startswith("socket:"):
                sockets += 1
            elif target == self.database:
                handles += 1
        result.update(open_fds=len(fds), sockets=sockets, db_handles=handles)
        return result

    def _max_fds(self, proc: psutil.Process) -> int | None:
        """The fd limit, read once per process: it is set at start and parsing /proc/PID/limits is slow."""
        if self._limit_owner is not proc:
            self._limit_owner, self._limit = proc, None
            try:
                if hasattr(psutil, "RLIMIT_NOFILE"):
                    self._limit = proc.rlimit(psutil.RLIMIT_NOFILE)[0]
            except psutil.Error:
                pass
        return self._limit

    def _read_fds_portably(self, proc: psutil.Process, result: dict) -> dict:
        try:
            result["open_fds"] = proc.num_fds()
            result["sockets"] = len(proc.net_connections(kind="all"))
            result["db_handles"] = sum(1 for f in proc.open_files() if f.path == self.database)
        except (psutil.Error, AttributeError):
            pass
        return result
