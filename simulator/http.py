"""The simulator's HTTP routes: the guide's GET /health and GET /status, and the fault switches.

POST /faults/NAME switches a fault on, DELETE /faults/NAME off, GET /faults lists them. /health
reports this process's real figures: memory.used is its RSS in MB, memory.total the machine's
memory in MB. Every request goes to access.log.
"""

from __future__ import annotations

import json
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from devflow_monitor.simulator.faults import FAULTS, SLOW_HEALTH_SECONDS
from devflow_monitor.simulator.logs import access_line

if TYPE_CHECKING:
    from devflow_monitor.simulator.server import Simulator

VERSION = "1.0.0"   # the version the guide's /health reports


class SimulatorServer(ThreadingHTTPServer):
    """Bound at construction (so a busy port fails at start); serving starts in Simulator.run()."""

    daemon_threads = True

    def __init__(self, listen: tuple[str, int], simulator: Simulator):
        self.address_family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        self.simulator = simulator
        super().__init__(listen, Handler)


def bind_http(listen: tuple[str, int], simulator: Simulator) -> SimulatorServer:
    """The bound server; a bind failure is an OSError that names the address."""
    try:
        return SimulatorServer(listen, simulator)
    except OSError as exc:
        raise OSError(f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror or exc}") from None


def health_body(sim: Simulator) -> tuple[int, dict]:
    """The guide's /health body, from this process's real figures and the active faults."""
    import psutil   # imported here: the engine thread imports it off the start-up path

    failing = "failing_health" in sim.faults
    state = "error" if failing else None
    body = {
        "status": "unhealthy" if failing else "healthy",
        "uptime": int(time.monotonic() - sim.started),
        "version": VERSION,
        "monitors": {"file": state or "active", "git": state or "active", "test": state or "idle"},
        "database": "connected" if sim.database.exists() else "disconnected",
        "memory": {"used": round(psutil.Process().memory_info().rss / 2**20),
                   "total": round(psutil.virtual_memory().total / 2**20)},
    }
    return (500 if failing else 200), body


def status_body(sim: Simulator) -> tuple[int, dict]:
    """The /health body plus the in-memory queues' counters."""
    code, body = health_body(sim)
    body["queue"] = sim.queues.snapshot()
    return code, body


class Handler(BaseHTTPRequestHandler):
    """Routes: GET /health, /status, /faults; POST and DELETE /faults/NAME."""

    server_version = "devflow-simulator"

    def do_GET(self):
        sim = self.server.simulator
        if self.path in ("/health", "/status"):
            if "slow_health" in sim.faults:
                time.sleep(SLOW_HEALTH_SECONDS)
            self._reply(*(health_body(sim) if self.path == "/health" else status_body(sim)))
        elif self.path == "/faults":
            self._reply(200, {"active": sim.faults.active(), "available": list(FAULTS)})
        elif self.path.startswith("/faults/"):
            self._reply(405, {"error": "use POST to switch a fault on, DELETE to switch it off"})
        else:
            self._reply(404, {"error": f"no route {self.path}"})

    def do_POST(self):
        self._switch(True)

    def do_DELETE(self):
        self._switch(False)

    def _switch(self, on: bool):
        sim = self.server.simulator
        name = self.path.removeprefix("/faults/") if self.path.startswith("/faults/") else None
        if name is None:
            self._reply(404 if self.path != "/faults" else 405, {"error": f"no route {self.command} {self.path}"})
        elif name not in FAULTS:
            self._reply(404, {"error": f"unknown fault '{name}' (known: {', '.join(FAULTS)})"})
        else:
            sim.set_fault(name, on)
            self._reply(200, {"fault": name, "active": on})
            if name == "exit" and on:
                sim.crash()

    def _reply(self, status: int, body: dict):
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except ConnectionError:
            pass
        elapsed_ms = (time.perf_counter() - self._began) * 1000
        line = access_line(self.client_address[0], time.time(), self.command, self.path, status, len(data),
                           elapsed_ms)
        self.server.simulator.logs.record({"access.log": [line]})

    def parse_request(self):
        self._began = time.perf_counter()
        return super().parse_request()

    def log_message(self, format, *args):
        """Requests go to access.log in _reply, not to stderr."""
