"""Log-counting throughput: the logs collector next to `grep -c` and Debian's mtail, on the same file.

The file (~1 GB by default) mixes every DevFlow line format of docs/devflow.md in
realistic shares: stderr `[LEVEL][Component]` lines, stdout `[ISO] [LEVEL]`
lines, the guide's `YYYY-MM-DD HH:MM:SS LEVEL`, JSON audit lines, multi-line
`[DEBUG] File event` dumps, errors with stack lines, simple-git errors with git's
hint lines, Node crashes, records without a level, decoys that carry a level
word inside the message and some Korean text. It is
generated once, with its true counts, into ~/.cache/devflow-monitor-bench/
(or $DEVFLOW_BENCH_CACHE) as logs-mixed-<MB>mb.log plus a .json sidecar.

Every method reads the same file from a warm page cache. The table gives wall
time, CPU time (the method's own process; mtail is multi-threaded), lines and
megabytes per wall second, and whether the counts equal the truth:
- logs collector: LogsCollector.read_once() in this process (one thread), all
  levels of all formats, continuation lines not counted.
- python readline + re.match: the obvious per-line loop with the same rules
  (a record that takes the lines after it is remembered from line to line), for
  reference.
- grep -c ERROR: one level only, the guide's way; it counts decoys and stack
  lines, so it is fast and wrong.
- mtail -one_shot: bench/logs.mtail, the same rules as RE2 patterns where one
  line says enough (a crash is counted by its `Node.js vX` line); raw level
  words folded into levels afterwards.

    python -m bench.logs [--size-mb 1024] [--no-mtail]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from devflow_monitor.core import config
from devflow_monitor.exporter.collectors.logs import LogsCollector
from devflow_monitor.core.logformat import (LEVELS, LINE_BREAK, LINE_RECORD_START, LINE_TRAILER, LevelCounter,
                                            takes_following_lines)

HERE = Path(__file__).resolve().parent
MTAIL_PROGRAM = HERE / "logs.mtail"
CACHE_DIR = Path(os.environ.get("DEVFLOW_BENCH_CACHE", "~/.cache/devflow-monitor-bench")).expanduser()
FORMAT_VERSION = 2  # bump when the generator changes, so cached files are rebuilt
BLOCKS = 8  # distinct blocks of generated text, repeated to the wanted size
BLOCK_BYTES = 1 << 20
DEFAULT_SIZE_MB = 1024

# Throughput the collector must reach: lines per second on one core, and times mtail's.
MIN_LINES_PER_SECOND = 1.3e6
MIN_VS_MTAIL = 5.0

SPELLINGS = {"debug": ("DEBUG", "TRACE"), "info": ("INFO", "INFO", "info"), "warn": ("WARN", "WARNING"),
             "error": ("ERROR", "ERROR", "ERR"), "fatal": ("FATAL", "CRITICAL")}
LEVEL_SHARES = {"debug": 20, "info": 55, "warn": 12, "error": 10, "fatal": 3}
COMPONENTS = ("GitMonitor", "FileMonitor", "ProjectManager", "StorageManager", "TestRunner", "SyncWorker")
KOREAN = ("커밋 메시지: 로그인 버그 수정", "파일 감시 시작", "테스트 실패 원인 분석")


# --- the file and its truth ------------------------------------------------------------------------

def generate_block(seed: int) -> tuple[bytes, Counter]:
    """About BLOCK_BYTES of records; returns the text and its true counts."""
    rnd = random.Random(seed)
    levels = list(LEVEL_SHARES)
    weights = list(LEVEL_SHARES.values())
    truth: Counter = Counter()
    parts: list[str] = []
    size = 0
    i = seed * 1_000_000
    while size < BLOCK_BYTES:
        i += 1
        level = rnd.choices(levels, weights)[0]
        word = rnd.choice(SPELLINGS[level])
        decoy = rnd.choice(("ERROR", "FATAL", "WARN", "INFO", "[ERROR]", "level=error", "DEBUG"))
        comp = rnd.choice(COMPONENTS)
        text_ko = rnd.choice(KOREAN) if rnd.random() < 0.03 else "chore: update deps"
        roll = rnd.random()
        if roll < 0.30:
            text = f"[{word}][{comp}] New commit detected: {i:07x} - {text_ko} ({decoy} seen)\n"
        elif roll < 0.55:
            text = f"[2026-11-26T11:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z] [{word}] [{comp}] #{i} {decoy}\n"
        elif roll < 0.70:
            text = f"2025-08-02 14:{i // 60 % 60:02d}:{i % 60:02d} {word} [{comp}] request {i} done {decoy}\n"
        elif roll < 0.80:
            text = (f'{{"timestamp": "2025-08-02T14:00:{i % 60:02d}Z", "eventType": "git:commit", "severity": '
                    f'"{word.lower()}", "category": "git", "message": "\\"severity\\": \\"error\\" {decoy}"}}\n')
        elif roll < 0.90:  # chokidar event dump: one record, five lines
            level = "debug"
            text = (f"[DEBUG] File event: file:change {{\n  type: 'change',\n  path: '/home/dev/app/src/m{i}.ts',\n"
                    f"  message: '{decoy} in file',\n}}\n")
        elif roll < 0.95:  # an error and its stack: one record, four lines
            level = "error"
            text = (f"[ERROR][{comp}] Error processing commit {i:07x}: GitError: {decoy}\n"
                    f"GitError: fatal: ERROR not a git repository\n    at Git.run (git.js:{i % 97}:3)\n"
                    f"    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)\n")
        elif roll < 0.969:  # simple-git's error as console.error prints it: git's hint lines, a stack, its task
            level = "error"
            text = (f"[ERROR][GitMonitor] Error processing commit {i:040x}: GitError: fatal: ambiguous argument "
                    f"'{i:040x}~1': unknown revision or path not in the working tree.\n"
                    "Use '--' to separate paths from revisions, like this:\n"
                    "'git <command> [<revision>...] -- [<file>...]'\n\n"
                    "    at Object.action (/home/dev/devflow/node_modules/simple-git/dist/cjs/index.js:1266:25)\n"
                    "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5) {\n"
                    "  task: {\n    commands: [ 'diff', '--stat=4096' ],\n    format: 'utf-8',\n"
                    "    parser: [Function: parser]\n  }\n}\n")
        elif roll < 0.97:  # a Node crash: one record, nine lines without a level field
            level = "fatal"
            text = ("/home/dev/devflow/node_modules/better-sqlite3/lib/database.js:65\n"
                    "\t\tthrow new TypeError('Cannot open database because the directory does not exist');\n"
                    "\t\t^\n\nTypeError: Cannot open database because the directory does not exist\n"
                    "    at new Database (/home/dev/devflow/node_modules/better-sqlite3/lib/database.js:65:9)\n"
                    f"    at file:///home/dev/devflow/dist/server/index.js:{i % 97}:3\n\nNode.js v20.11.1\n")
        else:
            level = "unknown"
            text = rnd.choice((f"[2026-11-26T11:37:33.000Z] #{i} no level {decoy}\n",
                               f'{{"timestamp": "2025-08-02T14:00:00Z", "eventType": "e{i}"}}\n',
                               f"[{comp}] #{i} tagged but no level {decoy}\n"))
        truth[level] += 1
        data = text
        parts.append(data)
        size += len(data.encode())
    block = "".join(parts).encode()
    truth["_lines"] = block.count(b"\n")
    truth["_grep_error"] = sum(1 for line in block.split(b"\n") if b"ERROR" in line)
    return block, truth


def prepare_file(size_mb: int, log=print) -> tuple[Path, dict]:
    """The cached file of about size_mb MB and its truth; generated when missing or stale."""
    path = CACHE_DIR / f"logs-mixed-{size_mb}mb.log"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == FORMAT_VERSION and meta.get("bytes") == path.stat().st_size:
            return path, meta
    log(f"generating {path} ({size_mb} MB, once)...")
    started = time.monotonic()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    blocks = [generate_block(seed) for seed in range(BLOCKS)]
    total: Counter = Counter()
    written = 0
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as out:
        n = 0
        while written < size_mb * 1_000_000:
            block, truth = blocks[n % BLOCKS]
            out.write(block)
            total.update(truth)
            written += len(block)
            n += 1
    os.replace(tmp, path)
    meta = {"version": FORMAT_VERSION, "bytes": written, "lines": total["_lines"],
            "grep_error_lines": total["_grep_error"], "levels": {level: total[level] for level in LEVELS},
            "generate_seconds": round(time.monotonic() - started, 1)}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return path, meta


def warm(path: Path) -> None:
    """Read the file once so every method starts from the same warm page cache."""
    with open(path, "rb", buffering=0) as handle:
        while handle.read(8 << 20):
            pass


# --- the methods ------------------------------------------------------------------------------------

def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def count_with_collector(path: Path) -> tuple[dict, float, float]:
    """The exporter's own code path: one reader pass after another until the file is read."""
    cfg = config.load(env={}, overrides={"devflow.log_files": [str(path)], "devflow.access_log": None,
                                         "collectors.logs.state_file": ""})
    collector = LogsCollector(cfg)
    size = path.stat().st_size
    wall, cpu = time.perf_counter(), time.process_time()
    while True:
        collector.read_once()
        counted = collector.counted(path)
        if counted.bytes >= size:
            break
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    counts = dict(counted.lines)
    collector.close()
    return counts, wall, cpu


def count_with_readline(path: Path) -> tuple[dict, float, float]:
    """The obvious Python loop: read lines, one anchored regex per line, same rules.

    A record that takes the lines after it (an error's text, a crash) stays open
    until a line that ends it; a crash's location line is read with the two after it.
    """
    levels = LevelCounter()
    counts: Counter = Counter()
    wall, cpu = time.perf_counter(), time.process_time()
    record_start, ends_record, trailer = LINE_RECORD_START.match, LINE_BREAK.match, LINE_TRAILER.match
    with open(path, "rb") as handle:
        lines: list[bytes] = []
        in_record = False
        skip = 0  # lines a crash's location line took with it
        while True:
            batch = handle.readlines(1 << 20)
            lines = lines + (batch or [b"", b""])  # two lines left from the last batch, or the end
            for i in range(len(lines) - 2):
                if skip:
                    skip -= 1
                    continue
                line = lines[i]
                if line[-2:-1].isdigit():
                    line += lines[i + 1] + lines[i + 2]  # perhaps a crash's location: its source line and caret
                if in_record:
                    if not ends_record(line):
                        continue
                    if trailer(line):
                        in_record = False
                        continue
                match = record_start(line)
                if match:
                    key = match.group(1)
                    counts[key] += 1
                    in_record = takes_following_lines(key)
                    if in_record and key[-1:] == b"^":
                        skip = 2
            if not batch:
                break
            lines = lines[-2:]
    result: Counter = Counter()
    for word, n in counts.items():
        result[levels.level_of(word)] += n
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {level: result[level] for level in LEVELS}, wall, cpu


def count_with_grep(path: Path) -> tuple[int, float, float]:
    cpu = _children_cpu()
    wall = time.perf_counter()
    proc = subprocess.run(["grep", "-c", "ERROR", str(path)], capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C"})
    wall = time.perf_counter() - wall
    return int(proc.stdout.strip() or 0), wall, _children_cpu() - cpu


def count_with_mtail(path: Path) -> tuple[dict, float, float]:
    with socket.socket() as sock:  # mtail listens even in one-shot mode: keep it on a free local port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-mtail-") as workdir:
        cpu = _children_cpu()
        wall = time.perf_counter()
        proc = subprocess.run(["mtail", "-one_shot", "-one_shot_format", "json", "-progs", str(MTAIL_PROGRAM),
                               "-logs", str(path), "-address", "127.0.0.1", "-port", str(port),
                               "-log_dir", workdir], capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - wall
        cpu = _children_cpu() - cpu
    if proc.returncode != 0:
        raise RuntimeError(f"mtail failed: {proc.stderr.strip()[-300:]}")
    levels = LevelCounter()
    counts: Counter = Counter()
    for metric in json.loads(proc.stdout).get("devflow_log_records", []):
        for entry in metric.get("LabelValues", []):
            word = (entry.get("Labels") or [""])[0].encode()
            counts[levels.level_of(word)] += int(entry["Value"]["Value"])
    return {level: counts[level] for level in LEVELS}, wall, cpu


# --- the run ----------------------------------------------------------------------------------------

def measure(size_mb: int = DEFAULT_SIZE_MB, mtail: bool = True, log=print) -> dict:
    path, meta = prepare_file(size_mb, log)
    warm(path)
    truth = meta["levels"]
    lines, megabytes = meta["lines"], meta["bytes"] / 1e6
    rows = []

    def row(method, wall, cpu, exact, note=""):
        rows.append({"method": method, "wall_s": wall, "cpu_s": cpu, "lines_per_s": lines / wall,
                     "mb_per_s": megabytes / wall, "exact": exact, "note": note})

    counts, wall, cpu = count_with_collector(path)
    row("logs collector (ours)", wall, cpu, counts == truth, "all levels, all formats")
    counts, wall, cpu = count_with_readline(path)
    row("python readline + re.match", wall, cpu, counts == truth, "all levels, all formats")
    found, wall, cpu = count_with_grep(path)
    row("grep -c ERROR", wall, cpu, found == truth["error"],
        f"error only: {found} vs {truth['error']} true")
    if mtail and shutil.which("mtail"):
        try:
            counts, wall, cpu = count_with_mtail(path)
            row("mtail -one_shot", wall, cpu, counts == truth, "all levels, all formats")
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
            log(f"mtail: {exc}")
    return {"file": str(path), "bytes": meta["bytes"], "lines": lines, "truth": truth, "rows": rows}


def print_table(result: dict, out=print) -> list[str]:
    """The table and the target checks; returns the names of failed targets."""
    out(f"\nLog counting: {result['file']}")
    out(f"  {result['bytes'] / 1e6:.0f} MB, {result['lines']:,} lines, true records by level: "
        + ", ".join(f"{k} {v:,}" for k, v in result["truth"].items()))
    header = f"  {'method':<28} {'wall s':>7} {'CPU s':>7} {'M lines/s':>10} {'MB/s':>7}  {'exact?':<6} note"
    out(header)
    out("  " + "-" * (len(header) - 2))
    for r in result["rows"]:
        out(f"  {r['method']:<28} {r['wall_s']:>7.2f} {r['cpu_s']:>7.2f} {r['lines_per_s'] / 1e6:>10.2f} "
            f"{r['mb_per_s']:>7.0f}  {'yes' if r['exact'] else 'NO':<6} {r['note']}")
    ours = result["rows"][0]
    mtail = next((r for r in result["rows"] if r["method"].startswith("mtail")), None)
    checks = [("exact counts", ours["exact"], ""),
              (f">= {MIN_LINES_PER_SECOND / 1e6:.1f} M lines/s on one core", ours["lines_per_s"] >= MIN_LINES_PER_SECOND,
               f"{ours['lines_per_s'] / 1e6:.2f} M lines/s")]
    if mtail:
        ratio = ours["lines_per_s"] / mtail["lines_per_s"]
        checks.append((f">= {MIN_VS_MTAIL:.0f}x mtail", ratio >= MIN_VS_MTAIL, f"{ratio:.1f}x"))
    out("")
    for name, ok, figures in checks:
        out(f"{'PASS' if ok else 'FAIL'}  logs: {name:<28} {figures}")
    return [name for name, ok, _ in checks if not ok]


def run(report=None, size_mb: int | None = None, mtail: bool = True) -> dict:
    """Entry point for bench/run.py: measure and print the table (`report`, if given, gets the result)."""
    size = size_mb or int(os.environ.get("DEVFLOW_BENCH_LOG_MB", DEFAULT_SIZE_MB))
    result = measure(size, mtail)
    result["failed"] = print_table(result)
    if callable(report):
        report(result)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.logs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=DEFAULT_SIZE_MB, help="size of the generated log file")
    parser.add_argument("--no-mtail", dest="mtail", action="store_false", help="skip the mtail row")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.size_mb < 1:
        parser.error("--size-mb must be at least 1")
    result = run(size_mb=args.size_mb, mtail=args.mtail)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
