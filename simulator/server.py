"""One simulated DevFlow server process: the engine thread, the optional HTTP server, the fault switches.

Like the real server it never checkpoints the WAL on exit, so -wal and -shm files stay behind.
SIGTERM / SIGINT stop it with status 0; the `exit` fault ends it with status 1. SIGUSR1 reopens
the log files after rotation.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from devflow_monitor.simulator.engine import Engine
from devflow_monitor.simulator.faults import Faults
from devflow_monitor.simulator.http import bind_http
from devflow_monitor.simulator.logs import LogFiles, lines_for


class Simulator:
    """One simulated DevFlow server: event engine thread, optional HTTP server, fault switches."""

    def __init__(self, database: Path, listen: tuple[str, int] | None, log_dir: Path | None, rate: float,
                 faults, pidfile: Path | None, seed: int | None):
        self.database, self.rate, self.pidfile = database, rate, pidfile
        self.faults = Faults(faults)
        self.logs = LogFiles(log_dir)
        self.started = time.monotonic()
        self.stopping = threading.Event()
        self.engine = Engine(database, rate, seed, self.faults, self.logs, self.stopping, self.crash)
        self.queues = self.engine.queues
        self.server = bind_http(listen, self) if listen else None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGUSR1, lambda *_: self.logs.request_reopen())
        if self.pidfile:
            self._write_pidfile()
        self._log_startup()
        if "exit" in self.faults:
            self.crash()
        engine = threading.Thread(target=self.engine.run, name="engine", daemon=True)
        engine.start()
        if self.server:
            threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                             name="http", daemon=True).start()
        where = "no HTTP" if self.server is None else "http://%s:%d" % self.server.server_address[:2]
        print(f"devflow-monitor simulate: stand-in DevFlow server (pid {os.getpid()}), {self.rate:g} events/s "
              f"into {self.database}, {where}, faults: {', '.join(self.faults.active()) or 'none'}",
              file=sys.stderr, flush=True)
        while not self.stopping.wait(1.0):
            pass
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        engine.join(0.5)
        self.logs.record(lines_for("info", "ProjectManager", "DevFlow Monitor MCP server stopped"))
        self.logs.close()
        self._remove_pidfile()
        sys.stdout.flush()
        sys.stderr.flush()
        # Like the real server, leave without closing the database: no checkpoint, -wal and -shm remain.
        os._exit(0)

    def _on_stop_signal(self, signum, frame) -> None:
        self.stopping.set()

    def crash(self) -> None:
        """The `exit` fault: log like an uncaught exception and leave at once with status 1."""
        message = "Uncaught exception: Error: simulated crash (fault 'exit')"
        self.logs.record(lines_for("error", "ProcessManager", message))
        self._remove_pidfile()
        os._exit(1)

    def set_fault(self, name: str, on: bool) -> None:
        self.faults.set(name, on)
        level = "warn" if on else "info"
        self.logs.record(lines_for(level, "FaultInjector", f"simulator fault {name} {'on' if on else 'off'}"))

    def _write_pidfile(self) -> None:
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        partial = self.pidfile.with_name(self.pidfile.name + ".tmp")
        partial.write_text(f"{os.getpid()}\n")
        partial.replace(self.pidfile)

    def _remove_pidfile(self) -> None:
        try:
            if self.pidfile and self.pidfile.read_text().strip() == str(os.getpid()):
                self.pidfile.unlink()
        except OSError:
            pass

    def _log_startup(self) -> None:
        lines = lines_for("info", "ProjectManager", "DevFlow Monitor MCP server started")
        lines["devflow-monitor.err"] = ["[INFO] DevFlow Monitor MCP server started"]
        self.logs.record(lines)
