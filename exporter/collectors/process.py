"""The DevFlow server process: found by pidfile, command line or port.

Sample output:

    devflow_process_up 1.0
    devflow_process_matches 1.0
    devflow_process_exits_total{reason="clean"} 3.0
    devflow_process_exits_total{reason="crash"} 1.0
    devflow_process_last_exit_timestamp_seconds 1.7951e+09
    devflow_process_cpu_seconds_total{mode="user"} 12.4
    devflow_process_resident_memory_bytes 9.6e+07
    devflow_process_open_sockets 2.0
    devflow_process_port_listening{port="3000"} 0.0
    devflow_db_connections 1.0

What it costs between scrapes (a scan of every command line every 5 s would be two thirds of the
exporter's idle CPU):
- a scrape re-reads the one process it knows (/proc/PID/stat), counts its
  socket fds, and asks the kernel for its listening TCP sockets (sock_diag
  netlink: the kernel filters them, 0.25 ms, where psutil's `net_connections`
  reads every socket and every process's fds);
- a pidfile is read on every scrape, so with a pidfile nothing runs between
  scrapes;
- with a command-line pattern the "process-scan" worker looks for the server
  every `scan_interval_seconds` while none lives, and every 10 times that
  (50 s by default) while one does, to find a second instance; a look reads
  only new and young processes' command lines (see `process_finder`).
  A known server that exits is seen by the next scrape, and a scrape that
  knows no live server looks itself, so a start or a restart shows on the
  next scrape too.

Looks run one at a time under `_scan_lock` and take `_lock` only to publish
what they found, so a scrape that knows a live server never waits for one. A
scrape that knows none waits up to LOOK_WAIT_SECONDS for a look under way (it
may have started before the server did) and then looks itself; past that, it
reports what the last look found.

With a workdir, only a process in that directory (or holding its database) is the server (see
`process_finder`). Without one, every match is counted in `devflow_process_matches` and the oldest reported.
The known server's exits are judged clean or crash by `process_exits`.
"""

from __future__ import annotations

import os
import threading

import psutil

from devflow_monitor.core import catalog, procfs
from devflow_monitor.core.config import Config
from devflow_monitor.exporter.collectors.base import Collector, Worker
from devflow_monitor.exporter.collectors.process_exits import Exit, ExitJudge
from devflow_monitor.exporter.collectors.process_finder import IncrementalScan, ProcessFinder, Target

# While a server lives, look for a second one this many scan intervals apart (5 s -> 50 s: within a minute).
SLOW_SCAN_FACTOR = 10
# How long a scrape that knows no live server waits for a look under way before it looks itself.
LOOK_WAIT_SECONDS = 1.0


class ProcessCollector(Collector):
    name = "process"

    def __init__(self, config: Config):
        super().__init__()
        devflow = config.devflow
        self.finder = ProcessFinder.from_config(config)
        self.port = devflow.port
        self.database = os.path.realpath(devflow.database_path)
        self.scan_interval = config.collectors.process.scan_interval_seconds
        # _scan_lock guards _scanner (its cursors move at each look) and is held for a whole look, so that
        # looks run one at a time and publish in order. Taken before _lock, never while holding it.
        self._scan_lock = threading.Lock()
        self._scanner = IncrementalScan(self.finder)
        # _lock guards _matches, _process and _start_ticks (looks publish them, scrapes read them) and the
        # fd limit cache; it is held only to publish a look's result or to read the one known process.
        self._lock = threading.Lock()
        self._matches: list[Target] = []
        self._process: psutil.Process | None = None
        self._start_ticks: int | None = None  # _process's start time as /proc/PID/stat gives it
        # The fd limit of _limit_owner, read once per process.
        self._limit_owner: psutil.Process | None = None
        self._limit: int | None = None
        # Guarded by _lock too: the exits of the known process, judged clean or crash.
        self._exits = ExitJudge(config.collectors.process.exit_grace_seconds,
                                watch_client=devflow.mode == "on_demand")
        self._wake = threading.Event()  # set by a scrape that saw the server go: look at the fast pace again
        if not self.finder.pidfile:  # the pidfile is read on every scrape: nothing to do between scrapes
            self._worker = Worker("process-scan", self._look_on_schedule, wake=self._wake)
            self.workers.append(self._worker)

    def start(self) -> None:
        if not self.workers or self._worker.running:
            return
        self._wake.clear()  # a stop sets it: the new run starts at the normal pace
        self._look()  # before the first scrape
        super().start()

    def _look_on_schedule(self, stopping: threading.Event) -> None:
        live = False  # the fast pace until a look of this run finds a server
        while True:
            self._wake.wait(self.scan_interval * (SLOW_SCAN_FACTOR if live else 1))
            self._wake.clear()
            if stopping.is_set():
                return
            live = bool(self._look())

    def _look(self, wait: float | None = None) -> list[Target] | None:
        """One look for the server, published as `_matches`; None when another look is under way and does
        not end within `wait` seconds (None: wait for it)."""
        if not self._scan_lock.acquire(timeout=-1 if wait is None else wait):
            return None
        try:
            matches = self._scanner.scan()  # the slow part (/proc, net_connections), without _lock
            with self._lock:
                self._matches = matches
        finally:
            self._scan_lock.release()
        return matches

    def _known_matches(self) -> list[Target]:
        with self._lock:
            return list(self._matches)

    def current(self) -> tuple[psutil.Process, dict] | None:
        """The reported process and this scrape's sample of it: the known one while it runs, else the
        oldest match."""
        with self._lock:
            known = self._process
            sample = self._read_known()
            if sample:
                return known, sample
        matches = self._look_now(knew=known is not None)
        with self._lock:
            return self._adopt(matches)

    def _read_known(self) -> dict | None:
        """This scrape's sample of the known process; forgets it when it has gone. Call with _lock held."""
        proc = self._process
        if proc is None:
            return None
        moved = self.finder.pidfile and proc.pid != procfs.read_pidfile(self.finder.pidfile)
        sample = None if moved else self._read(proc)
        if sample:
            self._exits.running()
            return sample
        self._process = None
        if not moved or not procfs.alive(proc):  # a pidfile that names another process is no exit
            self._exits.gone()
        return None

    def _look_now(self, knew: bool) -> list[Target]:
        """The candidates when no live server is known, read without _lock."""
        if self.finder.pidfile:
            matches = self.finder.from_pidfile()
            with self._lock:
                self._matches = matches
            return matches
        # Look now, so a start or a restart shows on this scrape rather than at the background's next look
        # (up to scan_interval_seconds later); a look stuck past the wait leaves the last look's result.
        matches = self._look(wait=LOOK_WAIT_SECONDS)
        if matches is None:
            return self._known_matches()
        if knew:
            self._wake.set()  # the one we knew ended: the background looks at the fast pace again
        return matches

    def _adopt(self, matches: list[Target]) -> tuple[psutil.Process, dict] | None:
        """The oldest of `matches` still running, now the known process. Call with _lock held."""
        if self._process is not None:
            # Another scrape found the server while this one looked: keep its pick.
            sample = self._read_known()
            if sample:
                return self._process, sample
        for target in matches:
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
                self._exits.found(candidate)
                return candidate, sample
        return None

    def match_count(self) -> int:
        """Processes that matched at the last look and still run: more than one is worth saying."""
        # A second instance that exited since the last look is not counted (kill 0: no /proc read).
        return sum(1 for t in self._known_matches() if psutil.pid_exists(t.pid))

    def log_records(self, fatal_by_file: dict[str, float] | None) -> None:
        """The logs collector's `fatal` counts by file at the end of a scrape (None: logs not read)."""
        with self._lock:
            self._exits.fatal.update(fatal_by_file)

    def last_exit(self) -> Exit | None:
        """The latest judged exit of the server, clean or crash."""
        with self._lock:
            self._exits.judge_due()
            return self._exits.last

    def collect(self):
        up = catalog.PROCESS_UP.family()
        matches = catalog.PROCESS_MATCHES.family()
        listening = catalog.PROCESS_PORT_LISTENING.family()
        with self._lock:
            self._exits.judge_due()  # an exit seen at an earlier scrape, whose logs have been read since
        found = self.current()
        matches.add_metric([], self.match_count())
        listening.add_metric([str(self.port)], 1.0 if self.finder.port_listening() else 0.0)
        yield matches
        yield listening
        up.add_metric([], 1.0 if found else 0.0)
        yield up
        yield from self._exit_families()
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

    def _exit_families(self):
        exits = catalog.PROCESS_EXITS.family()
        with self._lock:
            counts, last = dict(self._exits.counts), self._exits.last
        for reason, n in counts.items():
            exits.add_metric([reason], n)
        yield exits
        if last is not None:
            when = catalog.PROCESS_LAST_EXIT.family()
            when.add_metric([], last.at)
            yield when

    def _read(self, proc: psutil.Process) -> dict | None:
        """This scrape's figures of `proc`, or None when it has gone (exited, a zombie, its pid reused).
        Call with _lock held."""
        if procfs.PROC_STAT:
            stat = procfs.read_stat(proc.pid)
            if stat is None or stat.gone:
                return None
            if self._start_ticks is None:
                self._start_ticks = stat.start_ticks  # `proc` was just checked against its pid's start time
            elif stat.start_ticks != self._start_ticks:
                return None
            sample = {"cpu_user": stat.user, "cpu_system": stat.system, "rss": stat.rss, "vms": stat.vms,
                      "threads": stat.threads, "start_time": proc.create_time()}
        else:
            if not procfs.alive(proc):
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
        result: dict = {"max_fds": self._max_fds(proc)}
        counts = procfs.count_fds(proc.pid, self.database)
        if counts is None:
            return self._read_fds_portably(proc, result)
        result.update(open_fds=counts.open, sockets=counts.sockets, db_handles=counts.to_path)
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
