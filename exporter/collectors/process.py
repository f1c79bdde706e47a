"""The DevFlow server process: found by pidfile, command line or port.

Sample output:

    devflow_process_up 1.0
    devflow_process_matches 1.0
    devflow_process_cpu_seconds_total{mode="user"} 12.4
    devflow_process_resident_memory_bytes 9.6e+07
    devflow_process_open_sockets 2.0
    devflow_process_port_listening{port="3000"} 0.0
    devflow_db_connections 1.0

Scanning every process's command line and reading /proc/net/tcp both cost
milliseconds, so they run in a background thread; a scrape only re-reads the
one process it already knows (a few /proc files) and counts its socket fds.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

from devflow_monitor.exporter import catalog
from devflow_monitor.exporter.config import Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """One process, identified by pid and start time so a reused pid is never mistaken for it."""
    pid: int
    create_time: float


# Clock granularity between a process's start time and its pidfile's modification time.
PIDFILE_SLACK_SECONDS = 2.0


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
        if not found and self.match_port:
            found = self._port_owners()
        return sorted(found, key=lambda t: (t.create_time, t.pid))

    def port_listening(self) -> bool:
        """Whether anything listens on the port (reads the kernel's socket tables: background only)."""
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


class ProcessCollector:
    name = "process"

    def __init__(self, config: Config):
        devflow = config.devflow
        self.finder = ProcessFinder.from_config(config)
        self.port = devflow.port
        self.database = os.path.realpath(devflow.database_path)
        self.scan_interval = config.collectors.process.scan_interval_seconds
        self._lock = threading.Lock()
        self._matches: list[Target] = []
        self._port_listening = False
        self._process: psutil.Process | None = None
        self._limit_owner: psutil.Process | None = None
        self._limit: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._background_scan()
        self._thread = threading.Thread(target=self._scan_loop, name="process-scan", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _scan_loop(self) -> None:
        while not self._stop.wait(self.scan_interval):
            self._background_scan()

    def _background_scan(self) -> None:
        try:
            matches = self.finder.scan()
            listening = self.finder.port_listening()
        except Exception:
            log.exception("process scan failed")
            return
        with self._lock:
            self._matches = matches
            self._port_listening = listening

    def current(self) -> psutil.Process | None:
        """The reported process: the known one while it lives, else the oldest match."""
        with self._lock:
            proc = self._process
            if self.finder.pidfile:
                # A pidfile is one small read: follow it on every scrape so restarts show at once.
                pid = read_pidfile(self.finder.pidfile)
                if proc is not None and proc.pid == pid and alive(proc):
                    return proc
                self._matches = self.finder.from_pidfile()
            elif proc is not None:
                if alive(proc):
                    return proc
                # The process we knew ended: rescan now rather than report it absent until the next scan.
                self._matches = self.finder.scan()
            self._process = self._first_alive(self._matches)
            return self._process

    @staticmethod
    def _first_alive(targets: list[Target]) -> psutil.Process | None:
        for target in targets:
            try:
                candidate = psutil.Process(target.pid)
                if candidate.create_time() == target.create_time and alive(candidate):
                    return candidate
            except psutil.Error:
                continue
        return None

    def collect(self):
        up = catalog.PROCESS_UP.family()
        matches = catalog.PROCESS_MATCHES.family()
        listening = catalog.PROCESS_PORT_LISTENING.family()
        proc = self.current()
        with self._lock:
            matches.add_metric([], len(self._matches))
            listening.add_metric([str(self.port)], 1.0 if self._port_listening else 0.0)
        yield matches
        yield listening
        sample = self._read(proc) if proc else None
        up.add_metric([], 1.0 if sample else 0.0)
        yield up
        if not sample:
            return
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
            try:
                return {"start_time": proc.create_time()}
            except psutil.Error:
                return None
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
