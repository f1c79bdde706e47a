"""`devflow-monitor maintain`: the guide's weekly maintenance (section 8.2), safe to run while DevFlow writes.

What the guide's script gets wrong and this does instead:
- `timestamp < datetime('now','-30 days')` compares a millisecond integer with
  text. SQLite sorts every integer before every text value, so the condition is
  true for every row: the guide's statement empties the events table, today's
  rows included. Here the cutoff is milliseconds: `timestamp < (now - days) * 1000`.
- One unbounded DELETE holds the write lock until it ends, so DevFlow's inserts
  wait (or fail on their busy timeout). Here rows go in short transactions
  (`id IN (... LIMIT n)` over the timestamp index), each sized to take about
  `--batch-target-ms`, with a pause between them in which the writer gets in.
- `ANALYZE` reads every index under the write lock; `analysis_limit` bounds it.
- `VACUUM` rewrites the whole file under the write lock and needs up to twice
  the database's size free (a copy, and in WAL mode the WAL). It runs only
  with that much free disk, and by default only while DevFlow is stopped.
- `find -name "*.log" -mtime +7 -delete` also deletes live logs that were
  quiet for a week. Only rotated copies beside the configured logs are removed.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devflow_monitor.core import devflow_db
from devflow_monitor.core.config import Config
from devflow_monitor.ops import backup, common, logfiles, target
from devflow_monitor.core.commands import add_command, config_from_args

DAY = 86400.0

# The numeric flags: flag -> (type, default, metavar, what it sets).
KNOBS = {
    "--retention-days": (float, 30, "DAYS", "delete events older than this"),
    "--batch-target-ms": (float, 50, "MS", "aim for delete transactions of this length"),
    "--pause-ms": (float, 50, "MS", "pause between delete transactions, the writer's window"),
    "--max-batch": (int, 20000, "ROWS", "upper bound on rows per delete transaction"),
    "--time-limit": (float, 0, "SECONDS", "stop deleting after this long, to fit a maintenance window; 0: no limit"),
    "--analysis-limit": (int, 1000, "ROWS", "rows ANALYZE samples per index (PRAGMA analysis_limit); 0: all"),
    "--reserve-disk-mb": (float, 256, "MB", "free space VACUUM must leave beyond its own need of twice the database"),
    "--log-retention-days": (float, 7, "DAYS", "remove rotated copies of the configured logs older than this"),
}


def register(subparsers) -> None:
    parser = add_command(subparsers, "maintain", run,
                         help="retention delete in short batches, ANALYZE, VACUUM when safe, old log cleanup")
    for flag, (kind, default, metavar, text) in KNOBS.items():
        parser.add_argument(flag, type=kind, default=default, metavar=metavar, help=f"{text} (default {default})")
    parser.add_argument("--vacuum", choices=("auto", "always", "never"), default="auto",
                        help="auto: only while DevFlow is stopped and at least 10%% of the file is free pages; "
                             "always: even while it runs (its writes wait for the whole VACUUM); never")
    parser.add_argument("--no-logs", action="store_true", help="leave rotated logs alone")
    parser.add_argument("--backup-first", action="store_true",
                        help="make a verified backup (as `devflow-monitor backup`) before changing anything")
    parser.add_argument("--backup-dir", metavar="DIR", help="where --backup-first writes (default: backup.directory)")
    parser.add_argument("--dry-run", action="store_true", help="show what would happen; change nothing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


@dataclass
class Step:
    name: str
    status: str  # done, skipped, would (dry run) or stopped (time limit)
    summary: str
    details: dict = field(default_factory=dict)


@dataclass
class Retention:
    """The delete loop's knobs."""
    days: float
    target_seconds: float = 0.05
    pause_seconds: float = 0.05
    max_batch: int = 20000
    time_limit: float = 0.0
    min_batch: int = 50


def run(args) -> int:
    """Delete events older than the retention in short transactions so DevFlow's writes never wait long, refresh the
    planner's statistics, VACUUM only with enough free disk (and, by default, only while DevFlow is stopped),
    remove old rotated logs. Exit status 0 on success, 1 on failure."""
    config = config_from_args(args)
    if args.retention_days <= 0 or args.batch_target_ms <= 0 or args.max_batch < 1 or args.pause_ms < 0:
        return common.fail("maintain", "--retention-days, --batch-target-ms and --max-batch must be positive",
                           as_json=args.json)
    retention = Retention(args.retention_days, args.batch_target_ms / 1000, args.pause_ms / 1000,
                          args.max_batch, args.time_limit)
    steps: list[Step] = []
    try:
        maintain(config, args, retention, steps)
    except common.OpsError as exc:
        if not args.json:
            print_steps(config.devflow.database_path, steps, args.dry_run)
        return common.fail("maintain", str(exc), as_json=args.json)
    except OSError as exc:
        return common.fail("maintain", common.os_error_text(exc), as_json=args.json)
    if args.json:
        common.print_json({"ok": True, "database": str(config.devflow.database_path), "dry_run": args.dry_run,
                           "steps": [asdict(s) for s in steps]})
    else:
        print_steps(config.devflow.database_path, steps, args.dry_run)
    return 0


def maintain(config: Config, args, retention: Retention, steps: list[Step]) -> None:
    db = config.devflow.database_path
    if not db.is_file():
        raise common.OpsError(f"database not found: {db}")
    _check_readable(db)
    if args.backup_first:
        steps.append(backup_step(config, args))
    deletion = delete_step(db, retention, args.dry_run)
    steps.append(deletion)
    steps.append(analyze_step(db, args.analysis_limit, args.dry_run))
    # A dry run deleted nothing: judge VACUUM by the share of rows the delete would free.
    freed_share = deletion.details["rows"] / deletion.details["total_rows"] \
        if args.dry_run and deletion.details.get("total_rows") else 0.0
    steps.append(vacuum_step(config, db, args.vacuum, args.reserve_disk_mb * 1024 * 1024, args.dry_run,
                             freed_share))
    if not args.no_logs:
        steps.append(logs_step(config.devflow.log_files, args.log_retention_days, args.dry_run))


def backup_step(config: Config, args) -> Step:
    options = backup.Options(directory=Path(args.backup_dir or config.backup.directory).expanduser(), include=[],
                             config_file=Path(args.config_file).expanduser() if args.config_file else None)
    if args.dry_run:
        return Step("backup", "would", f"back up to {options.directory} first")
    status_file = Path(config.backup.status_file).expanduser()
    try:
        result, removed = backup.backup_and_record(config, options, status_file, config.backup.retention_days)
    except common.OpsError as exc:
        raise common.OpsError(f"backup before maintenance failed, nothing changed: {exc}") from None
    return Step("backup", "done", f"{result['path']} ({common.human_bytes(result['size_bytes'])}, verified)",
                {"path": result["path"], "removed_by_retention": [str(p) for p in removed]})


def delete_step(db: Path, retention: Retention, dry_run: bool) -> Step:
    now = time.time()
    cutoff_ms = int((now - retention.days * DAY) * 1000)
    cutoff_text = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cutoff_ms / 1000))
    details = {"cutoff_ms": cutoff_ms, "retention_days": retention.days}
    if dry_run:
        conn = devflow_db.connect_readonly(db)
        try:
            count, oldest = conn.execute("SELECT count(*), min(timestamp) FROM events WHERE timestamp < ?",
                                         (cutoff_ms,)).fetchone()
            total = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        finally:
            conn.close()
        details.update(rows=count, oldest_ms=oldest, total_rows=total)
        return Step("retention", "would", f"delete {count} events older than {cutoff_text} "
                                          f"({retention.days:g} days)", details)
    result = delete_old_events(db, cutoff_ms, retention)
    details.update(result)
    summary = (f"deleted {result['deleted']} events older than {cutoff_text} in {result['batches']} "
               f"transactions; longest held the write lock {result['max_hold_ms']:.0f} ms")
    if result["stopped_early"]:
        return Step("retention", "stopped", summary + f"; stopped at the {retention.time_limit:g}s time limit, "
                                                      f"{result['remaining']} old events remain", details)
    return Step("retention", "done", summary, details)


def delete_old_events(db: Path, cutoff_ms: int, retention: Retention) -> dict:
    """Delete events with `timestamp < cutoff_ms` in short transactions sized to `retention.target_seconds`."""
    conn = sqlite3.connect(db, timeout=10.0, isolation_level=None)
    try:
        # Deletions cascade to activities exactly as when the server deletes (ON DELETE CASCADE).
        conn.execute("PRAGMA foreign_keys=ON")
        # Checkpoint in the pauses instead of inside COMMIT: the measured lock hold stays honest, and the
        # writer's next commit finds the WAL already copied back instead of doing that work itself.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        batch, deleted, batches, holds = 200, 0, 0, []
        started = time.monotonic()
        stopped_early = False
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                held_from = time.perf_counter()
                removed = conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE timestamp < ? LIMIT ?)",
                    (cutoff_ms, batch)).rowcount
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise common.OpsError(f"deleting old events failed after {deleted} rows: {exc}") from None
            held = time.perf_counter() - held_from
            holds.append(held)
            deleted += removed
            batches += 1
            if removed < batch:
                break
            batch = _next_batch(batch, held, retention)
            if retention.time_limit and time.monotonic() - started >= retention.time_limit:
                stopped_early = True
                break
            pause_until = time.monotonic() + retention.pause_seconds
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # never waits for, nor blocks, the writer
            time.sleep(max(0.0, pause_until - time.monotonic()))
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        remaining = conn.execute("SELECT count(*) FROM events WHERE timestamp < ?", (cutoff_ms,)).fetchone()[0] \
            if stopped_early else 0
    finally:
        conn.close()
    holds.sort()
    return {"deleted": deleted, "batches": batches, "final_batch_rows": batch,
            "max_hold_ms": round(1000 * holds[-1], 1) if holds else 0.0,
            "median_hold_ms": round(1000 * holds[len(holds) // 2], 1) if holds else 0.0,
            "duration_seconds": round(time.monotonic() - started, 3),
            "stopped_early": stopped_early, "remaining": remaining}


def _next_batch(batch: int, held: float, retention: Retention) -> int:
    """Scale the batch toward the target duration, at most doubling or halving per step."""
    scaled = batch * retention.target_seconds / max(held, 1e-4)
    return int(max(retention.min_batch, min(retention.max_batch, batch * 2, max(batch / 2, scaled))))


def analyze_step(db: Path, analysis_limit: int, dry_run: bool) -> Step:
    if dry_run:
        return Step("analyze", "would", f"ANALYZE sampling at most {analysis_limit or 'all'} rows per index")
    conn = sqlite3.connect(db, timeout=10.0, isolation_level=None)
    try:
        conn.execute(f"PRAGMA analysis_limit={int(analysis_limit)}")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        started = time.perf_counter()
        conn.execute("ANALYZE")
        took = time.perf_counter() - started
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error as exc:
        raise common.OpsError(f"ANALYZE failed: {exc}") from None
    finally:
        conn.close()
    return Step("analyze", "done", f"planner statistics refreshed in {common.human_duration(took)}",
                {"duration_seconds": round(took, 3), "analysis_limit": analysis_limit})


def vacuum_step(config: Config, db: Path, mode: str, reserve: float, dry_run: bool, freed_share: float = 0.0) -> Step:
    if mode == "never":
        return Step("vacuum", "skipped", "disabled (--vacuum never)")
    page_size, pages, free_pages = _page_figures(db)
    free_pages += int((pages - free_pages) * freed_share)
    size = common.on_disk_size(db)
    reclaimable = free_pages * page_size
    share = free_pages / pages if pages else 0.0
    details = {"size_bytes": size, "reclaimable_bytes": reclaimable, "free_page_share": round(share, 3)}
    if mode == "auto" and share < 0.10:
        return Step("vacuum", "skipped", f"only {common.human_bytes(reclaimable)} ({share:.0%}) of free pages to "
                                         "reclaim; VACUUM runs from 10%", details)
    running = target.find_devflow(config)
    if running and mode == "auto":
        return Step("vacuum", "skipped",
                    f"DevFlow is running ({running[0].describe()}); VACUUM holds the write lock for the whole "
                    f"rewrite of {common.human_bytes(size)}, so its inserts would wait: run "
                    "`devflow-monitor maintain --vacuum always` in a quiet window or with DevFlow stopped", details)
    needed = 2 * size + reserve
    free = common.free_bytes(db)
    details.update(free_bytes=free, needed_bytes=int(needed))
    if free < needed:
        return Step("vacuum", "skipped", f"needs {common.human_bytes(needed)} free (twice the database plus "
                                         f"the reserve), {common.human_bytes(free)} available", details)
    if dry_run:
        return Step("vacuum", "would", f"VACUUM to reclaim about {common.human_bytes(reclaimable)}", details)
    conn = sqlite3.connect(db, timeout=30.0, isolation_level=None)
    try:
        started = time.perf_counter()
        conn.execute("VACUUM")
        # VACUUM in WAL mode wrote the whole database into the WAL: fold it back and truncate it.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        took = time.perf_counter() - started
    except sqlite3.Error as exc:
        raise common.OpsError(f"VACUUM failed (the database is unchanged): {exc}") from None
    finally:
        conn.close()
    after = common.on_disk_size(db)
    details.update(size_after_bytes=after, duration_seconds=round(took, 3))
    blocked = f"; DevFlow (PID {running[0].pid}) could not write meanwhile" if running else ""
    return Step("vacuum", "done", f"{common.human_bytes(size)} -> {common.human_bytes(after)} in "
                                  f"{common.human_duration(took)}{blocked}", details)


def logs_step(patterns: list[str], days: float, dry_run: bool) -> Step:
    cutoff = time.time() - days * DAY
    live, _ = logfiles.configured_files(patterns)
    # Plain paths count even when the live file is missing: its rotated copies may still be there.
    bases = set(live) | {Path(p).expanduser() for p in patterns if not any(c in p for c in "*?[")}
    old = []
    for base in sorted(bases):
        for copy in logfiles.rotated_copies(base):
            try:
                stat = copy.stat()
            except OSError:
                continue
            if stat.st_mtime < cutoff and copy not in live:
                old.append((copy, stat.st_size))
    total = sum(size for _, size in old)
    details = {"files": [str(p) for p, _ in old], "bytes": total, "log_retention_days": days}
    if dry_run:
        return Step("logs", "would", f"remove {len(old)} rotated log file(s) older than {days:g} days "
                                     f"({common.human_bytes(total)})", details)
    failed = []
    for path, _ in old:
        try:
            path.unlink()
        except OSError as exc:
            failed.append(f"{path}: {exc.strerror or exc}")
    details["failed"] = failed
    if failed:
        raise common.OpsError(f"could not remove {len(failed)} old log file(s): {failed[0]}")
    return Step("logs", "done", f"removed {len(old)} rotated log file(s) older than {days:g} days "
                                f"({common.human_bytes(total)})", details)


def print_steps(db: Path, steps: list[Step], dry_run: bool) -> None:
    color = common.use_color()
    styles = {"done": "ok", "would": "bold", "skipped": "dim", "stopped": "warn"}
    print(f"Maintenance of {db}")
    if dry_run:
        print("Dry run: nothing was changed; figures after the delete are estimates.")
    width = max((len(s.name) for s in steps), default=0)
    for step in steps:
        label = common.paint(f"{step.status:<7}", styles.get(step.status), color)
        print(f"  {label}  {step.name:<{width}}  {step.summary}")


# --- helpers ------------------------------------------------------------------------

def _check_readable(db: Path) -> None:
    try:
        conn = devflow_db.connect_readonly(db, timeout=5.0)
        try:
            tables = common.table_names(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise common.OpsError(f"cannot read {db}: {exc} (run devflow-monitor doctor)") from None
    if "events" not in tables:
        raise common.OpsError(f"{db} has no events table: not a DevFlow database")


def _page_figures(db: Path) -> tuple[int, int, int]:
    conn = devflow_db.connect_readonly(db, timeout=5.0)
    try:
        return tuple(conn.execute(f"PRAGMA {name}").fetchone()[0]
                     for name in ("page_size", "page_count", "freelist_count"))
    finally:
        conn.close()
