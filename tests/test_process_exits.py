"""The server's exits, clean or crash, against real processes: a stand-in server started by a stand-in MCP
client, as an editor starts the public build over stdio."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import wait_until

from devflow_monitor.core import catalog

# A Node start-up crash as the public build prints it (docs/devflow.md "Process"): no level tag anywhere.
NODE_CRASH = """\
/home/dev/devflow/node_modules/better-sqlite3/lib/database.js:65
\t\tthrow new TypeError('Cannot open database because the directory does not exist');
\t\t^

TypeError: Cannot open database because the directory does not exist
    at new Database (/home/dev/devflow/node_modules/better-sqlite3/lib/database.js:65:9)
    at DatabaseManager.initialize (file:///home/dev/devflow/dist/storage/database.js:24:19)
    at file:///home/dev/devflow/dist/server/index.js:12:1

Node.js v20.11.1
"""
# A crash its logger reports itself, with a level.
FATAL_RECORD = "[FATAL] Uncaught exception: SqliteError: database disk image is malformed\n"

# The server: waits on stdin (its MCP client's pipe); on "crash" prints the crash text to stderr and exits 1.
SERVER = ("import os, sys\n"
          "if sys.stdin.readline().strip() == 'crash':\n"
          "    sys.stderr.write(os.environ['CRASH_TEXT']); sys.stderr.flush(); sys.exit(1)\n")
# The client: starts the server (its command in the environment, so the client's own command line does not
# match the server's pattern) with its stderr on a log file, prints its pid, then obeys its own stdin:
# "close" stops the server and exits, as an editor that closes; "crash" has the server crash, then exits.
CLIENT = ("import json, os, subprocess, sys\n"
          "log = open(os.environ['SERVER_LOG'], 'ab')\n"
          "server = subprocess.Popen(json.loads(os.environ['SERVER_COMMAND']), stdin=subprocess.PIPE, stderr=log)\n"
          "print(server.pid, flush=True)\n"
          "for line in sys.stdin:\n"
          "    if line.strip() == 'close':\n"
          "        server.terminate(); server.wait(); sys.exit(0)\n"
          "    if line.strip() == 'crash':\n"
          "        server.stdin.write(b'crash\\n'); server.stdin.flush(); server.wait(); sys.exit(0)\n")


class Client:
    """A stand-in MCP client and the server it started."""

    def __init__(self, spawn, install: str, log, crash_text: str = NODE_CRASH, cwd=None):
        import json

        server = [sys.executable, "-c", SERVER, "node", f"{install}/server/index.js"]
        env = {**os.environ, "SERVER_COMMAND": json.dumps(server), "SERVER_LOG": str(log), "CRASH_TEXT": crash_text}
        self.proc = spawn([sys.executable, "-c", CLIENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, env=env, **({"cwd": cwd} if cwd else {}))
        self.server_pid = int(self.proc.stdout.readline())

    def tell(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()


@pytest.fixture
def install():
    """A unique install path and the pattern that finds its server and nothing else on the machine."""
    path = f"/opt/devflow-exit-test-{os.getpid()}-{time.monotonic_ns()}"
    return path, re.escape(path) + r"/server/index\.js"


def exits(exporter) -> dict[str, float]:
    samples = exporter.scrape()
    return {reason: samples.get((catalog.PROCESS_EXITS.name, (("reason", reason),))) for reason in ("clean", "crash")}


def watching(start_exporter, tmp_path, pattern: str, mode: str):
    log = tmp_path / "devflow.err"
    log.touch()
    exporter = start_exporter("--devflow.database", str(tmp_path / "devflow.db"), "--devflow.process-pattern", pattern,
                              "--devflow.mode", mode, "--devflow.log-files", str(log),
                              settings={"collectors": {"process": {"exit_grace_seconds": 2},
                                                       "logs": {"enabled": True, "state_file": None}}})
    return exporter, log


def judged(exporter) -> dict[str, float]:
    def seen():
        counts = exits(exporter)
        return counts if counts["clean"] + counts["crash"] else None

    return wait_until(seen, message="the exit judged")


def test_both_reasons_are_exported_from_zero_with_the_target_mode(start_exporter, tmp_path, install):
    _, pattern = install
    exporter, _ = watching(start_exporter, tmp_path, pattern, "on_demand")
    samples = exporter.scrape()
    assert exits(exporter) == {"clean": 0, "crash": 0}
    assert samples[(catalog.TARGET_MODE.name, (("mode", "on_demand"),))] == 1
    assert samples[(catalog.TARGET_MODE.name, (("mode", "daemon"),))] == 0
    assert (catalog.PROCESS_LAST_EXIT.name, ()) not in samples, "no exit seen, no time"


def test_the_target_mode_is_exported_whatever_collectors_run(start_exporter):
    exporter = start_exporter(*[f"--no-collector.{name}" for name in
                                ("process", "database", "eventqueue", "logs", "probe", "host")])
    samples = exporter.scrape()
    assert samples[(catalog.TARGET_MODE.name, (("mode", "daemon"),))] == 1
    assert samples[(catalog.TARGET_MODE.name, (("mode", "on_demand"),))] == 0


def test_a_server_its_client_stops_before_closing_exits_clean(start_exporter, spawn, tmp_path, install):
    path, pattern = install
    exporter, log = watching(start_exporter, tmp_path, pattern, "on_demand")
    client = Client(spawn, path, log)
    wait_until(lambda: exporter.value(catalog.PROCESS_UP.name) == 1, message="the server found")
    before = time.time()
    client.tell("close")
    client.proc.wait(10)
    assert judged(exporter) == {"clean": 1, "crash": 0}
    at = exporter.value(catalog.PROCESS_LAST_EXIT.name)
    assert before <= at <= time.time()
    assert exporter.value(catalog.PROCESS_UP.name) == 0


@pytest.mark.parametrize("mode, reason", [("on_demand", "crash"), ("daemon", "clean")],
                         ids=["on_demand: its client lives on", "daemon: a service manager outlives every stop"])
def test_a_server_killed_while_its_parent_lives_on(start_exporter, spawn, tmp_path, install, mode, reason):
    path, pattern = install
    exporter, log = watching(start_exporter, tmp_path, pattern, mode)
    client = Client(spawn, path, log)
    wait_until(lambda: exporter.value(catalog.PROCESS_UP.name) == 1, message="the server found")
    os.kill(client.server_pid, signal.SIGKILL)
    assert judged(exporter) == {"clean": float(reason == "clean"), "crash": float(reason == "crash")}
    assert psutil.Process(client.proc.pid).is_running(), "the client still runs"


@pytest.mark.parametrize("crash_text", [NODE_CRASH, FATAL_RECORD], ids=["Node's uncaught exception", "a fatal record"])
def test_a_server_that_crashes_with_crash_output_in_its_log_exits_crash_though_its_client_closes(
        start_exporter, spawn, tmp_path, install, crash_text):
    path, pattern = install
    exporter, log = watching(start_exporter, tmp_path, pattern, "on_demand")
    client = Client(spawn, path, log, crash_text=crash_text)
    wait_until(lambda: exporter.value(catalog.PROCESS_UP.name) == 1, message="the server found")
    client.tell("crash")
    assert client.proc.wait(10) == 0, "the client closes after its server"
    assert log.read_text() == crash_text
    assert judged(exporter) == {"clean": 0, "crash": 1}
