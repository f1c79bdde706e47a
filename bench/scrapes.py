"""The scrape measurement: our exporters and the reference ones started side by side, scraped in rotating
turns, and the figures per exporter (latency, RSS, CPU per scrape, raw and net of the idle rate).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.harness import (READY_TIMEOUT, Children, cpu_seconds, free_port, scrape, size_label, wait_for_background,
                           wait_until_serving)
from devflow_monitor.core import catalog

MIB = 2 ** 20
# Before the timed scrapes, after their startup count and check, every exporter must be idle:
# under 5% of a core for 2 s, sampled every second, given a minute at most.
IDLE_CPU_SHARE = 0.05
IDLE_SAMPLE_SECONDS = 1.0
IDLE_QUIET_SECONDS = 2.0
IDLE_TIMEOUT = 60.0
COLLECTOR_SUCCESS = re.compile(
    rb"^" + catalog.COLLECTOR_SUCCESS.name.encode() + rb'\{collector="([^"]+)"\} ([0-9.]+)$', re.M)
COLLECTOR_DURATION = re.compile(
    rb"^" + catalog.COLLECTOR_DURATION.name.encode() + rb'\{collector="([^"]+)"\} ([0-9.e+-]+)$', re.M)
PROCESS_UP = re.compile(rb"^" + catalog.PROCESS_UP.name.encode() + rb" 1(\.0)?$", re.M)


@dataclass
class Row:
    """One exporter's figures."""
    target: str
    rows: int | None = None
    build_seconds: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    rss_mib: float = 0.0
    cpu_raw_ms: float = 0.0  # per scrape
    cpu_idle_ms_per_s: float = 0.0
    window_s: float = 0.0  # wall time of the timed scrapes
    body_bytes: int = 0
    collector_ms: dict[str, float] = field(default_factory=dict)  # mean self-reported duration
    notes: list[str] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the scrape latencies."""
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def cpu_net_ms(self) -> float:
        # Background work during the scrapes is billed at the idle rate, the rest to the scrapes.
        idle_share = self.cpu_idle_ms_per_s * self.window_s / max(1, len(self.latencies_ms))
        return max(0.0, self.cpu_raw_ms - idle_share)

    def as_dict(self) -> dict:
        return {"target": self.target, "rows": self.rows, "build_seconds": self.build_seconds,
                "p50_ms": self.percentile(50), "p95_ms": self.percentile(95), "p99_ms": self.p99,
                "rss_mib": self.rss_mib, "cpu_raw_ms_per_scrape": self.cpu_raw_ms,
                "cpu_net_ms_per_scrape": self.cpu_net_ms, "idle_cpu_ms_per_s": self.cpu_idle_ms_per_s,
                "body_bytes": self.body_bytes, "collector_ms": self.collector_ms,
                "scrapes": len(self.latencies_ms), "notes": self.notes}


@dataclass
class Subject:
    """An exporter being measured: its process, port and row of figures."""
    row: Row
    proc: subprocess.Popen
    port: int
    process: psutil.Process = field(init=False)

    def __post_init__(self):
        self.process = psutil.Process(self.proc.pid)


class Target:
    """The stand-in DevFlow server: pidfile, database held open, events inserted at a rate."""

    def __init__(self, children: Children, database: Path, pidfile: Path, rate: float):
        self.children = children
        self.pidfile = pidfile
        pidfile.unlink(missing_ok=True)
        self.proc = children.start(
            [sys.executable, "-m", "bench.dbgen", "write", "--database", str(database),
             "--pidfile", str(pidfile), "--rate", str(rate)], stdout=subprocess.PIPE)
        deadline = time.monotonic() + READY_TIMEOUT
        while not pidfile.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"writer for {database} did not start")
            time.sleep(0.05)

    def stop(self) -> dict:
        """Stop the writer; returns its summary (inserted, busy, insert latencies)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.children.stop(self.proc)
        try:
            return json.loads(out.decode().strip().splitlines()[-1])
        except (IndexError, ValueError):
            return {}


def wait_until_quiet(subjects: list[Subject]) -> None:
    """Wait until every exporter's own CPU use stays under IDLE_CPU_SHARE for IDLE_QUIET_SECONDS,
    so startup work (a first full count, a first integrity check) is not billed to scrapes."""
    began = time.monotonic()
    quiet_since: dict[int, float] = {}
    last = {s.proc.pid: cpu_seconds(s.process) for s in subjects}
    while time.monotonic() - began < IDLE_TIMEOUT:
        time.sleep(IDLE_SAMPLE_SECONDS)
        for subject in subjects:
            pid = subject.proc.pid
            now = cpu_seconds(subject.process)
            if (now - last[pid]) / IDLE_SAMPLE_SECONDS > IDLE_CPU_SHARE:
                quiet_since.pop(pid, None)
            else:
                quiet_since.setdefault(pid, time.monotonic())
            last[pid] = now
        if len(quiet_since) == len(subjects) and \
                max(quiet_since.values()) <= time.monotonic() - IDLE_QUIET_SECONDS:
            return
    for subject in subjects:
        if subject.proc.pid not in quiet_since:
            subject.row.notes.append("never idle before measuring")


def measure(subjects: list[Subject], scrapes: int, warmup: int) -> None:
    """Warm up, wait for quiet, scrape in rotating turns, then an idle window as long."""
    for _ in range(warmup):
        for subject in subjects:
            scrape(subject.port)
    wait_until_quiet(subjects)
    bodies: dict[int, list[bytes]] = {id(s): [] for s in subjects}
    cpu_before = {id(s): cpu_seconds(s.process) for s in subjects}
    began = time.monotonic()
    for turn in range(scrapes):
        shift = turn % len(subjects)
        for subject in subjects[shift:] + subjects[:shift]:
            elapsed, body = scrape(subject.port)
            subject.row.latencies_ms.append(elapsed)
            bodies[id(subject)].append(body)
    window = time.monotonic() - began
    for subject in subjects:
        row = subject.row
        row.window_s = window
        row.cpu_raw_ms = (cpu_seconds(subject.process) - cpu_before[id(subject)]) * 1000 / scrapes
        row.rss_mib = subject.process.memory_info().rss / MIB
        row.body_bytes = len(bodies[id(subject)][-1])
        row.collector_ms = mean_collector_ms(bodies[id(subject)])
    idle_before = {id(s): cpu_seconds(s.process) for s in subjects}
    time.sleep(window)
    for subject in subjects:
        subject.row.cpu_idle_ms_per_s = (cpu_seconds(subject.process) - idle_before[id(subject)]) * 1000 / window


def mean_collector_ms(bodies: list[bytes]) -> dict[str, float]:
    """Mean time each collector says it took, to tell which one a slow scrape spent its time in."""
    totals: dict[str, float] = {}
    for body in bodies:
        for name, seconds in COLLECTOR_DURATION.findall(body):
            totals[name.decode()] = totals.get(name.decode(), 0.0) + float(seconds) * 1000
    return {name: total / len(bodies) for name, total in totals.items()}


def start_references(children: Children, workdir: Path, target: Target, database: Path) -> list[Subject]:
    """node-exporter (cpu, meminfo) and process-exporter watching the given target."""
    port = free_port()
    node = Subject(Row("node-exporter"), children.start(
        ["prometheus-node-exporter", "--collector.disable-defaults", "--collector.cpu", "--collector.meminfo",
         f"--web.listen-address=127.0.0.1:{port}"]), port)
    config = workdir / "process-exporter.yml"
    # The target's command line names its database, which singles it out among the writers.
    config.write_text("process_names:\n  - name: devflow\n    cmdline:\n"
                      f"    - 'bench\\.dbgen write --database {re.escape(str(database))} '\n")
    port = free_port()
    proc_exp = Subject(Row("process-exporter"), children.start(
        ["prometheus-process-exporter", "-config.path", str(config), "-web.listen-address", f"127.0.0.1:{port}"]),
        port)
    for subject in (node, proc_exp):
        wait_until_serving(subject.proc, subject.port, subject.row.target)
    _, body = scrape(proc_exp.port)
    if b'namedprocess_namegroup_num_procs{groupname="devflow"} 1' not in body:
        raise RuntimeError(f"process-exporter does not see the target process (pid {target.proc.pid})")
    return [node, proc_exp]


def start_exporter(children: Children, workdir: Path, info: dict, target: Target, config: Path) -> Subject:
    port = free_port()
    closed = free_port()  # nothing listens here: the probe sees the public build's missing endpoints
    command = [sys.executable, "-m", "devflow_monitor.cli", "serve", "--config.file", str(config),
               "--web.listen-address", f"127.0.0.1:{port}", "--devflow.database", str(info["path"]),
               "--devflow.pidfile", str(target.pidfile), "--devflow.url", f"http://127.0.0.1:{closed}",
               "--devflow.port", str(closed), "--no-collector.logs", "--log.level", "warning"]
    row = Row("devflow-monitor", rows=info["rows"], build_seconds=info["build_seconds"])
    return Subject(row, children.start(command, stderr=None), port)


def check_exporter(subject: Subject, log) -> None:
    """Wait for the startup count and check; note a failing collector or a target not found."""
    row = subject.row
    background = wait_for_background(subject.proc, subject.port, row.target)
    if background is None:
        row.notes.append("startup count/check not seen")
    else:
        log(f"  {size_label(row.rows)}: startup count and integrity check done after {background:.1f} s")
    _, body = scrape(subject.port)
    failed = [name.decode() for name, value in COLLECTOR_SUCCESS.findall(body) if float(value) != 1]
    if failed:
        row.notes.append("collector failing: " + ",".join(failed))
    if not PROCESS_UP.search(body):
        row.notes.append("target not found")
