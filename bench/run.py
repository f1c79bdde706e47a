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

The measurement is in bench/scrapes.py, the table and its targets in
bench/scrape_table.py, what both benchmarks share in bench/harness.py.

    python -m bench.run [--sizes 100000,1000000] [--scrapes 1000] [--rate 50] [--idle-seconds 600]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from bench import dbgen, idle
from bench.harness import Children, exporter_config, parse_sizes, wait_until_serving
from bench.scrape_table import print_table
from bench.scrapes import Row, Target, check_exporter, measure, start_exporter, start_references

DEFAULT_SIZES = (100_000, 1_000_000, 10_000_000)


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
            wait_until_serving(subject.proc, subject.port, subject.row.target)
        for subject in ours:
            check_exporter(subject, log)
        log(f"measuring {len(references) + len(ours)} exporters, {args.scrapes} scrapes each ...")
        measure(references + ours, args.scrapes, args.warmup)
    finally:
        writers = [target.stop() for target in targets]
    node, proc = (subject.row for subject in references)
    return [subject.row for subject in ours], node, proc, writers


def main(argv: list[str] | None = None) -> int:
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
