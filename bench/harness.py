"""What the scrape benchmark (bench/run.py) and the all-day one (bench/idle.py) both stand on: the child
processes they start, free ports, a timed scrape, the waits for an exporter to serve and to finish its
startup work, a process's CPU clock, the exporter's config, and how sizes and ratios are read and shown.
"""

from __future__ import annotations

import argparse
import http.client
import re
import socket
import subprocess
import time
from pathlib import Path

import psutil

from devflow_monitor.core import catalog

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
# The first background count and integrity check at 10M can take minutes on a cold cache.
BACKGROUND_TIMEOUT = 900.0
# Measured in steady state: after the startup count and integrity check, as an hour later.
BACKGROUND_DONE = (catalog.DB_COUNTS_TIMESTAMP.name, catalog.DB_INTEGRITY_TIMESTAMP.name)


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


def wait_until_serving(proc: subprocess.Popen, port: int, name: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode} before serving")
        try:
            scrape(port, timeout=5)
            return
        except (OSError, RuntimeError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not serve /metrics within {READY_TIMEOUT:.0f}s")
            time.sleep(0.1)


def wait_for_background(proc: subprocess.Popen, port: int, name: str) -> float | None:
    """Seconds until the exporter reported its first full count and integrity check (None: timed out)."""
    began = time.monotonic()
    patterns = [re.compile(rb"^" + metric.encode() + rb" [1-9]", re.M) for metric in BACKGROUND_DONE]
    while time.monotonic() - began < BACKGROUND_TIMEOUT:
        _, body = scrape(port)
        if all(pattern.search(body) for pattern in patterns):
            return time.monotonic() - began
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited during warm-up")
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


def exporter_config(workdir: Path, extra: Path | None) -> Path:
    """The exporter's config for the run: the user's file if given, else the guide's defaults."""
    if extra is not None:
        return extra
    path = workdir / "exporter.yml"
    path.write_text("# the guide's defaults; only state is kept out of the user's home\n"
                    f"collectors:\n  logs:\n    state_file: {workdir / 'log-offsets.json'}\n")
    return path


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of event counts: {text!r}") from None
    if not sizes or sizes[0] <= 0:
        raise argparse.ArgumentTypeError(f"event counts must be positive: {text!r}")
    return sizes


def size_label(rows: int | None) -> str:
    if rows is None:
        return "-"
    for unit, scale in (("M", 1_000_000), ("k", 1_000)):
        if rows >= scale and rows % scale == 0:
            return f"{rows // scale}{unit}"
    return str(rows)


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "n/a"
