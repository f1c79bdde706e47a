"""What the exporter costs all day, between scrapes, next to node-exporter (its default collectors)
and process-exporter measured in the same windows.

Every exporter is scraped every 15 s, as Prometheus would, through two windows of --idle-seconds:
window A with 100 extra idle processes on the machine, window B with 2,000. Per exporter and window:
total CPU of the process (all threads, from its CPU clock in nanoseconds) and voluntary context
switches of all its threads (/proc/PID/task/*/status; a thread that ended inside the window is not
counted, and our exporter keeps its request threads, so none does). Our exporters, at default settings:

- idle, small / large: a stand-in server (bench.dbgen write --rate 0) holding the smallest and the
  largest benchmark database open, writing nothing;
- active: the simulator at 5 events/s writing its logs, which the exporter tails, and serving /health;
- with --breakdown, four more exporters on the active simulator: without process, without database
  and eventqueue, without logs, host only.

Each exporter finds its server by a command-line pattern that only that server matches, so the
full-scan path of the process collector is what is measured. Then, with a separate exporter, the
time to notice a server exit, a start, a restart and a second instance.

    python -m bench.idle [--idle-seconds 600] [--sizes 100000,10000000] [--breakdown]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench import dbgen
from bench.harness import (Children, cpu_seconds, exporter_config, free_port, parse_sizes, ratio, scrape,
                           size_label, wait_for_background, wait_until_serving)
from devflow_monitor.core import catalog
from devflow_monitor.exporter.collectors.process import SLOW_SCAN_FACTOR
from devflow_monitor.exporter.collectors.process_finder import YOUNG_SECONDS
from devflow_monitor.core.config import ProcessCollectorConfig

SCRAPE_INTERVAL = 15.0
DEFAULT_IDLE_SECONDS = 600
EXTRA_PROCESSES = (100, 2000)
# After spawning processes, until the process collector is done with them: the look for a second
# instance (every 50 s) reads a new process's command line at every look in its first minute, so
# 1,900 of them cost ~25 ms twice; the windows measure the steady state after that.
SETTLE_SECONDS = (SLOW_SCAN_FACTOR * ProcessCollectorConfig.scan_interval_seconds + YOUNG_SECONDS + 10.0)
# The all-day goals: CPU and wake-ups against node-exporter's, flat in processes and rows, quick to notice.
CPU_VS_NODE = 1.5
SWITCHES_VS_NODE = 2.0
FLAT_RATIO = 1.2
NOTICE_START_SECONDS = 5.0
NOTICE_SECOND_SECONDS = 60.0
PROCESS_UP = catalog.PROCESS_UP.name
BREAKDOWN = {"without process": ["--no-collector.process"],
             "without database+eventqueue": ["--no-collector.database", "--no-collector.eventqueue"],
             "without logs": ["--no-collector.logs"],
             "host only": ["--no-collector.process", "--no-collector.database", "--no-collector.eventqueue",
                           "--no-collector.logs", "--no-collector.probe"]}


@dataclass
class Watched:
    """One exporter process and what it spent in each window."""
    name: str
    proc: subprocess.Popen
    port: int
    ours: bool = True
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per window
    switches: dict[str, int] = field(default_factory=dict)  # voluntary context switches per window
    seconds: dict[str, float] = field(default_factory=dict)  # window lengths

    def __post_init__(self):
        self.process = psutil.Process(self.proc.pid)

    def per_hour(self, window: str) -> float:
        return self.cpu[window] * 3600 / self.seconds[window]

    def core_percent(self, window: str) -> float:
        return self.cpu[window] * 100 / self.seconds[window]

    def switches_per_minute(self, window: str) -> float:
        return self.switches[window] * 60 / self.seconds[window]


def voluntary_switches(pid: int) -> dict[int, int]:
    """Voluntary context switches per live thread of `pid`."""
    counts = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    counts[int(task.name)] = int(line.split()[1])
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
    return counts


def measure_window(name: str, watched: list[Watched], seconds: float, log) -> None:
    """Scrape every exporter every SCRAPE_INTERVAL for `seconds`; record CPU and wake-ups per exporter."""
    log(f"window {name}: {seconds:.0f} s, scraping every {SCRAPE_INTERVAL:g} s ...")
    cpu_before = {w.name: cpu_seconds(w.process) for w in watched}
    switches_before = {w.name: voluntary_switches(w.proc.pid) for w in watched}
    began = time.monotonic()
    next_round = began
    while next_round < began + seconds:
        time.sleep(max(0.0, next_round - time.monotonic()))
        for w in watched:
            scrape(w.port)
        next_round += SCRAPE_INTERVAL
    time.sleep(max(0.0, began + seconds - time.monotonic()))
    elapsed = time.monotonic() - began
    for w in watched:
        w.seconds[name] = elapsed
        w.cpu[name] = cpu_seconds(w.process) - cpu_before[w.name]
        before, after = switches_before[w.name], voluntary_switches(w.proc.pid)
        # Threads born inside the window count from zero.
        w.switches[name] = sum(n - before.get(tid, 0) for tid, n in after.items())


def spawn_idle(children: Children, count: int) -> None:
    """`count` more idle processes on the machine, each a `sleep` child of the benchmark."""
    for _ in range(count):
        children.start(["sleep", "100000"], cwd="/")


def exporter(children: Children, workdir: Path, name: str, config: Path, database: Path, pattern: str,
             url: str, flags: list[str]) -> Watched:
    port = free_port()
    command = [sys.executable, "-m", "devflow_monitor.cli", "serve", "--config.file", str(config),
               "--web.listen-address", f"127.0.0.1:{port}", "--devflow.database", str(database),
               "--devflow.process-pattern", pattern, "--devflow.url", url,
               "--devflow.port", url.rsplit(":", 1)[1], "--log.level", "warning", *flags]
    # Each exporter keeps its own log offsets: one shared state file would be rewritten by all of them.
    env = {**os.environ, "DEVFLOW_MONITOR_COLLECTORS_LOGS_STATE_FILE": str(workdir / f"log-offsets-{port}.json")}
    return Watched(name, children.start(command, stderr=None, env=env), port)


def up_and_matches(port: int) -> tuple[float, float, float]:
    """(devflow_process_up, devflow_process_matches, devflow_process_start_time_seconds) from one scrape."""
    _, body = scrape(port)
    found = {}
    for metric in (catalog.PROCESS_UP, catalog.PROCESS_MATCHES, catalog.PROCESS_START_TIME):
        match = re.search(rb"^" + metric.name.encode() + rb" ([0-9.e+-]+)$", body, re.M)
        found[metric.name] = float(match.group(1)) if match else 0.0
    return (found[catalog.PROCESS_UP.name], found[catalog.PROCESS_MATCHES.name],
            found[catalog.PROCESS_START_TIME.name])


def seconds_until(predicate, limit: float, poll: float = 0.1) -> float | None:
    began = time.monotonic()
    while time.monotonic() - began < limit:
        if predicate():
            return time.monotonic() - began
        time.sleep(poll)
    return None


def measure_notice(children: Children, workdir: Path, log) -> dict[str, float | None]:
    """Seconds until an exporter at default settings notices a start, an exit, a restart and a
    second instance of a server it finds by command line."""
    token = f"devflow-notice-{free_port()}"
    server = [sys.executable, "-c", "import time; time.sleep(100000)", token]
    config = exporter_config(workdir, None)
    subject = exporter(children, workdir, "notice", config, workdir / "notice.db", re.escape(token),
                       f"http://127.0.0.1:{free_port()}", ["--no-collector.logs"])
    wait_until_serving(subject.proc, subject.port, subject.name)
    time.sleep(6)  # past the first scans: a start is seen by the watching, not by the startup scan
    log("measuring the time to notice a start, an exit, a restart and a second instance ...")
    result: dict[str, float | None] = {}
    first = children.start(server)
    result["start"] = seconds_until(lambda: up_and_matches(subject.port)[0] == 1, 3 * NOTICE_START_SECONDS)
    children.stop(first)
    result["exit (next scrape)"] = 0.0 if up_and_matches(subject.port)[0] == 0 else None
    second = children.start(server)
    result["restart"] = seconds_until(
        lambda: up_and_matches(subject.port)[2] == psutil.Process(second.pid).create_time(),
        3 * NOTICE_START_SECONDS)
    third = children.start(server)
    result["second instance"] = seconds_until(lambda: up_and_matches(subject.port)[1] == 2,
                                              2 * NOTICE_SECOND_SECONDS, poll=0.5)
    for proc in (third, second, subject.proc):
        children.stop(proc)
    return result


def run(args, children: Children, workdir: Path, log) -> tuple[list[Watched], dict]:
    sizes = sorted({args.sizes[0], args.sizes[-1]})
    databases = [dbgen.prepare(rows, log=log) for rows in sizes]
    config = exporter_config(workdir, args.config)
    closed = f"http://127.0.0.1:{free_port()}"  # the public build: no HTTP endpoint
    watched: list[Watched] = []
    servers = []
    for info in databases:
        servers.append(children.start([sys.executable, "-m", "bench.dbgen", "write", "--database",
                                       str(info["path"]), "--pidfile", str(workdir / f"idle-{info['rows']}.pid"),
                                       "--rate", "0"]))
    sim_port = free_port()
    sim_db = workdir / "sim" / "data" / "devflow.db"
    servers.append(children.start([sys.executable, "-m", "devflow_monitor.cli", "simulate", "--database",
                                   str(sim_db), "--log-dir", str(workdir / "sim" / "logs"), "--rate", "5",
                                   "--listen", f"127.0.0.1:{sim_port}"]))
    node_port = free_port()
    watched.append(Watched("node-exporter", children.start(
        ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{node_port}"]), node_port, ours=False))
    largest = str(databases[-1]["path"])
    proc_config = workdir / "process-exporter.yml"
    proc_config.write_text("process_names:\n  - name: devflow\n    cmdline:\n"
                           f"    - 'bench\\.dbgen write --database {re.escape(largest)} '\n")
    proc_port = free_port()
    watched.append(Watched("process-exporter", children.start(
        ["prometheus-process-exporter", "-config.path", str(proc_config), "-web.listen-address",
         f"127.0.0.1:{proc_port}"]), proc_port, ours=False))
    for info in databases:
        pattern = re.escape(f"bench.dbgen write --database {info['path']} ")
        watched.append(exporter(children, workdir, f"idle {size_label(info['rows'])}", config, info["path"],
                                pattern, closed, []))
    logs = ["--devflow.log-files", str(workdir / "sim" / "logs" / "*.log")]
    sim_pattern = re.escape(f"simulate --database {sim_db} ")
    sim_url = f"http://127.0.0.1:{sim_port}"
    watched.append(exporter(children, workdir, "active", config, sim_db, sim_pattern, sim_url, logs))
    if args.breakdown:
        for name, flags in BREAKDOWN.items():
            watched.append(exporter(children, workdir, f"active, {name}", config, sim_db, sim_pattern, sim_url,
                                    logs + flags))
    for w in watched:
        wait_until_serving(w.proc, w.port, w.name)
    for w in watched:
        if w.name.startswith("idle"):
            done = wait_for_background(w.proc, w.port, w.name)
            log(f"  {w.name}: startup count and integrity check done after {done or float('nan'):.1f} s")
    spawn_idle(children, EXTRA_PROCESSES[0])
    time.sleep(SETTLE_SECONDS)
    measure_window("A", watched, args.idle_seconds, log)
    spawn_idle(children, EXTRA_PROCESSES[1] - EXTRA_PROCESSES[0])
    time.sleep(SETTLE_SECONDS)
    measure_window("B", watched, args.idle_seconds, log)
    missing = [w.name for w in watched if w.name.startswith("idle") or w.name == "active"
               if up_and_matches(w.port)[0] != 1]
    for proc in servers:
        children.stop(proc)
    notice = measure_notice(children, workdir, log) if args.notice else {}
    if missing:
        log(f"bench: warning: the server was not found by: {', '.join(missing)}")
    return watched, notice


def print_report(watched: list[Watched], notice: dict, args) -> list[str]:
    """The table and the PASS/FAIL lines of goals 1-5; returns the failed goals."""
    print()
    print(f"All day: each exporter scraped every {SCRAPE_INTERVAL:g} s; window A with {EXTRA_PROCESSES[0]}, "
          f"window B with {EXTRA_PROCESSES[1]} extra idle processes, {args.idle_seconds:.0f} s each; "
          f"{psutil.cpu_count()} CPUs shared with other work, so expect noise.")
    header = (f"{'exporter':<40}{'CPU s A':>9}{'% core A':>10}{'CPU s/h A':>11}{'CPU s/h B':>11}{'B/A':>8}"
              f"{'vol cs/min A':>14}{'CPU/node':>10}{'cs/node':>9}")
    print(header)
    print("-" * len(header))
    node = watched[0]
    for w in watched:
        print(f"{w.name:<40}{w.cpu['A']:>9.2f}{w.core_percent('A'):>10.3f}{w.per_hour('A'):>11.2f}"
              f"{w.per_hour('B'):>11.2f}{ratio(w.per_hour('B'), w.per_hour('A')):>8}"
              f"{w.switches_per_minute('A'):>14.1f}"
              f"{ratio(w.per_hour('A'), node.per_hour('A')) if w.ours else '':>10}"
              f"{ratio(w.switches_per_minute('A'), node.switches_per_minute('A')) if w.ours else '':>9}")
    mains = [w for w in watched if w.name.startswith("idle") or w.name == "active"]
    idle = [w for w in mains if w.name.startswith("idle")]
    active = next(w for w in mains if w.name == "active")
    worst_idle = max(idle, key=lambda w: w.per_hour("A"))
    noisiest = max(mains, key=lambda w: w.switches_per_minute("A"))
    small, large = idle[0], idle[-1]
    checks = []
    for w in (worst_idle, active):
        checks.append((f"1. CPU <= {CPU_VS_NODE:g}x node-exporter ({w.name})",
                       f"{w.per_hour('A'):.2f} vs {node.per_hour('A'):.2f} CPU s/h = "
                       f"{ratio(w.per_hour('A'), node.per_hour('A'))}",
                       w.per_hour("A") <= CPU_VS_NODE * node.per_hour("A")))
    checks.append((f"2. voluntary switches <= {SWITCHES_VS_NODE:g}x node-exporter (worst: {noisiest.name})",
                   f"{noisiest.switches_per_minute('A'):.1f} vs {node.switches_per_minute('A'):.1f} /min = "
                   f"{ratio(noisiest.switches_per_minute('A'), node.switches_per_minute('A'))}",
                   noisiest.switches_per_minute("A") <= SWITCHES_VS_NODE * node.switches_per_minute("A")))
    steepest = max(idle, key=lambda w: w.per_hour("B") / max(w.per_hour("A"), 1e-9))
    checks.append((f"3. {EXTRA_PROCESSES[1]} vs {EXTRA_PROCESSES[0]} processes <= {FLAT_RATIO:g}x "
                   f"(worst: {steepest.name})",
                   f"{steepest.per_hour('B'):.2f} / {steepest.per_hour('A'):.2f} CPU s/h = "
                   f"{ratio(steepest.per_hour('B'), steepest.per_hour('A'))}",
                   steepest.per_hour("B") <= FLAT_RATIO * steepest.per_hour("A")))
    if large is not small:
        checks.append((f"4. {large.name.split()[-1]} vs {small.name.split()[-1]} rows <= {FLAT_RATIO:g}x",
                       f"{large.per_hour('A'):.2f} / {small.per_hour('A'):.2f} CPU s/h = "
                       f"{ratio(large.per_hour('A'), small.per_hour('A'))}",
                       large.per_hour("A") <= FLAT_RATIO * small.per_hour("A")))
    limits = {"start": NOTICE_START_SECONDS, "restart": NOTICE_START_SECONDS, "exit (next scrape)": 0.0,
              "second instance": NOTICE_SECOND_SECONDS}
    for what, seconds in notice.items():
        shown = "not seen" if seconds is None else f"{seconds:.1f} s"
        checks.append((f"5. {what} noticed within {limits[what]:g} s", shown,
                       seconds is not None and seconds <= limits[what]))
    print()
    width = max(len(name) for name, _, _ in checks)
    for name, figures, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<{width}}  {figures}")
    return [name for name, _, ok in checks if not ok]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--idle-seconds", type=float, default=DEFAULT_IDLE_SECONDS,
                        help=f"length of each all-day window (default {DEFAULT_IDLE_SECONDS})")
    parser.add_argument("--breakdown", action="store_true",
                        help="also measure the active exporter without each costly collector")
    parser.add_argument("--no-notice", dest="notice", action="store_false",
                        help="skip the time-to-notice measurements")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[100_000, 10_000_000],
                        help="event counts; the smallest and the largest are measured (default 100000,10000000)")
    parser.add_argument("--config", type=Path, help="exporter config file (default: the guide's defaults)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not 0 < args.idle_seconds < 86400:
        parser.error("--idle-seconds must be between 0 and 86400")
    for binary in ("prometheus-node-exporter", "prometheus-process-exporter"):
        if shutil.which(binary) is None:
            print(f"bench: error: {binary} not found (apt-get install {binary})", file=sys.stderr)
            return 2

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    failed = measure_all_day(args)
    return 1 if failed is None else 0


def measure_all_day(args) -> list[str] | None:
    """Run the all-day measurements and print their report; returns the failed goals (None: no result)."""
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    children = Children()
    try:
        with tempfile.TemporaryDirectory(prefix="devflow-idle-") as tmp:
            try:
                watched, notice = run(args, children, Path(tmp), log)
            finally:
                children.stop_all()  # before the directory they write into goes
    except KeyboardInterrupt:
        log("bench: interrupted, stopping child processes")
        return None
    except (RuntimeError, OSError, http.client.HTTPException) as exc:
        log(f"bench: error: {exc}")
        return None
    return print_report(watched, notice, args)


if __name__ == "__main__":
    sys.exit(main())
