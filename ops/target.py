"""The DevFlow server process, as the operator commands see it: find it, describe it, stop it (and
`wait_gone`, which the stack runner uses for its own processes too).

Finding is the process collector's `ProcessFinder` (pidfile, command-line
pattern, listening port; never this command, its ancestors or its children),
so `doctor`, `restore` and the exporter always agree on which process is DevFlow.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

import psutil

from devflow_monitor.core.config import Config
from devflow_monitor.core.procfs import alive, read_pidfile
from devflow_monitor.exporter.collectors.process_finder import ProcessFinder

ZOMBIE_LOOK_SECONDS = 0.1  # how often wait_gone looks for a zombie, which psutil.wait_procs waits on


@dataclass
class Found:
    process: psutil.Process
    how: str  # "pidfile FILE", "pattern" or "port N": what identified it

    @property
    def pid(self) -> int:
        return self.process.pid

    def describe(self) -> str:
        try:
            cmdline = " ".join(self.process.cmdline()) or self.process.name()
        except psutil.Error:
            cmdline = "?"
        if len(cmdline) > 80:
            cmdline = cmdline[:77] + "..."
        return f"PID {self.pid} (by {self.how}): {cmdline}"


def finder(config: Config) -> ProcessFinder:
    return ProcessFinder.from_config(config)


def find_devflow(config: Config) -> list[Found]:
    """Every running DevFlow server process, oldest first."""
    search = finder(config)
    if search.pidfile:
        how = f"pidfile {search.pidfile}"
    else:
        how = "pattern"
    found = []
    for target in search.scan():
        try:
            proc = psutil.Process(target.pid)
            if proc.create_time() != target.create_time or not alive(proc):
                continue
        except psutil.Error:
            continue
        by = how
        if how == "pattern" and not search.pattern.search(" ".join(_cmdline(proc))):
            by = f"port {config.devflow.port}"
        found.append(Found(proc, by))
    return found


def stale_pidfile(config: Config) -> int | None:
    """The PID a configured pidfile names when no such process runs (a crash left it behind)."""
    if not config.devflow.pidfile:
        return None
    search = finder(config)
    pid = read_pidfile(search.pidfile)
    if pid is None or psutil.pid_exists(pid):
        return None
    return pid


def stop(found: list[Found], timeout: float) -> list[Found]:
    """SIGTERM each process and wait for it to exit; returns those still running after `timeout`."""
    for item in found:
        try:
            item.process.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    running = wait_gone([item.process for item in found], timeout)
    return [item for item in found if item.process in running]


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Those of `procs` still running after `timeout` seconds. psutil.wait_procs waits (and reaps our own
    children), but it also waits for a zombie that another parent has not reaped, which a test harness or a
    container's bare init may do late or never; a zombie has exited, so it counts as gone here."""
    deadline = time.monotonic() + timeout
    running = [proc for proc in procs if alive(proc)]
    while running and (left := deadline - time.monotonic()) > 0:
        _, running = psutil.wait_procs(running, timeout=min(left, ZOMBIE_LOOK_SECONDS))
        running = [proc for proc in running if alive(proc)]
    return running


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []
