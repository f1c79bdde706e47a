"""The logs collector on real files: real rotation (rename+create, copytruncate), a real writer
process, real restarts and kills, real permission and filesystem failures.

Run as a script (`python tests/test_logs.py write ...`) this module is the writer process.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import free_port, http_get, parse_metrics, requires, voluntary_switches, wait_for_http, wait_until
from test_ops_support import crash_like_the_public_build
from devflow_monitor.core import catalog, config
from devflow_monitor.exporter.collectors import CollectorSet
from devflow_monitor.exporter.collectors import logreader
from devflow_monitor.exporter.collectors import logs as logs_module
from devflow_monitor.exporter.collectors.logs import LogsCollector
from devflow_monitor.core.logformat import LEVELS, LevelCounter

WRITER_RECORDS = 100_000
ACCESS_LINE = '127.0.0.1 - - [02/Aug/2025:14:00:01 +0000] "GET {path} HTTP/1.1" {status} 312 {duration}'


# --- records in every DevFlow format, with decoys -----------------------------------------------------

def records(count: int, seed: int, start: int = 0):
    """(normalised level, bytes) for `count` records: all formats of docs/devflow.md, decoys, multi-line dumps."""
    rnd = random.Random(seed)
    spellings = {"debug": ["DEBUG", "TRACE"], "info": ["INFO", "info"], "warn": ["WARN", "WARNING"],
                 "error": ["ERROR", "ERR"], "fatal": ["FATAL", "CRITICAL"]}
    levels = list(spellings)
    for i in range(start, start + count):
        level = rnd.choice(levels)
        word = rnd.choice(spellings[level])
        decoy = rnd.choice([w for other in levels if other != level for w in spellings[other]])
        kind = rnd.randrange(9)
        if kind == 0:
            text = f"[{word}][GitMonitor] New commit detected: {i:x} - fix {decoy} handling\n"
        elif kind == 1:
            text = f"[2026-11-26T11:37:33.{i % 1000:03d}Z] [{word}] [ProjectManager] #{i} saw [{decoy}] in output\n"
        elif kind == 2:
            text = f"2025-08-02 14:00:{i % 60:02d} {word} [StorageManager] #{i} {decoy} ERROR FATAL\n"
        elif kind == 3:
            severity = word.lower()
            text = (f'{{"timestamp": "2025-08-02T14:00:01Z", "eventType": "e{i}", "message": '
                    f'"\\"severity\\": \\"{decoy.lower()}\\"", "severity": "{severity}", "category": "audit"}}\n')
        elif kind == 4:  # chokidar event dump: one debug record over five lines
            level, word = "debug", "DEBUG"
            text = (f"[DEBUG] File event: file:change {{\n  type: 'change',\n  path: '/src/{decoy}.ts',\n"
                    f"  message: '[{decoy}] #{i}',\n}}\n")
        elif kind == 5:  # an error with its stack: continuation lines are not records
            level = "error"
            text = (f"[ERROR][GitMonitor] Error processing commit {i:x}: GitError: bad\n"
                    f"GitError: fatal: [{decoy}] not a git repository\n    at Git.run (git.js:{i % 97}:3)\n")
        elif kind == 6:
            level = "unknown"
            text = rnd.choice([f"[GitMonitor] #{i} {decoy}\n", f'{{"timestamp": "t", "eventType": "e{i}"}}\n',
                               f"[2026-11-26T11:37:33.000Z] #{i} {decoy}\n"])
        elif kind == 7:
            text = f"[{word}] #{i} DevFlow Monitor MCP server started\n"
        else:
            text = f"2025-08-02T14:00:{i % 60:02d}.123Z {word}: #{i} {decoy}: done\n"
        yield level, text.encode()


def truth_of(recs) -> dict[str, int]:
    counts = Counter(level for level, _ in recs)
    return {level: counts.get(level, 0) for level in LEVELS}


def write_with_rotations(path: str, count: int, seed: int, rotations: int, truth_path: str) -> None:
    """The writer process: append records (some in two writes) and rotate the file both ways meanwhile."""
    rnd = random.Random(seed + 1)
    every = count // (rotations + 1)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    truth = Counter()
    rotated = 0
    for i, (level, data) in enumerate(records(count, seed)):
        if i and i % every == 0 and rotated < rotations:
            rotated += 1
            target = f"{path}.{rotated}"
            if rotated % 2:  # logrotate `create`: rename, the app writes on until it reopens
                os.rename(path, target)
                for _ in range(50):
                    os.write(fd, b"[INFO][Writer] written to the renamed file before reopening\n")
                truth["info"] += 50
                os.close(fd)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            else:  # logrotate `copytruncate`
                shutil.copyfile(path, target)
                os.truncate(path, 0)
        truth[level] += 1
        if rnd.random() < 0.1:  # a record in two writes: the reader sees half a line
            cut = rnd.randrange(1, len(data))
            os.write(fd, data[:cut])
            os.write(fd, data[cut:])
        else:
            os.write(fd, data)
        if i % 200 == 0:
            time.sleep(0.001)
    os.close(fd)
    Path(truth_path).write_text(json.dumps({level: truth.get(level, 0) for level in LEVELS}))


# --- helpers ------------------------------------------------------------------------------------------

def make_collector(tmp_path: Path, files, access=None, poll: float = 0.05,
                   state: str = "state.json", pattern: str | None = None) -> LogsCollector:
    overrides = {"devflow.log_files": [str(f) for f in files],
                 "devflow.access_log": str(access) if access else None,
                 "collectors.logs.state_file": str(tmp_path / state),
                 "collectors.logs.poll_interval_seconds": poll}
    if pattern:
        overrides["collectors.logs.access_log_pattern"] = pattern
    return LogsCollector(config.load(env={}, overrides=overrides))


def samples(collector) -> dict[tuple, float]:
    out = {}
    for family in collector.collect():
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def levels_of(collector, path) -> dict[str, int]:
    values = samples(collector)
    return {level: int(values.get((catalog.LOG_LINES.name, (("file", str(path)), ("level", level))), 0))
            for level in LEVELS}


def value(collector, metric, **labels) -> float | None:
    return samples(collector).get((metric, tuple(sorted((k, str(v)) for k, v in labels.items()))))


def append(path: Path, recs) -> dict[str, int]:
    recs = list(recs)
    with open(path, "ab") as handle:
        handle.write(b"".join(data for _, data in recs))
    return truth_of(recs)


def add(*truths) -> dict[str, int]:
    return {level: sum(t[level] for t in truths) for level in LEVELS}


@pytest.fixture
def running():
    """Collectors started in a test are always stopped."""
    started = []

    def start(collector):
        collector.start()
        started.append(collector)
        return collector

    yield start
    for collector in started:
        collector.stop()


# --- formats ------------------------------------------------------------------------------------------

def test_each_format_counts_by_its_own_level_field_not_by_words_in_the_message():
    text = (b"[INFO] DevFlow Monitor MCP server started\n"
            b"[INFO][GitMonitor] New commit detected: e6d47ac - fix ERROR handling\n"
            b"[2026-11-26T11:37:33.687Z] [WARN] [ProjectManager] saw [ERROR] FATAL\n"
            b"2025-08-02 14:00:01 ERROR [StorageManager] INFO DEBUG\n"
            b"GitError: fatal: ERROR\n    at run (git.js:1:2)\n"
            b'{"timestamp": "x", "message": "\\"severity\\": \\"error\\"", "severity": "fatal"}\n'
            b"[DEBUG] File event: file:change {\n  type: 'change',\n  message: '[ERROR] inside the dump',\n}\n"
            b"[GitMonitor] no level\n[TRACE] t\n")
    counts, _ = LevelCounter().count(b"\n" + text, 0, len(text) + 1)
    assert counts == {"info": 2, "warn": 1, "error": 1, "fatal": 1, "debug": 2, "unknown": 1}


def test_json_level_is_the_first_severity_key_also_with_a_space_after_the_brace():
    text = (b'{"timestamp": "t", "severity": "info", "details": {"severity": "critical"}}\n'
            b'{ "timestamp": "t", "severity": "warning" }\n'
            b'{\t"eventType": "no severity"}\n')
    counts, _ = LevelCounter().count(b"\n" + text, 0, len(text) + 1)
    assert counts == {"info": 1, "warn": 1, "unknown": 1}


def test_stdout_counts_json_rpc_messages_apart_and_plain_lines_as_unknown_records(tmp_path):
    out = tmp_path / "devflow-monitor.out"
    out.write_bytes(
        b"Running migration 1...\n"
        b"[2026-11-26T11:37:33.687Z] [INFO] [ProjectManager] Project registered\n"
        b'{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2024-11-05"}}\n'
        b'{"result":{"content":[{"type":"text","text":"ok"}],"events":[{"severity":"error"}]},'
        b'"jsonrpc":"2.0","id":1}\n'  # the SDK writes "jsonrpc" last; a result may carry a severity
        b'{"method":"notifications/message","params":{"level":"info"},"jsonrpc" : "2.0"}\n'
        b"\n"
        b"Migrations complete\n"
        b"[2026-11-26T11:37:34.001Z] [ERROR] [StorageManager] Cannot open database: Error: SQLITE_BUSY\n"
        b"Error: SQLITE_BUSY: database is locked\n    at Database.run (db.js:1:2)\n")
    collector = make_collector(tmp_path, [out])
    collector.read_once()
    assert levels_of(collector, out) == {**dict.fromkeys(LEVELS, 0), "info": 1, "error": 1, "unknown": 2}
    assert value(collector, catalog.LOG_PROTOCOL_MESSAGES.name, file=out) == 3
    collector.close()


# --- Node crashes and errors over several lines ------------------------------------------------------------

# The public build's start-up crash without <cwd>/data (docs/devflow.md "Process"), as Node 20 prints it.
START_UP_CRASH = (
    b"/home/dev/devflow/node_modules/better-sqlite3/lib/database.js:65\n"
    b"\t\tthrow new TypeError('Cannot open database because the directory does not exist');\n"
    b"\t\t^\n"
    b"\n"
    b"TypeError: Cannot open database because the directory does not exist\n"
    b"    at new Database (/home/dev/devflow/node_modules/better-sqlite3/lib/database.js:65:9)\n"
    b"    at new StorageManager (file:///home/dev/devflow/dist/storage/index.js:21:19)\n"
    b"    at file:///home/dev/devflow/dist/server/index.js:30:24\n"
    b"    at ModuleJob.run (node:internal/modules/esm/module_job:325:25)\n"
    b"\n"
    b"Node.js v20.20.2\n")
# Other crashes as Node 20 and V8 print them (each seen from `node` on this project's machines).
CRASHES = {
    "start_up": START_UP_CRASH,
    "unhandled_rejection": (
        b"node:internal/process/promises:389\n      new UnhandledPromiseRejection(reason);\n      ^\n\n"
        b"UnhandledPromiseRejection: This error originated either by throwing inside of an async function without "
        b"a catch block, or by rejecting a promise which was not handled with .catch(). The promise rejected with "
        b"the reason \"boom\".\n    at throwUnhandledRejectionsMode (node:internal/process/promises:389:7)\n"
        b"    at process.processTicksAndRejections (node:internal/process/task_queues:96:32) {\n"
        b"  code: 'ERR_UNHANDLED_REJECTION'\n}\n\nNode.js v20.20.2\n"),
    "module_not_found": (
        b"node:internal/modules/esm/resolve:283\n    throw new ERR_MODULE_NOT_FOUND(\n          ^\n\n"
        b"Error [ERR_MODULE_NOT_FOUND]: Cannot find module '/srv/devflow/dist/x.js' imported from /srv/t.mjs\n"
        b"    at finalizeResolution (node:internal/modules/esm/resolve:283:11) {\n"
        b"  code: 'ERR_MODULE_NOT_FOUND',\n  url: 'file:///srv/devflow/dist/x.js'\n}\n\nNode.js v20.20.2\n"),
    "message_over_lines": (
        b"file:///srv/devflow/dist/server/index.js:1\nthrow new Error('multi\\nline')\n      ^\n\n"
        b"Error: multi\nline\n    at file:///srv/devflow/dist/server/index.js:1:7\n\nNode.js v20.20.2\n"),
    "thrown_value": (
        b"\nnode:internal/modules/run_main:123\n    triggerUncaughtException(\n    ^\n5\n"
        b"(Use `node --trace-uncaught ...` to show where the exception was thrown)\n\nNode.js v20.20.2\n"),
    "json_parse": (
        b"<anonymous_script>:1\n{bad\n ^\n\nSyntaxError: Expected property name or '}' in JSON at position 1\n"
        b"    at JSON.parse (<anonymous>)\n\nNode.js v20.20.2\n"),
    "no_source_lines": b"TypeError: Cannot read properties of null (reading 'x')\n    at run (x.js:1:2)\n\nNode.js v20.20.2\n",
    "seen_only_by_its_end": b"\nNode.js v20.20.2\n",
    "out_of_memory": (
        b"\n<--- Last few GCs --->\n\n[6447:0x45189e20]       52 ms: Mark-Compact 20.1 (36.7) -> 20.1 (36.7) MB, "
        b"3.74 / 0.00 ms  (average mu = 0.332, current mu = 0.178) allocation failure\n\n\n"
        b"<--- JS stacktrace --->\n\nFATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory\n"
        b"----- Native stack trace -----\n\n 1: 0xb78db3 node::OOMErrorHandler(char const*) [node]\n"
        b"10: 0x10b7fb4 v8::internal::FactoryBase<v8::internal::Factory>::NewFixedArrayWithFiller() [node]\n"),
}
# simple-git's error as console.error('[ERROR][GitMonitor] Error processing commit %s:', error) prints it:
# git's own lines after the message, the stack, then the error's `task` (docs/devflow.md "Logs").
GIT_ERROR = (
    b"[ERROR][GitMonitor] Error processing commit 50c1a2b3c4d5e6f708192a3b4c5d6e7f80912345: GitError: fatal: "
    b"ambiguous argument '50c1a2b3c4d5e6f708192a3b4c5d6e7f80912345~1': unknown revision or path not in the "
    b"working tree.\n"
    b"Use '--' to separate paths from revisions, like this:\n"
    b"'git <command> [<revision>...] -- [<file>...]'\n"
    b"\n"
    b"    at Object.action (/home/dev/devflow/node_modules/simple-git/dist/cjs/index.js:1266:25)\n"
    b"    at PluginStore.exec (/home/dev/devflow/node_modules/simple-git/dist/cjs/index.js:1301:29)\n"
    b"    at process.processTicksAndRejections (node:internal/process/task_queues:95:5) {\n"
    b"  task: {\n"
    b"    commands: [ 'diff', '--stat=4096', '50c1a2b3c4d5e6f708192a3b4c5d6e7f80912345~1' ],\n"
    b"    format: 'utf-8',\n"
    b"    parser: [Function: parser]\n"
    b"  }\n"
    b"}\n")


@pytest.mark.parametrize("crash", list(CRASHES), ids=list(CRASHES))
def test_a_node_crash_is_one_fatal_record_between_the_servers_own_lines(crash):
    text = b"[INFO][FileMonitor] Monitor started\n" + CRASHES[crash] + b"[INFO] DevFlow Monitor MCP server started\n"
    counts, in_record = LevelCounter().count(b"\n" + text, 0, len(text) + 1)
    assert counts == {"info": 2, "fatal": 1}
    assert not in_record


@requires("node")
def test_the_real_start_up_crash_counts_one_fatal_record_and_nothing_else(tmp_path):
    err = tmp_path / "devflow-monitor.err"
    assert crash_like_the_public_build(tmp_path, err) != 0
    assert b"TypeError: Cannot open database" in err.read_bytes() and b"\nNode.js v" in err.read_bytes()
    collector = make_collector(tmp_path, [err])
    collector.read_once()
    assert levels_of(collector, err) == {**dict.fromkeys(LEVELS, 0), "info": 1, "fatal": 1}
    assert value(collector, catalog.LOG_LAST_ERROR.name, file=err) is not None
    collector.close()


def test_git_error_text_after_an_error_record_continues_it(tmp_path):
    log = tmp_path / "devflow-monitor.err"
    log.write_bytes(b"[INFO][GitMonitor] New commit detected: e6d47ac - chore: update\n" + GIT_ERROR * 7
                    + b"[ERROR][GitMonitor] Error processing commit 50c1: GitError: bad\n"
                      b"GitError: fatal: not a git repository\n    at Git.run (git.js:1:2)\n"
                    + b"[INFO][GitMonitor] New commit detected: 7f3a9c1 - feat: x\n")
    collector = make_collector(tmp_path, [log])
    collector.read_once()
    assert levels_of(collector, log) == {**dict.fromkeys(LEVELS, 0), "info": 2, "error": 8}
    collector.close()


@pytest.mark.parametrize("restart", [False, True], ids=["live", "across_restart"])
def test_a_crash_or_an_error_written_in_pieces_counts_once_wherever_a_read_falls(tmp_path, restart):
    text = b"[INFO] started\n" + GIT_ERROR + START_UP_CRASH + CRASHES["no_source_lines"] + b"[WARN] again\n"
    # Every line end, but those between a crash's location line and its caret: Node writes them, the
    # exception and its stack in one write(2), and `Node.js vX` in a second (seen with strace).
    location = text.index(START_UP_CRASH)
    cuts = [i + 1 for i, byte in enumerate(text) if byte == ord("\n") and not location <= i < text.index(b"^", location)]
    cuts = cuts[:-1]
    for n, cut in enumerate(cuts):
        log = tmp_path / f"cut-{n}.err"
        log.write_bytes(text[:cut])
        collector = make_collector(tmp_path, [log], state=f"state-{n}.json")
        collector.read_once()
        if restart:
            collector.close()
            collector = make_collector(tmp_path, [log], state=f"state-{n}.json")
        with open(log, "ab") as app:
            app.write(text[cut:])
        collector.read_once()
        assert levels_of(collector, log) == {**dict.fromkeys(LEVELS, 0), "info": 1, "error": 1, "fatal": 2,
                                             "warn": 1}, text[:cut].rsplit(b"\n", 2)[-2]
        collector.close()


@requires("node")
def test_doctor_and_the_exporter_count_the_start_up_crash_as_one_fatal_record(tmp_path, spawn):
    err = tmp_path / "crash.err"
    crash_like_the_public_build(tmp_path, err)
    skip = [arg for check in ("process", "port", "database", "wal", "disk", "events", "exporter")
            for arg in ("--skip", check)]
    doctor = subprocess.run([sys.executable, "-m", "devflow_monitor.cli", "doctor", "--json",
                             "--devflow.log-files", str(err), *skip], capture_output=True, text=True, timeout=60)
    logs = next(check for check in json.loads(doctor.stdout)["checks"] if check["name"] == "logs")
    assert logs["details"]["errors_per_file"] == {str(err): 1}
    assert logs["summary"].startswith("1 error lines") and "crash: TypeError: Cannot open database" in logs["summary"]

    cfg = tmp_path / "config.yml"
    cfg.write_text(f"collectors:\n  logs:\n    state_file: {tmp_path / 'state.json'}\n")
    port = free_port()
    spawn([sys.executable, "-m", "devflow_monitor.cli", "serve", "--config.file", str(cfg),
           "--web.listen-address", f"127.0.0.1:{port}", "--devflow.log-files", str(err),
           "--devflow.database", str(tmp_path / "none.db"), "--devflow.url", f"http://127.0.0.1:{free_port()}"])
    wait_for_http(f"http://127.0.0.1:{port}/metrics")
    fatal = f'{catalog.LOG_LINES.name}{{file="{err}",level="fatal"}} 1.0'
    wait_until(lambda: fatal in http_get(f"http://127.0.0.1:{port}/metrics")[1], message="the crash on /metrics")
    assert f'{catalog.LOG_LINES.name}{{file="{err}",level="unknown"}} 0.0' in http_get(
        f"http://127.0.0.1:{port}/metrics")[1]


def test_mixed_records_in_one_file_are_counted_exactly(tmp_path):
    log = tmp_path / "server.log"
    truth = append(log, records(5000, seed=7))
    collector = make_collector(tmp_path, [log])
    collector.read_once()
    assert levels_of(collector, log) == truth
    assert value(collector, catalog.LOG_BYTES.name, file=log) == log.stat().st_size
    assert value(collector, catalog.LOG_FILE_SIZE.name, file=log) == log.stat().st_size
    assert value(collector, catalog.LOG_LAST_ERROR.name, file=log) == pytest.approx(time.time(), abs=30)
    collector.close()


def test_last_error_time_of_an_old_backlog_is_when_it_was_written_not_when_it_was_read(tmp_path):
    log = tmp_path / "server.log"
    log.write_bytes(b"2025-08-02 14:00:01 ERROR old failure\n")
    yesterday = time.time() - 86400
    os.utime(log, (yesterday, yesterday))
    collector = make_collector(tmp_path, [log])
    collector.read_once()
    assert value(collector, catalog.LOG_LAST_ERROR.name, file=log) == pytest.approx(yesterday, abs=1)
    with open(log, "ab") as handle:
        handle.write(b"2025-08-02 14:00:02 INFO fine\n")
    collector.read_once()
    assert value(collector, catalog.LOG_LAST_ERROR.name, file=log) == pytest.approx(yesterday, abs=1)
    with open(log, "ab") as handle:
        handle.write(b"[FATAL] now\n")
    collector.read_once()
    assert value(collector, catalog.LOG_LAST_ERROR.name, file=log) == pytest.approx(time.time(), abs=30)
    collector.close()


# --- rotation -----------------------------------------------------------------------------------------

def test_writer_process_rotating_both_ways_loses_and_doubles_no_record(tmp_path, spawn, running):
    log = tmp_path / "server.log"
    truth_file = tmp_path / "truth.json"
    collector = running(make_collector(tmp_path, [log]))
    writer = spawn([sys.executable, __file__, "write", str(log), str(WRITER_RECORDS), "11", "6", str(truth_file)])
    # Scraped every 20 ms, so that passes fall between and during its rotations, which come every
    # 150 ms or so. Rotation events alone give one pass each, and on a loaded machine one can come
    # after the next rotation: logrotate's come hours apart, so that would test the load, not the reader.
    while writer.poll() is None:
        samples(collector)
        time.sleep(0.02)
    assert writer.wait(60) == 0
    truth = json.loads(truth_file.read_text())
    assert sum(truth.values()) >= WRITER_RECORDS
    try:
        wait_until(lambda: levels_of(collector, log) == truth, timeout=20, message="exact level counts")
    finally:
        print("counted", levels_of(collector, log), "written", truth)
    rotations = {kind: value(collector, catalog.LOG_ROTATIONS.name, file=log, kind=kind)
                 for kind in ("rename", "truncate")}
    assert rotations == {"rename": 3, "truncate": 3}
    assert value(collector, catalog.LOG_READ_ERRORS.name, file=log, reason="truncated_unread") == 0


def test_copytruncate_takes_the_lines_not_yet_read_from_the_copy(tmp_path):
    log = tmp_path / "app.log"
    first = append(log, records(300, seed=1))
    collector = make_collector(tmp_path, [log])
    collector.read_once()
    unread = append(log, records(200, seed=2, start=300))  # written, then rotated before we looked
    shutil.copyfile(log, tmp_path / "app.log.1")
    os.truncate(log, 0)
    after = append(log, records(400, seed=3, start=500))  # the new file grows past our old offset
    collector.read_once()
    assert levels_of(collector, log) == add(first, unread, after)
    assert value(collector, catalog.LOG_ROTATIONS.name, file=log, kind="truncate") == 1
    collector.close()


def test_rename_rotation_counts_lines_written_to_the_old_file_before_reopen(tmp_path):
    log = tmp_path / "app.log"
    collector = make_collector(tmp_path, [log])
    with open(log, "ab", buffering=0) as old:
        old.write(b"[INFO] one\n")
        collector.read_once()
        os.rename(log, tmp_path / "app.log.1")
        log.write_bytes(b"[ERROR] in the new file\n")
        collector.read_once()
        old.write(b"[WARN] the app has not reopened yet\n")  # still lands in the renamed file
        collector.read_once()
    assert levels_of(collector, log) == {**dict.fromkeys(LEVELS, 0), "info": 1, "error": 1, "warn": 1}
    assert value(collector, catalog.LOG_ROTATIONS.name, file=log, kind="rename") == 1
    collector.close()


def test_rename_rotation_keeps_reading_the_old_file_while_the_app_never_reopens(tmp_path, monkeypatch):
    monkeypatch.setattr(logs_module, "ROTATE_WAIT_SECONDS", 0.1)
    log = tmp_path / "server.log"
    collector = make_collector(tmp_path, [log])
    with open(log, "ab", buffering=0) as app:  # like Node's stderr under launchd: never reopened
        app.write(b"[INFO] before the rotation\n")
        collector.read_once()
        os.rename(log, tmp_path / "server.log.1")
        log.touch()  # logrotate `create`; the SIGUSR1 that follows is ignored
        collector.read_once()
        time.sleep(0.3)  # the old file is quiet for longer than the rotate wait
        collector.read_once()
        app.write(b"[ERROR] still written to the renamed file\n")
        collector.read_once()
    assert levels_of(collector, log) == {**dict.fromkeys(LEVELS, 0), "info": 1, "error": 1}
    # Once the app writes to the new file and the old one is quiet, the old one is closed.
    log.write_bytes(b"[WARN] the app reopened\n")
    collector.read_once()
    time.sleep(0.3)
    collector.read_once()
    assert collector._files[str(log)].rotated == []
    assert levels_of(collector, log) == {**dict.fromkeys(LEVELS, 0), "info": 1, "error": 1, "warn": 1}
    collector.close()


@pytest.mark.parametrize("restart", [False, True], ids=["live", "across_restart"])
def test_copytruncate_then_rename_before_the_next_pass_loses_no_line(tmp_path, restart):
    log = tmp_path / "app.log"
    first = append(log, records(300, seed=1))
    collector = make_collector(tmp_path, [log])
    collector.read_once()
    if restart:
        collector.close()
    unread = append(log, records(200, seed=2, start=300))
    shutil.copyfile(log, tmp_path / "app.log.1")  # copytruncate
    os.truncate(log, 0)
    refilled = append(log, records(600, seed=3, start=500))  # past our old offset, other bytes before it
    os.rename(tmp_path / "app.log.1", tmp_path / "app.log.2")  # then a rename rotation
    os.rename(log, tmp_path / "app.log.1")
    after = append(log, records(100, seed=4, start=1100))
    if restart:
        collector = make_collector(tmp_path, [log])
    collector.read_once()
    collector.read_once()
    assert levels_of(collector, log) == add(first, unread, refilled, after)
    assert value(collector, catalog.LOG_BYTES.name, file=log) == sum(
        (tmp_path / name).stat().st_size for name in ("app.log.2", "app.log.1", "app.log"))
    collector.close()


def fds_on_deleted_files(directory: Path, but: int) -> list[str]:
    """This process's descriptors, other than `but`, on files deleted from `directory`."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if int(fd) != but and target.startswith(str(directory)) and target.endswith(" (deleted)"):
            found.append(target)
    return found


@pytest.mark.parametrize("recreate", [False, True], ids=["removed", "removed_and_created_again"])
def test_deleted_log_is_read_to_its_end_and_released_in_the_same_pass(tmp_path, recreate):
    log = tmp_path / "server.log"
    collector = make_collector(tmp_path, [log], poll=60)
    with open(log, "ab", buffering=0) as app:  # the app keeps its descriptor, as Node does
        app.write(b"[INFO] before\n")
        collector.read_once()
        app.write(b"[ERROR] written just before the rm\n")
        log.unlink()
        if recreate:
            log.write_bytes(b"[WARN] the new file\n")
        collector.read_once()
        assert fds_on_deleted_files(tmp_path, but=app.fileno()) == []
    expected = {"info": 1, "error": 1, "warn": 1 if recreate else 0}
    assert levels_of(collector, log) == {**dict.fromkeys(LEVELS, 0), **expected}
    collector.close()


@pytest.mark.parametrize("restart", [False, True], ids=["live", "across_restart"])
def test_a_log_deleted_and_made_anew_is_no_rotation(tmp_path, restart):
    log = tmp_path / "devflow-monitor.err"
    with open(log, "ab", buffering=0) as server:  # the server holds its stderr open
        server.write(b"[INFO] the first server\n")
        collector = make_collector(tmp_path, [log])
        collector.read_once()
        if restart:
            collector.close()
        log.unlink()  # the user removes the log; the next server the editor starts writes a new one
        log.write_bytes(b"[INFO] the next server\n")
    if restart:
        collector = make_collector(tmp_path, [log])
    collector.read_once()
    assert levels_of(collector, log) == {**dict.fromkeys(LEVELS, 0), "info": 2}
    assert {kind: value(collector, catalog.LOG_ROTATIONS.name, file=log, kind=kind)
            for kind in ("rename", "truncate")} == {"rename": 0, "truncate": 0}
    collector.close()


def read_info_lines_then_cut_in_half(tmp_path: Path, inside_a_line: bool = False,
                                     restart: bool = False) -> tuple[Path, LogsCollector]:
    """10,000 INFO lines read, then `truncate -s 50%`: the head stays, unlike copytruncate's truncation to 0."""
    log = tmp_path / "server.log"
    log.write_bytes(b"".join(b"[INFO] line %05d\n" % i for i in range(10_000)))
    collector = make_collector(tmp_path, [log])
    collector.read_once()
    if restart:
        collector.close()
    os.truncate(log, log.stat().st_size // 2 - (7 if inside_a_line else 0))
    return log, make_collector(tmp_path, [log]) if restart else collector


def append_error_lines(log: Path) -> None:
    with open(log, "ab") as app:
        app.write(b"".join(b"[ERROR] line %05d\n" % i for i in range(5_000)))


@pytest.mark.parametrize("inside_a_line", [False, True], ids=["at_a_line_end", "inside_a_line"])
@pytest.mark.parametrize("restart", [False, True], ids=["live", "across_restart"])
def test_log_cut_shorter_counts_nothing_twice(tmp_path, inside_a_line, restart):
    log, collector = read_info_lines_then_cut_in_half(tmp_path, inside_a_line, restart)
    collector.read_once()
    append_error_lines(log)  # the app's next line starts where the file now ends
    collector.read_once()
    assert levels_of(collector, log) == {**dict.fromkeys(LEVELS, 0), "info": 10_000, "error": 5_000}
    assert value(collector, catalog.LOG_ROTATIONS.name, file=log, kind="truncate") == 1
    assert value(collector, catalog.LOG_READ_ERRORS.name, file=log, reason="truncated_unread") == 0
    collector.close()


def test_log_cut_shorter_and_regrown_before_it_is_read_counts_nothing_twice_and_the_loss(tmp_path):
    log, collector = read_info_lines_then_cut_in_half(tmp_path)
    append_error_lines(log)  # past our offset again before we look: where the cut was is unknown
    collector.read_once()
    counts = levels_of(collector, log)
    assert counts["info"] == 10_000
    assert 0 < counts["error"] < 5_000  # those after our old offset; the ones before it are lost ...
    assert value(collector, catalog.LOG_READ_ERRORS.name, file=log, reason="truncated_unread") == 1  # ... and said so
    collector.close()


def test_losses_that_cannot_be_avoided_are_counted_as_read_errors(tmp_path):
    log = tmp_path / "app.log"
    first = append(log, records(100, seed=1))
    collector = make_collector(tmp_path, [log])
    collector.read_once()
    append(log, records(100, seed=2, start=100))  # never read: truncated without a copy
    os.truncate(log, 0)
    collector.read_once()
    assert value(collector, catalog.LOG_READ_ERRORS.name, file=log, reason="truncated_unread") == 1
    third = append(log, records(100, seed=3, start=200))
    collector.read_once()
    collector.close()
    append(log, records(100, seed=4, start=300))  # never read: renamed away and deleted while we are down
    os.rename(log, tmp_path / "app.log.1")
    fifth = append(log, records(50, seed=5, start=400))
    (tmp_path / "app.log.1").unlink()  # after the new file exists, as logrotate does: no inode reuse
    again = make_collector(tmp_path, [log])
    again.read_once()
    assert value(again, catalog.LOG_READ_ERRORS.name, file=log, reason="vanished") == 1
    assert levels_of(again, log) == add(first, third, fifth)
    again.close()


# --- restarts -----------------------------------------------------------------------------------------

def test_restarted_collector_continues_totals_exactly_also_after_rotations_while_down(tmp_path, running):
    log = tmp_path / "server.log"
    first = running(make_collector(tmp_path, [log]))
    part1 = append(log, records(3000, seed=1))
    wait_until(lambda: levels_of(first, log) == part1, message="first run to catch up")
    part2 = append(log, records(3000, seed=2, start=3000))
    first.stop()  # mid-file: part2 may be read partly, not at all, or fully
    part3 = append(log, records(1000, seed=3, start=6000))
    os.rename(log, tmp_path / "server.log.1")  # rename rotation while the exporter is down
    part4 = append(log, records(1000, seed=4, start=7000))

    second = running(make_collector(tmp_path, [log]))
    total = add(part1, part2, part3, part4)
    wait_until(lambda: levels_of(second, log) == total, message="totals to continue")
    second.stop()
    part5 = append(log, records(500, seed=5, start=8000))  # not read before the copytruncate below
    shutil.copyfile(log, tmp_path / "server.log.2")
    os.truncate(log, 0)
    part6 = append(log, records(700, seed=6, start=8500))

    third = running(make_collector(tmp_path, [log]))
    total = add(total, part5, part6)
    wait_until(lambda: levels_of(third, log) == total, message="totals after copytruncate while down")
    # Every byte read exactly once across the three runs and both rotations.
    written = sum(p.stat().st_size for p in tmp_path.glob("server.log*"))
    assert value(third, catalog.LOG_BYTES.name, file=log) == written


def test_half_written_last_line_counts_its_bytes_once_across_a_restart(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"[INFO] complete\n[ERROR] half writ")
    collector = make_collector(tmp_path, [log])
    collector.read_once()
    assert value(collector, catalog.LOG_BYTES.name, file=log) == len(b"[INFO] complete\n")
    collector.close()
    with open(log, "ab") as handle:
        handle.write(b"ten\n")
    again = make_collector(tmp_path, [log])
    again.read_once()
    assert value(again, catalog.LOG_BYTES.name, file=log) == log.stat().st_size
    assert levels_of(again, log) == {**dict.fromkeys(LEVELS, 0), "info": 1, "error": 1}
    again.close()


def test_restart_continues_when_the_device_number_changed(tmp_path):
    log = tmp_path / "app.log"
    first = append(log, records(500, seed=1))
    collector = make_collector(tmp_path, [log])
    collector.read_once()
    collector.close()
    state_file = tmp_path / "state.json"
    state = json.loads(state_file.read_text())
    state["files"][str(log)]["reader"]["dev"] += 1  # as after a reboot or in another container
    state_file.write_text(json.dumps(state))
    second = append(log, records(500, seed=2, start=500))
    again = make_collector(tmp_path, [log])
    again.read_once()
    assert levels_of(again, log) == add(first, second)
    assert value(again, catalog.LOG_BYTES.name, file=log) == log.stat().st_size
    assert value(again, catalog.LOG_ROTATIONS.name, file=log, kind="rename") == 0
    again.close()


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "logs-reader" and t.is_alive()]


def test_start_twice_runs_one_reader_thread_and_stop_ends_it_and_saves_the_state(tmp_path, running):
    log = tmp_path / "app.log"
    first = append(log, records(300, seed=1))
    collector = make_collector(tmp_path, [log], poll=60)
    before = len(reader_threads())
    running(collector)
    collector.start()
    assert len(reader_threads()) == before + 1
    wait_until(lambda: collector.counted(log).bytes == log.stat().st_size, timeout=5, message="first pass")
    collector.stop()
    assert len(reader_threads()) == before
    assert json.loads((tmp_path / "state.json").read_text())["files"][str(log)]["lines"] == first


def test_stop_then_start_in_one_process_continues_its_totals(tmp_path, running):
    log = tmp_path / "app.log"
    first = append(log, records(500, seed=1))
    collector = running(make_collector(tmp_path, [log], poll=60))
    wait_until(lambda: levels_of(collector, log) == first, timeout=5, message="first run")
    collector.stop()
    second = append(log, records(500, seed=2, start=500))
    collector.start()
    wait_until(lambda: levels_of(collector, log) == add(first, second), timeout=5, message="continued")
    third = append(log, records(500, seed=3, start=1000))  # after the first pass: the scrape reads it
    wait_until(lambda: levels_of(collector, log) == add(first, second, third), timeout=5, message="read")
    assert value(collector, catalog.LOG_BYTES.name, file=log) == log.stat().st_size


@pytest.mark.parametrize("comes_back", ["recreated", "moved_back"])
def test_restart_while_the_log_directory_is_missing_keeps_its_totals_until_the_file_is_back(tmp_path, comes_back):
    logs, away = tmp_path / "logs", tmp_path / "away"
    logs.mkdir()
    log = logs / "server.log"
    first = append(log, records(300, seed=1))
    collector = make_collector(tmp_path, [logs / "*.log"])
    collector.read_once()
    collector.close()
    if comes_back == "moved_back":
        os.rename(logs, away)
        later = append(away / "server.log", records(200, seed=2, start=300))  # written while it is away
    else:
        shutil.rmtree(logs)
    again = make_collector(tmp_path, [logs / "*.log"])  # restarted while the directory is missing
    again.read_once()
    again.close()
    saved = json.loads((tmp_path / "state.json").read_text())["files"]
    assert saved[str(log)]["lines"] == first  # kept, not reset
    if comes_back == "moved_back":
        os.rename(away, logs)  # the same file: read on from its offset
        expected, size = add(first, later), log.stat().st_size
    else:
        size = saved[str(log)]["bytes"]
        logs.mkdir()
        later = append(log, records(200, seed=3, start=300))  # another file: counted from its start
        expected, size = add(first, later), size + log.stat().st_size
    again.read_once()
    assert levels_of(again, log) == expected
    assert value(again, catalog.LOG_BYTES.name, file=log) == size
    again.close()
    assert json.loads((tmp_path / "state.json").read_text())["files"][str(log)]["lines"] == expected


def test_a_globbed_log_deleted_from_a_directory_that_exists_leaves_the_state_file(tmp_path):
    """A dated log logrotate removed is not kept forever; one in a missing directory (above) is."""
    logs = tmp_path / "logs"
    logs.mkdir()
    dated, live = logs / "audit-2026-12-01.log", logs / "server.log"
    append(dated, records(10, seed=1))
    append(live, records(10, seed=2))
    collector = make_collector(tmp_path, [logs / "*.log"])
    collector.read_once()
    collector.close()
    dated.unlink()
    again = make_collector(tmp_path, [logs / "*.log"])  # restarted after logrotate removed it
    again.read_once()
    again.close()
    assert set(json.loads((tmp_path / "state.json").read_text())["files"]) == {str(live)}


KILLED_CHILD = """
import sys, time
from devflow_monitor.core import config
from devflow_monitor.exporter.collectors import logs
logs.STATE_INTERVAL_SECONDS = 0.1
cfg = config.load(env={}, overrides={"devflow.log_files": [sys.argv[1]], "devflow.access_log": None,
                                     "collectors.logs.state_file": sys.argv[2],
                                     "collectors.logs.poll_interval_seconds": 0.02})
collector = logs.LogsCollector(cfg)
collector.start()
time.sleep(120)
"""


def test_exporter_killed_mid_file_restarts_with_exact_totals(tmp_path, spawn, running):
    log = tmp_path / "server.log"
    state = tmp_path / "state.json"
    child = spawn([sys.executable, "-c", KILLED_CHILD, str(log), str(state)])
    truths = []
    deadline = time.monotonic() + 30
    batch = 0
    # Keep writing until the child has started and saved offsets at least once, then kill it.
    while batch < 10 or not (state.exists() and json.loads(state.read_text())["files"]):
        assert time.monotonic() < deadline, "the exporter process never saved its offsets"
        truths.append(append(log, records(500, seed=batch, start=batch * 500)))
        batch += 1
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    truths.append(append(log, records(2000, seed=99, start=50_000)))
    collector = running(make_collector(tmp_path, [log]))
    wait_until(lambda: levels_of(collector, log) == add(*truths), message="totals after kill -9")
    assert value(collector, catalog.LOG_BYTES.name, file=log) == log.stat().st_size


@pytest.mark.parametrize("content", ["not json at all", '{"version": 1, "files": {"LOG": {"reader": '
                                     '{"dev": "x", "inode": 1, "offset": -5}, "lines": {"error": "many"}}}}'])
def test_unreadable_or_malformed_state_file_starts_fresh_without_crashing(tmp_path, content):
    log = tmp_path / "app.log"
    log.write_bytes(b"[ERROR] one\n")
    (tmp_path / "state.json").write_text(content.replace("LOG", str(log)))
    collector = make_collector(tmp_path, [log])
    collector.read_once()
    assert levels_of(collector, log)["error"] == 1
    collector.close()
    assert json.loads((tmp_path / "state.json").read_text())["files"][str(log)]["lines"]["error"] == 1


@pytest.mark.parametrize("content", [
    '{"version": 1, "files": null}',
    '{"version": 1, "files": {}, "http": {"requests": {"2xx": "many"}, "buckets": [], "sum": 0, "count": 0}}',
    '{"version": 1, "files": {}, "http": {"requests": {"2xx": 5}, "buckets": [0,0,0,0,0,0,0,0,0,0,0,0,5],'
    ' "sum": "x", "count": 5}}'], ids=["files_null", "bad_requests", "bad_sum_after_good_buckets"])
def test_state_file_of_the_wrong_shape_is_ignored_whole_with_one_warning(tmp_path, content, caplog):
    log, access = tmp_path / "app.log", tmp_path / "access.log"
    log.write_bytes(b"[ERROR] one\n")
    access.write_text(ACCESS_LINE.format(path="/", status=200, duration="1ms") + "\n")
    (tmp_path / "state.json").write_text(content)
    collector = make_collector(tmp_path, [log], access=access)
    collector.read_once()
    collector.read_once()
    assert levels_of(collector, log)["error"] == 1
    assert value(collector, catalog.HTTP_REQUESTS.name, code="2xx") == 1
    assert value(collector, catalog.HTTP_DURATION.count) == 1
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1
    collector.close()


@pytest.mark.parametrize("broken_in", ["reader", "rotated"])
def test_a_bug_reading_one_file_is_logged_not_counted_and_the_others_are_still_read(tmp_path, broken_in, caplog):
    bad, good = tmp_path / "bad.log", tmp_path / "good.log"
    bad.write_bytes(b"[ERROR] in the file with a broken position\n")
    good.write_bytes(b"[INFO] fine\n")
    broken_file = bad if broken_in == "reader" else tmp_path / "bad.log.1"
    broken_file.write_bytes(b"[ERROR] x\n")
    st = broken_file.stat()
    # An offset no file can have (lseek overflows): stands for any bug met while reading one file.
    broken = {"dev": st.st_dev, "inode": st.st_ino, "offset": 2 ** 70, "fingerprint": ""}
    saved = {"reader": broken} if broken_in == "reader" else {"rotated": [broken]}
    (tmp_path / "state.json").write_text(json.dumps({"version": 1, "files": {str(bad): saved}}))
    collector = make_collector(tmp_path, [bad, good])
    collectors = CollectorSet([collector])
    descriptors = len(os.listdir("/proc/self/fd"))
    collector.read_once()
    assert len(os.listdir("/proc/self/fd")) == descriptors + 1  # the good file's; the failed open leaked none
    assert levels_of(collectors, good)["info"] == 1  # published, while the collector reports its failure
    assert value(collectors, catalog.LOG_READ_ERRORS.name, file=bad, reason="io_error") == 0  # a bug, not a read error
    assert [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info and str(bad) in r.getMessage()]
    success = (catalog.COLLECTOR_SUCCESS.name, (("collector", "logs"),))
    assert samples(collectors)[success] == 0
    collector.read_once()  # the broken position is dropped: the file is read from its start
    assert levels_of(collector, bad)["error"] == 1
    assert samples(collectors)[success] == 1
    collector.close()


def test_a_programming_error_while_reading_is_logged_at_error_and_fails_the_scrape_not_io_error(
        tmp_path, monkeypatch, caplog):
    log = tmp_path / "app.log"
    log.write_bytes(b"[INFO] one\n")
    collector = make_collector(tmp_path, [log])
    collectors = CollectorSet([collector])
    success = (catalog.COLLECTOR_SUCCESS.name, (("collector", "logs"),))
    io_error = (catalog.LOG_READ_ERRORS.name, (("file", str(log)), ("reason", "io_error")))

    def broken(self, limit=0):
        raise TypeError("a bug in the reader")
    monkeypatch.setattr(logreader.Reader, "read_new", broken)
    collector.read_once()
    scraped = samples(collectors)
    assert scraped[io_error] == 0
    assert scraped[success] == 0
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors and errors[0].exc_info[0] is TypeError and str(log) in errors[0].getMessage()
    monkeypatch.undo()
    collector.read_once()
    scraped = samples(collectors)
    assert scraped[success] == 1
    assert scraped[io_error] == 0
    assert levels_of(collector, log)["info"] == 1
    collector.close()


# --- finding files ------------------------------------------------------------------------------------

def test_files_created_later_are_picked_up_also_in_directories_created_later(tmp_path, running):
    later = tmp_path / "later" / "app.log"
    globbed = tmp_path / "audit" / "audit-*.log"
    collector = running(make_collector(tmp_path, [later, globbed]))
    time.sleep(0.2)
    later.parent.mkdir()
    later.write_bytes(b"[ERROR] born late\n")
    globbed.parent.mkdir()
    audit = tmp_path / "audit" / "audit-2025-08-02.log"
    audit.write_bytes(b'{"timestamp": "t", "eventType": "x", "severity": "warning", "category": "c"}\n')
    wait_until(lambda: levels_of(collector, later)["error"] == 1, message="late file")
    wait_until(lambda: levels_of(collector, audit)["warn"] == 1, message="late globbed file")


def test_more_globbed_files_than_fit_reads_the_newest_and_an_evicted_one_continues_its_totals(tmp_path):
    audit = tmp_path / "audit"
    audit.mkdir()
    line = b'{"timestamp": "t", "eventType": "x", "severity": "error", "category": "c"}\n'
    day = 86400
    paths = [audit / f"audit-2025-{1 + i // 28:02d}-{1 + i % 28:02d}.log" for i in range(logs_module.MAX_FILES + 7)]
    for i, path in enumerate(paths):
        path.write_bytes(line)
        os.utime(path, (time.time() - (len(paths) - i) * day,) * 2)
    collector = make_collector(tmp_path, [audit / "audit-*.log"])
    collector.read_once()
    assert levels_of(collector, paths[-1])["error"] == 1  # today's file, last by name and newest
    oldest_read = paths[7]  # the 64 newest of 71 are read
    assert str(oldest_read) in collector._files and str(paths[6]) not in collector._files
    tomorrow = audit / "audit-2025-12-31.log"
    tomorrow.write_bytes(line)
    collector.read_once()
    assert levels_of(collector, tomorrow)["error"] == 1
    assert str(oldest_read) not in collector._files  # fully read and the oldest: made room
    with open(oldest_read, "ab") as handle:  # written again: newest, read on from where it was
        handle.write(line)
    collector.read_once()
    assert levels_of(collector, oldest_read)["error"] == 2
    collector.close()


def bytes_read(collector, path) -> int:
    """What the collector has read so far, looked at without a scrape (collect() reads first)."""
    return collector.counted(path).bytes


def background_switches() -> int:
    """Voluntary context switches of this process's threads other than the main one (the collector's)."""
    main = threading.main_thread()
    return sum(voluntary_switches(os.getpid(), t.native_id) for t in threading.enumerate() if t is not main)


def test_appended_lines_wake_no_thread_and_are_counted_at_the_scrape(tmp_path, running):
    log = tmp_path / "app.log"
    log.write_bytes(b"[INFO] before start\n")
    collector = running(make_collector(tmp_path, [log], poll=60))
    wait_until(lambda: bytes_read(collector, log) == log.stat().st_size, timeout=5, message="first pass")
    time.sleep(0.2)  # the first pass's state file write is over
    before = background_switches()
    with open(log, "ab", buffering=0) as app:
        for i in range(20):  # inotify's IN_MODIFY would wake watchdog's three threads and the reader each time
            app.write(b"[ERROR] line %d\n" % i)
            time.sleep(0.02)
    assert background_switches() - before <= 4
    assert bytes_read(collector, log) == len(b"[INFO] before start\n")
    assert levels_of(collector, log)["error"] == 20  # the scrape reads them


def test_deleted_log_is_released_at_once_without_a_scrape(tmp_path, running):
    log = tmp_path / "server.log"
    log.write_bytes(b"[INFO] before start\n")
    collector = running(make_collector(tmp_path, [log], poll=60))
    wait_until(lambda: bytes_read(collector, log) == log.stat().st_size, timeout=5, message="first pass")
    with open(log, "ab", buffering=0) as app:
        app.write(b"[ERROR] written just before the rm\n")
        log.unlink()  # the deletion wakes the reader: it reads the file to its end and closes it
        wait_until(lambda: fds_on_deleted_files(tmp_path, but=app.fileno()) == [], timeout=5,
                   message="the deleted log released")
    assert levels_of(collector, log) == {**dict.fromkeys(LEVELS, 0), "info": 1, "error": 1}


def test_copytruncate_copy_wakes_the_reader_so_compressing_the_copy_at_once_loses_no_line(tmp_path, running):
    log = tmp_path / "app.log"
    first = append(log, records(300, seed=1))
    collector = running(make_collector(tmp_path, [log], poll=60))
    wait_until(lambda: bytes_read(collector, log) == log.stat().st_size, timeout=5, message="first pass")
    unread = append(log, records(200, seed=2, start=300))
    copy = tmp_path / "app.log.1"
    shutil.copyfile(log, copy)  # logrotate copytruncate with compress: copy, truncate, gzip the copy
    wait_until(lambda: bytes_read(collector, log) == copy.stat().st_size, timeout=5, message="woken by the copy")
    os.truncate(log, 0)
    with open(copy, "rb") as plain, gzip.open(tmp_path / "app.log.1.gz", "wb") as packed:
        shutil.copyfileobj(plain, packed)
    copy.unlink()
    after = append(log, records(400, seed=3, start=500))
    # A scrape during the pass the gzip woke publishes the counts so far: wait for the next.
    wait_until(lambda: levels_of(collector, log) == add(first, unread, after), timeout=5, message="every line")


def test_compressed_and_rotated_files_are_never_read_even_when_a_glob_matches(tmp_path):
    (tmp_path / "server.log").write_bytes(b"[INFO] live\n")
    with gzip.open(tmp_path / "server.log.2.gz", "wb") as handle:
        handle.write(b"[ERROR] old\n" * 10)
    (tmp_path / "server.log.gz").write_bytes(b"[ERROR] not really compressed, still never read\n")
    (tmp_path / "server.log.1").write_bytes(b"[ERROR] rotated\n")
    (tmp_path / "server.log-20250802").write_bytes(b"[ERROR] rotated by date\n")
    collector = make_collector(tmp_path, [tmp_path / "server.log*"])
    collector.read_once()
    files = {dict(labels).get("file") for _, labels in samples(collector)}
    assert files - {None} == {str(tmp_path / "server.log")}
    assert levels_of(collector, tmp_path / "server.log")["error"] == 0
    collector.close()


# --- bad input ----------------------------------------------------------------------------------------

def test_invalid_utf8_is_a_read_error_and_the_records_still_count(tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes(b"[ERROR] bad \xff\xfe bytes\n[WARN] \xea\xb0\x80 is fine\n[INFO] ok\n\xc3\n  \xff dump line\n")
    collector = make_collector(tmp_path, [log])
    collector.read_once()
    # The lone "\xc3" line after an info record has no level: a record all the same (unknown); the indented
    # one continues it.
    assert levels_of(collector, log) == {**dict.fromkeys(LEVELS, 0), "info": 1, "error": 1, "warn": 1,
                                         "unknown": 1}
    assert value(collector, catalog.LOG_READ_ERRORS.name, file=log, reason="invalid_utf8") == 3
    collector.close()


def test_ten_megabyte_line_without_newline_is_counted_once_with_bounded_memory(tmp_path):
    log = tmp_path / "app.log"
    collector = make_collector(tmp_path, [log])
    with open(log, "ab") as handle:
        handle.write(b"[INFO] before\n[ERROR] huge " + b"x" * (10 << 20))
    for _ in range(3):
        collector.read_once()
        reader = collector._files[str(log)].reader
        assert len(reader.pending) <= logreader.MAX_LINE_BYTES + logreader.CHUNK_BYTES
    with open(log, "ab") as handle:
        handle.write(b"x" * 1000 + b"\n[WARN] after\n")
    collector.read_once()
    assert levels_of(collector, log) == {**dict.fromkeys(LEVELS, 0), "info": 1, "error": 1, "warn": 1}
    assert value(collector, catalog.LOG_READ_ERRORS.name, file=log, reason="line_too_long") == 1
    assert value(collector, catalog.LOG_BYTES.name, file=log) == log.stat().st_size
    collector.close()


def test_file_replaced_by_a_directory_is_one_read_error_and_reading_resumes(tmp_path, running):
    log = tmp_path / "app.log"
    log.write_bytes(b"[INFO] one\n")
    collector = running(make_collector(tmp_path, [log]))
    wait_until(lambda: levels_of(collector, log)["info"] == 1)
    log.unlink()
    log.mkdir()
    error = (catalog.LOG_READ_ERRORS.name, (("file", str(log)), ("reason", "not_a_file")))
    wait_until(lambda: samples(collector)[error] == 1, message="not_a_file")
    time.sleep(0.3)  # several passes: a lasting condition is counted once
    assert samples(collector)[error] == 1
    log.rmdir()
    log.write_bytes(b"[ERROR] back\n")
    wait_until(lambda: levels_of(collector, log)["error"] == 1, message="reading to resume")
    assert reader_threads()


def read_in_child_as_nobody(collector) -> dict:
    """One read pass in a forked child that runs as `nobody` when we are root (root is never denied)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest code from here on, leave with os._exit
        status = 1
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            collector.read_once()
            os.write(write_end, json.dumps([[name, dict(labels), v] for (name, labels), v
                                            in samples(collector).items()]).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0, "reader child failed"
    return {(name, labels.get("file"), labels.get("reason") or labels.get("level")): v
            for name, labels, v in json.loads(data) if v and "file" in labels}


def test_permission_denied_is_a_read_error_and_other_files_are_still_read():
    # Outside pytest's tmp_path: that one sits in a 0700 directory `nobody` could not enter at all.
    with tempfile.TemporaryDirectory(prefix="devflow-logs-") as name:
        os.chmod(name, 0o755)
        secret, public = Path(name) / "secret.log", Path(name) / "public.log"
        secret.write_bytes(b"[ERROR] hidden\n")
        public.write_bytes(b"[INFO] visible\n")
        os.chmod(secret, 0)
        os.chmod(public, 0o644)
        found = read_permission_test_files(secret, public)
    assert found == {(str(secret), "permission_denied"): 1, (str(public), "info"): 1}


def read_permission_test_files(secret: Path, public: Path) -> dict:
    collector = LogsCollector(config.load(env={}, overrides={
        "devflow.log_files": [str(secret), str(public)], "devflow.access_log": None,
        "collectors.logs.state_file": ""}))
    return {(path, what): v for (name, path, what), v in read_in_child_as_nobody(collector).items()
            if name in (catalog.LOG_READ_ERRORS.name, catalog.LOG_LINES.name)}


# --- access log ---------------------------------------------------------------------------------------

def test_access_log_gives_requests_by_status_class_and_a_response_time_histogram(tmp_path):
    access = tmp_path / "access.log"
    lines = [ACCESS_LINE.format(path="/health", status=200, duration="4.2ms"),
             ACCESS_LINE.format(path="/status", status=200, duration="95.0ms"),
             ACCESS_LINE.format(path="/status", status=304, duration="0.12s"),
             ACCESS_LINE.format(path="/x", status=404, duration="0.3"),
             ACCESS_LINE.format(path="/tools/x", status=503, duration="2600.0ms"),
             '10.0.0.1 - - [02/Aug/2025:14:00:01 +0000] "GET / HTTP/1.1" 200 12 "-" "curl/8.0" 12.5ms',
             "not an access line"]
    access.write_text("\n".join(lines) + "\n")
    log = tmp_path / "server.log"
    log.write_bytes(b"[INFO] x\n")
    collector = make_collector(tmp_path, [tmp_path / "*.log"], access=access)
    collector.read_once()
    values = samples(collector)
    requests = {code: values[(catalog.HTTP_REQUESTS.name, (("code", code),))] for code in ("2xx", "3xx", "4xx", "5xx")}
    assert requests == {"2xx": 3, "3xx": 1, "4xx": 1, "5xx": 1}
    bucket = {le: values[(catalog.HTTP_DURATION.bucket, (("le", le),))] for le in ("0.005", "0.1", "0.15", "0.5", "2.5", "5.0", "+Inf")}
    assert bucket == {"0.005": 1, "0.1": 3, "0.15": 4, "0.5": 5, "2.5": 5, "5.0": 6, "+Inf": 6}
    assert values[(catalog.HTTP_DURATION.sum, ())] == pytest.approx(0.0042 + 0.095 + 0.12 + 0.3 + 2.6 + 0.0125)
    assert values[(catalog.HTTP_DURATION.count, ())] == 6
    assert value(collector, catalog.LOG_READ_ERRORS.name, file=access, reason="access_line_unparsed") == 1
    # The access log matched by the glob is read once, as the access log, not as a levelled log.
    assert (catalog.LOG_LINES.name, (("file", str(access)), ("level", "info"))) not in values
    assert levels_of(collector, log)["info"] == 1
    collector.close()


def test_access_log_totals_continue_across_restarts(tmp_path):
    access = tmp_path / "access.log"
    access.write_text(ACCESS_LINE.format(path="/", status=200, duration="1ms") + "\n")
    collector = make_collector(tmp_path, [], access=access)
    collector.read_once()
    collector.close()
    with open(access, "a") as handle:
        handle.write(ACCESS_LINE.format(path="/", status=500, duration="1ms") + "\n")
    again = make_collector(tmp_path, [], access=access)
    again.read_once()
    assert value(again, catalog.HTTP_REQUESTS.name, code="2xx") == 1
    assert value(again, catalog.HTTP_REQUESTS.name, code="5xx") == 1
    assert value(again, catalog.HTTP_DURATION.count) == 2
    again.close()


# --- what the server says of itself -------------------------------------------------------------------

def test_the_servers_version_and_monitors_told_in_its_logs_survive_an_exporter_restart(tmp_path):
    out, err = tmp_path / "devflow-monitor.out", tmp_path / "devflow-monitor.err"
    out.write_bytes(b'{"result":{"protocolVersion":"2024-11-05","capabilities":{},'
                    b'"serverInfo":{"name":"devflow-monitor","version":"0.1.0"}},"jsonrpc":"2.0","id":0}\n')
    err.write_bytes(b"[INFO][FileMonitor] Monitor started\n[INFO][TestMonitor] Monitor started\n"
                    b"[INFO][TestMonitor] Monitor stopped\n")
    collector = make_collector(tmp_path, [out, err])
    collector.read_once()
    collector.close()
    again = make_collector(tmp_path, [out, err])  # continues after the lines that told them
    again.read_once()
    assert again.app_fields() == {"version": "0.1.0", "monitors": {"file": {"active"}, "git": {"unknown"},
                                                                   "test": {"stopped"}}}
    assert value(again, catalog.APP_BUILD_INFO.name, version="0.1.0") == 1
    assert value(again, catalog.APP_MONITOR_STATE.name, monitor="test", state="stopped") == 1
    again.close()


# --- in the exporter ----------------------------------------------------------------------------------

def test_serve_publishes_log_counts_on_metrics(tmp_path, spawn):
    log = tmp_path / "server.log"
    truth = append(log, records(200, seed=5))
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"collectors:\n  logs:\n    state_file: {tmp_path / 'state.json'}\n"
                   f"    poll_interval_seconds: 0.1\n")
    port = free_port()
    spawn([sys.executable, "-m", "devflow_monitor.cli", "serve", "--config.file", str(cfg),
           "--web.listen-address", f"127.0.0.1:{port}", "--devflow.log-files", str(log),
           "--devflow.database", str(tmp_path / "none.db"), "--devflow.url", f"http://127.0.0.1:{free_port()}"])
    wait_for_http(f"http://127.0.0.1:{port}/metrics")

    def errors_counted():
        _, body = http_get(f"http://127.0.0.1:{port}/metrics")
        return f'{catalog.LOG_LINES.name}{{file="{log}",level="error"}} {float(truth["error"])}' in body
    wait_until(errors_counted, message="log counts on /metrics")


def test_an_exporter_without_its_own_state_file_yet_continues_from_the_one_exporters_shared(tmp_path):
    log = tmp_path / "server.log"
    before = append(log, records(300, seed=3))
    shared = make_collector(tmp_path, [log], state="log-offsets.json")
    shared.read_once()
    shared.close()
    with open(log, "rb") as old, gzip.open(f"{log}.1.gz", "wb") as copy:  # rotated away while it was down
        copy.write(old.read())
    log.unlink()
    after = append(log, records(50, seed=4, start=300))
    own = make_collector(tmp_path, [log], state="log-offsets-{database}.json")
    own.read_once()
    assert levels_of(own, log) == add(before, after)
    own.close()
    assert len(list(tmp_path.glob("log-offsets-*.json"))) == 1


class StateSharingExporter:
    """An exporter with the default state file under HOME, watching one database, one log and one access log."""

    def __init__(self, spawn, root: Path, home: Path, name: str):
        self.spawn, self.home = spawn, home
        self.database = root / name / "data" / "devflow.db"
        self.database.parent.mkdir(parents=True)
        self.log, self.access = root / name / "devflow-monitor.err", root / name / "access.log"
        self.proc, self.url = None, None

    def start(self) -> StateSharingExporter:
        port = free_port()
        self.proc = self.spawn(
            [sys.executable, "-m", "devflow_monitor.cli", "serve", "--web.listen-address", f"127.0.0.1:{port}",
             "--devflow.database", str(self.database), "--devflow.log-files", str(self.log),
             "--devflow.url", f"http://127.0.0.1:{free_port()}", "--devflow.process-pattern", "^no server$"],
            env={**os.environ, "HOME": str(self.home), "DEVFLOW_MONITOR_DEVFLOW_ACCESS_LOG": str(self.access),
                 "PYTHONUNBUFFERED": "1"})
        self.url = f"http://127.0.0.1:{port}"
        wait_for_http(self.url + "/metrics")
        return self

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # stop() saves the state file
        assert self.proc.wait(timeout=30) == 0

    def counts(self) -> tuple[float, float]:
        samples = parse_metrics(http_get(self.url + "/metrics")[1])
        return (samples.get((catalog.LOG_LINES.name, (("file", str(self.log)), ("level", "info"))), 0.0),
                samples.get((catalog.HTTP_REQUESTS.name, (("code", "2xx"),)), 0.0))

    def write(self, lines: int, requests: int) -> None:
        with open(self.log, "a") as log, open(self.access, "a") as access:
            log.writelines(f"[INFO][FileMonitor] line {n}\n" for n in range(lines))
            access.writelines(ACCESS_LINE.format(path="/status", status=200, duration="3ms") + "\n"
                              for _ in range(requests))

    def rotate_log(self) -> None:
        """logrotate's rename and compression: the lines of the old file are no longer there to read again."""
        with open(self.log, "rb") as old, gzip.open(f"{self.log}.1.gz", "wb") as copy:
            copy.write(old.read())
        self.log.unlink()
        self.log.touch()

    def wait_for(self, lines: float, requests: float) -> None:
        wait_until(lambda: self.counts() == (lines, requests), timeout=30,
                   message=f"{self.log.parent.name}: {lines:g} lines, {requests:g} requests")


def test_two_exporters_under_one_home_each_continue_their_own_totals_across_restarts(tmp_path, spawn):
    home = tmp_path / "home"
    home.mkdir()
    one, two = (StateSharingExporter(spawn, tmp_path, home, name) for name in ("one", "two"))
    one.write(100, 3)
    two.write(50, 7)
    one.start().wait_for(100, 3)
    two.start().wait_for(50, 7)
    one.write(10, 1)
    two.write(10, 1)
    one.wait_for(110, 4)
    two.wait_for(60, 8)
    one.stop()  # each writes its state file as it stops: `one` first, then `two`
    two.stop()
    one.rotate_log()  # while both are down
    one.write(5, 1)
    two.write(5, 1)
    one.start().wait_for(115, 5)
    two.start().wait_for(65, 9)
    assert len(list((home / ".local" / "state" / "devflow-monitor").glob("log-offsets-*.json"))) == 2


if __name__ == "__main__":
    if sys.argv[1:2] == ["write"]:
        path, count, seed, rotations, truth_path = sys.argv[2:7]
        write_with_rotations(path, int(count), int(seed), int(rotations), truth_path)
