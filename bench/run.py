"""`make bench`: what a scrape of the exporter costs on 100k, 1M and 10M events,
next to Debian's node-exporter and process-exporter measured the same way in
the same run.

Everything runs at once so that the machine's other work hits every row alike:
one stand-in DevFlow server per database (bench.dbgen write: pidfile, database
held open, --rate events/s), one `devflow-monitor serve` per database,
node-exporter (cpu, meminfo) and process-exporter watching the largest
database's server. Once every exporter has finished its startup work and gone
idle, the exporters are scraped in turns (round robin, the order rotating each
round) --scrapes times each:

- latency: from opening a new TCP connection to the last byte of the body;
- RSS: right after the scrapes (psutil);
- CPU per scrape: user+system time over the scrapes / scrapes ("raw"); "net"
  subtracts what each exporter spends anyway, measured over an idle window as
  long right after (our exporter's background work, the Go runtime's).

Then the all-day cost between scrapes (bench/idle.py: total CPU, wake-ups,
flatness in processes and rows, time to notice a start or an exit).

    python -m bench.run [--sizes 100000,1000000] [--scrapes 1000] [--rate 50] [--idle-seconds 600]
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench import dbgen
from devflow_monitor.core import catalog

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (100_000, 1_000_000, 10_000_000)
MIB = 2 ** 20
READY_TIMEOUT = 30.0
# The first background count and integrity check at 10M can take minutes on a cold cache.
BACKGROUND_TIMEOUT = 900.0
# Measured in steady state: after the startup count and integrity check, as an hour later.
BACKGROUND_DONE = (catalog.DB_COUNTS_TIMESTAMP.name, catalog.DB_INTEGRITY_TIMESTAMP.name)
# Then every exporter must be idle: under 5% of a core for 2 s,
# sampled every second, given a minute at most.
IDLE_CPU_SHARE = 0.05
IDLE_SAMPLE_SECONDS = 1.0
IDLE_QUIET_SECONDS = 2.0
IDLE_TIMEOUT = 60.0
COLLECTOR_SUCCESS = re.compile(
    rb"^" + catalog.COLLECTOR_SUCCESS.name.encode() + rb'\{collector="([^"]+)"\} ([0-9.]+)$', re.M)
COLLECTOR_DURATION = re.compile(
    rb"^" + catalog.COLLECTOR_DURATION.name.encode() + rb'\{collector="([^"]+)"\} ([0-9.e+-]+)$', re.M)
PROCESS_UP = re.compile(rb"^" + catalog.PROCESS_UP.name.encode() + rb" 1(\.0)?$", re.M)

# Targets from SPEC section 8 and issue 12.
P99_VS_NODE = 1.3
P99_SIZE_RATIO = 1.2
RSS_LIMIT_MIB = 32.0
CPU_VS_NODE = 1.6


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


class Children:
    """Every process the benchmark starts; `stop_all()` ends them, newest first."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], **kwargs) -> subprocess.Popen:
        kwargs.setdefault("cwd", ROOT)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        # Own session: a Ctrl-C reaches only the benchmark, which then stops children in order.
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 10.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int, path: str = "/metrics", timeout: float = 30.0) -> tuple[float, bytes]:
    """One scrape on a new connection: (milliseconds from connect to last body byte, body)."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    elapsed = (time.perf_counter() - began) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {path} on port {port} answered {response.status}")
    return elapsed, body


def wait_until_serving(subject: Subject) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if subject.proc.poll() is not None:
            raise RuntimeError(f"{subject.row.target} exited with status {subject.proc.returncode} before serving")
        try:
            scrape(subject.port, timeout=5)
            return
        except (OSError, RuntimeError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{subject.row.target} did not serve /metrics within {READY_TIMEOUT:.0f}s")
            time.sleep(0.1)


def wait_for_background(subject: Subject) -> float | None:
    """Seconds until the exporter reported its first full count and integrity check (None: timed out)."""
    began = time.monotonic()
    patterns = [re.compile(rb"^" + name.encode() + rb" [1-9]", re.M) for name in BACKGROUND_DONE]
    while time.monotonic() - began < BACKGROUND_TIMEOUT:
        _, body = scrape(subject.port)
        if all(pattern.search(body) for pattern in patterns):
            return time.monotonic() - began
        if subject.proc.poll() is not None:
            raise RuntimeError(f"{subject.row.target} exited during warm-up")
        time.sleep(1)
    return None


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of the whole process, all threads, ended ones included. Linux: read from the process's
    CPU clock in nanoseconds (/proc/PID/stat counts 10 ms ticks: +-2 ticks on a 0.2 s window)."""
    try:
        return time.clock_gettime(process_cpu_clock(process.pid))
    except (AttributeError, OSError):  # no such clock outside Linux
        times = process.cpu_times()
        return times.user + times.system


def process_cpu_clock(pid: int) -> int:
    """The clock id of another process's CPU clock, as glibc's clock_getcpuclockid builds it
    (CPUCLOCK_SCHED of process `pid`)."""
    return (~pid << 3) | 2


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
        wait_until_serving(subject)
    _, body = scrape(proc_exp.port)
    if b'namedprocess_namegroup_num_procs{groupname="devflow"} 1' not in body:
        raise RuntimeError(f"process-exporter does not see the target process (pid {target.proc.pid})")
    return [node, proc_exp]


def exporter_config(workdir: Path, extra: Path | None) -> Path:
    """The exporter's config for the run: the user's file if given, else the guide's defaults."""
    if extra is not None:
        return extra
    path = workdir / "exporter.yml"
    path.write_text("# the guide's defaults; only state is kept out of the user's home\n"
                    f"collectors:\n  logs:\n    state_file: {workdir / 'log-offsets.json'}\n")
    return path


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
    background = wait_for_background(subject)
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


def size_label(rows: int | None) -> str:
    if rows is None:
        return "-"
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if rows >= scale and rows % scale == 0:
            return f"{rows // scale}{unit}"
    return str(rows)


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "n/a"


def print_table(rows: list[Row], node: Row, proc: Row, writers: list[dict], args) -> list[str]:
    """The results table and the pass/fail lines; returns the failed targets."""
    print()
    print(f"{args.scrapes} scrapes per exporter, all exporters scraped in rotating turns, each scrape on a new "
          f"TCP connection (connect to last body byte); a writer inserting {args.rate:g} events/s into each "
          f"database; {psutil.cpu_count()} CPUs shared with other work, so expect noise.")
    header = (f"{'target':<17}{'events':>7}{'build s':>9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
              f"{'RSS MiB':>9}{'CPU ms/scrape':>15}{'net':>7}{'p99/node':>10}{'p99/proc':>10}{'CPU/node':>10}"
              f"  notes")
    print(header)
    print("-" * len(header))
    for row in [node, proc, *rows]:
        ours = row.target == "devflow-monitor"
        build = f"{row.build_seconds:.0f}" if row.build_seconds is not None else "-"
        print(f"{row.target:<17}{size_label(row.rows):>7}{build:>9}{row.percentile(50):>8.2f}"
              f"{row.percentile(95):>8.2f}{row.p99:>8.2f}{row.rss_mib:>9.1f}{row.cpu_raw_ms:>15.2f}"
              f"{row.cpu_net_ms:>7.2f}"
              f"{ratio(row.p99, node.p99) if ours else '':>10}{ratio(row.p99, proc.p99) if ours else '':>10}"
              f"{ratio(row.cpu_net_ms, node.cpu_net_ms) if ours else '':>10}  {'; '.join(row.notes)}")
    for row in rows:
        if row.collector_ms:
            spent = ", ".join(f"{name} {ms:.2f}" for name, ms in row.collector_ms.items())
            print(f"devflow-monitor {size_label(row.rows):>4}: mean ms per collector (self-reported): {spent}")
    busy = sum(w.get("busy", 0) for w in writers)
    inserted = sum(w.get("inserted", 0) for w in writers)
    p99 = max((w.get("insert_p99_ms", 0) for w in writers), default=0)
    worst = max((w.get("insert_max_ms", 0) for w in writers), default=0)
    print(f"writers: {inserted} events inserted, {busy} SQLITE_BUSY, insert p99 {p99:.1f} ms (worst writer), "
          f"slowest insert {worst:.1f} ms")
    print("build s: time the cached database took to build, once (reused while it holds the expected rows)")
    largest = max(rows, key=lambda r: r.rows)
    smallest = min(rows, key=lambda r: r.rows)
    big = size_label(largest.rows)
    checks = [
        (f"p99 at {big} <= {P99_VS_NODE:g}x node-exporter p99",
         f"{largest.p99:.2f} ms vs {node.p99:.2f} ms = {ratio(largest.p99, node.p99)}",
         largest.p99 <= P99_VS_NODE * node.p99),
        (f"p99 at {big} < process-exporter p99",
         f"{largest.p99:.2f} ms vs {proc.p99:.2f} ms = {ratio(largest.p99, proc.p99)}",
         largest.p99 < proc.p99),
    ]
    if largest is not smallest:
        checks.append((f"p99 {big}/{size_label(smallest.rows)} < {P99_SIZE_RATIO:g}",
                       f"{largest.p99:.2f} / {smallest.p99:.2f} ms = {ratio(largest.p99, smallest.p99)}",
                       largest.p99 / smallest.p99 < P99_SIZE_RATIO))
    fattest = max(rows, key=lambda r: r.rss_mib)
    checks.append((f"RSS < {RSS_LIMIT_MIB:g} MiB (largest, at {size_label(fattest.rows)})",
                   f"{fattest.rss_mib:.1f} MiB", fattest.rss_mib < RSS_LIMIT_MIB))
    hungriest = max(rows, key=lambda r: r.cpu_net_ms)
    checks.append((f"CPU/scrape <= {CPU_VS_NODE:g}x node-exporter's (net, worst at {size_label(hungriest.rows)})",
                   f"{hungriest.cpu_net_ms:.2f} ms vs {node.cpu_net_ms:.2f} ms = "
                   f"{ratio(hungriest.cpu_net_ms, node.cpu_net_ms)}",
                   hungriest.cpu_net_ms <= CPU_VS_NODE * node.cpu_net_ms))
    if big != "10M":
        print(f"note: 10M was not measured in this run; the 10M targets are checked at {big}")
    print()
    width = max(len(name) for name, _, _ in checks)
    for name, figures, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<{width}}  {figures}")
    return [name for name, _, ok in checks if not ok]


def run_log_bench() -> dict | None:
    """The log-throughput benchmark (bench/logs.py), when it exists: it prints its own table
    and returns its result."""
    try:
        from bench import logs
    except ImportError:
        print("\n(bench/logs.py not present: log throughput not measured)")
        return None
    sys.stdout.flush()
    return logs.run()


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of event counts: {text!r}") from None
    if not sizes or sizes[0] <= 0:
        raise argparse.ArgumentTypeError(f"event counts must be positive: {text!r}")
    return sizes


def bench(args, children: Children, workdir: Path, log) -> tuple[list[Row], Row, Row, list[dict]]:
    """Start everything, measure, stop the writers; returns (our rows, node, process, writer summaries)."""
    # Build (or find) every database before starting anything.
    databases = [dbgen.prepare(rows, log=log) for rows in args.sizes]
    config = exporter_config(workdir, args.config)
    targets = [Target(children, info["path"], workdir / f"devflow-{info['rows']}.pid", args.rate)
               for info in databases]
    try:
        references = start_references(children, workdir, targets[-1], databases[-1]["path"])
        ours = [start_exporter(children, workdir, info, target, config) for info, target in zip(databases, targets)]
        for subject in ours:
            wait_until_serving(subject)
        for subject in ours:
            check_exporter(subject, log)
        log(f"measuring {len(references) + len(ours)} exporters, {args.scrapes} scrapes each ...")
        measure(references + ours, args.scrapes, args.warmup)
    finally:
        writers = [target.stop() for target in targets]
    node, proc = (subject.row for subject in references)
    return [subject.row for subject in ours], node, proc, writers


def main(argv: list[str] | None = None) -> int:
    from bench import idle  # it builds on this module's helpers

    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES),
                        help="comma-separated event counts (default 100000,1000000,10000000)")
    # p99 of 200 scrapes is the second slowest, one stall away from another result; of 1,000, the tenth.
    parser.add_argument("--scrapes", type=int, default=1000, help="timed scrapes per exporter (default 1000)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed scrapes per exporter first (default 20)")
    parser.add_argument("--rate", type=float, default=50.0, help="events/s each writer inserts (default 50)")
    parser.add_argument("--config", type=Path, help="exporter config file (default: the guide's defaults)")
    parser.add_argument("--no-logs", dest="logs", action="store_false", help="skip the log-throughput bench")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--no-idle", dest="idle", action="store_false", help="skip the all-day measurements")
    idle.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.scrapes < 1 or args.warmup < 0 or args.rate <= 0 or not 0 < args.idle_seconds < 86400:
        parser.error("--scrapes must be >= 1, --warmup >= 0, --rate > 0 and --idle-seconds from 0 to 86400")
    for binary in ("prometheus-node-exporter", "prometheus-process-exporter"):
        if shutil.which(binary) is None:
            print(f"bench: error: {binary} not found (apt-get install {binary})", file=sys.stderr)
            return 2

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    # SIGTERM ends the run like Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    children = Children()
    try:
        with tempfile.TemporaryDirectory(prefix="devflow-bench-") as tmp:
            rows, node, proc, writers = bench(args, children, Path(tmp), log)
    except KeyboardInterrupt:
        log("bench: interrupted, stopping child processes")
        return 130
    except (RuntimeError, OSError, http.client.HTTPException) as exc:
        log(f"bench: error: {exc}")
        return 1
    finally:
        children.stop_all()
    failed = print_table(rows, node, proc, writers, args)
    log_result = run_log_bench() if args.logs else None
    if args.idle:
        sys.stdout.flush()
        failed += idle.measure_all_day(args) or ["all-day measurements did not finish"]
    if args.json:
        args.json.write_text(json.dumps({"rows": [r.as_dict() for r in [node, proc, *rows]], "writers": writers,
                                         "failed": failed, "logs": log_result}, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
