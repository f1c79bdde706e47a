"""Shared fixtures: free ports, the exporter CLI as a real child process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devflow_monitor.core.devflow_db import create_database, insert_event
from devflow_monitor.stack import deps

ROOT = Path(__file__).resolve().parent.parent


def requires(*programs: str) -> pytest.MarkDecorator:
    """Skip unless these system programs (names from stack/deps.py) are installed; the reason is the one
    line that installs them (`make deps` does it where this machine allows)."""
    absent = deps.missing(programs)
    names = ", ".join(program.command for program in absent)
    return pytest.mark.skipif(bool(absent), reason=f"{names} not installed: {deps.install_command(absent)}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


def cli(*args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run `devflow-monitor ARGS` as a child process and capture its output."""
    return subprocess.run([sys.executable, "-m", "devflow_monitor.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def wait_for_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s") from None
            time.sleep(0.05)


def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def database_with_events(path: Path, count: int, event_type: str = "file:changed") -> Path:
    """A database with the server's schema and `count` events of one type, closed (no -wal left)."""
    conn = create_database(path)
    for seq in range(count):
        insert_event(conn, event_type, seq=seq)
    conn.close()
    return path


def stop_process(*procs: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM all that still run at once, so they exit side by side; SIGKILL any left after `timeout`."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def spawn():
    """Start child processes that are always stopped at the end of the test."""
    started: list[subprocess.Popen] = []

    def start(args, **kwargs) -> subprocess.Popen:
        kwargs.setdefault("cwd", ROOT)
        kwargs.setdefault("env", {**os.environ, "PYTHONUNBUFFERED": "1"})
        proc = subprocess.Popen(args, **kwargs)
        started.append(proc)
        return proc

    yield start
    stop_process(*reversed(started))


def parse_metrics(text: str) -> dict[tuple, float]:
    """Samples as {(name, (("label", "value"), ...)): value}."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


class Exporter:
    """A `devflow-monitor serve` child process on a free port."""

    def __init__(self, proc: subprocess.Popen, url: str):
        self.proc = proc
        self.url = url

    def scrape(self) -> dict[tuple, float]:
        status, body = http_get(self.url + "/metrics")
        assert status == 200, body
        return parse_metrics(body)

    def value(self, name: str, **labels) -> float | None:
        return self.scrape().get((name, tuple(sorted(labels.items()))))


# For a test that needs no DevFlow server: a command line no process has, so a real DevFlow (or another
# test's stand-in for one) running on this machine is not taken for the server.
NO_SERVER = ("--devflow.process-pattern", "^devflow-monitor tests: no server has this command line$")

# Fast schedules so tests see background work within a second or two.
FAST_SETTINGS = {"collectors": {"process": {"scan_interval_seconds": 0.2},
                                "database": {"counts_interval_seconds": 0.5, "integrity_interval_seconds": 1},
                                "logs": {"enabled": False}, "probe": {"enabled": False}}}


@pytest.fixture
def start_exporter(spawn, tmp_path):
    """Start the exporter with FAST_SETTINGS merged with `settings`, plus extra CLI flags."""

    def start(*flags: str, settings: dict | None = None) -> Exporter:
        merged = _merge(FAST_SETTINGS, settings or {})
        config = tmp_path / f"exporter-{len(list(tmp_path.glob('exporter-*.yml')))}.yml"
        config.write_text(yaml.safe_dump(merged))
        port = free_port()
        proc = spawn([sys.executable, "-m", "devflow_monitor.cli", "serve", "--config.file", str(config),
                      "--web.listen-address", f"127.0.0.1:{port}", *flags])
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/health")
        return Exporter(proc, url)

    return start


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return merged


def voluntary_switches(pid: int, tid: int) -> int:
    """How often a thread has gone to sleep (Linux): one per wake-up of a thread that waits for work."""
    status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("voluntary_ctxt_switches:")))


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, message: str = "condition"):
    """Poll `predicate` until it returns a truthy value; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------------
# The DevFlow simulator (simulator/simulate.py) as a child process: the target most tests watch.
# ---------------------------------------------------------------------------------------------------

class RunningSimulator:
    """A `devflow-monitor simulate` child process and where it writes (public build layout: DIR/data/devflow.db)."""

    def __init__(self, process: subprocess.Popen, directory: Path, url: str | None):
        self.process = process
        self.directory = directory
        self.database = directory / "data" / "devflow.db"
        self.log_dir = directory / "logs"
        self.pidfile = directory / "devflow.pid"
        self.url = url   # None when started with listen=False (`--listen none`)

    @property
    def pid(self) -> int:
        return self.process.pid

    def fault(self, name: str, on: bool = True) -> dict:
        """Switch a fault on (POST /faults/NAME) or off (DELETE); returns the JSON answer."""
        if self.url is None:
            raise RuntimeError("this simulator serves no HTTP (listen=False)")
        import json   # local: this block is appended to a shared file and keeps its imports to itself

        request = urllib.request.Request(f"{self.url}/faults/{name}", method="POST" if on else "DELETE")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, return the exit status."""
        stop_process(self.process, timeout=timeout)
        return self.process.returncode


def start_simulator(spawn, directory: Path, *, rate: float = 20, faults=(), listen: bool = True, seed: int = 1,
                    extra_args=(), timeout: float = 15.0) -> RunningSimulator:
    """Start the simulator on a free port with its files under `directory`; returns once its pidfile exists
    (written after the database, the log directory and the listening socket are ready)."""
    directory = Path(directory)
    url = f"http://127.0.0.1:{free_port()}" if listen else None
    sim = RunningSimulator(None, directory, url)
    args = [sys.executable, "-m", "devflow_monitor.cli", "simulate", "--database", str(sim.database),
            "--listen", url.removeprefix("http://") if url else "none", "--log-dir", str(sim.log_dir),
            "--pidfile", str(sim.pidfile), "--rate", str(rate), "--seed", str(seed), *extra_args]
    if faults:
        args += ["--fault", *faults]
    sim.process = spawn(args)
    deadline = time.monotonic() + timeout
    while not (sim.pidfile.exists() and sim.pidfile.read_text().strip() == str(sim.pid)):
        if sim.process.poll() is not None:
            raise RuntimeError(f"simulator exited with status {sim.process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"simulator not ready within {timeout}s")
        time.sleep(0.02)
    return sim


@pytest.fixture
def simulator(spawn, tmp_path) -> RunningSimulator:
    """A running simulator: 20 events/s, HTTP on a free port, logs in tmp_path/logs; stopped after the test.
    For other options call start_simulator(spawn, directory, rate=..., faults=..., listen=False)."""
    return start_simulator(spawn, tmp_path)
