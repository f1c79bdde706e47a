"""`devflow-monitor backup`: an online, verified copy of the DevFlow databases, config and logs.

The guide's script `cp`s the live database, which can copy a torn file (pages
from two different moments, or without the -wal that holds recent commits).
Here SQLite's backup API copies a single snapshot: a read-only connection opens
a read transaction and the copy runs inside it, in steps, while DevFlow keeps
writing (WAL readers never block the writer). Holding the snapshot is also what
lets a stepped copy finish: without it, every commit by another process
restarts the copy from page one. Every database the server keeps is copied
this way: the main one and those of the others that exist (the audit and
multi-project databases, `devflow_db.server_databases`), each in a snapshot of
its own, one after the other.

Each copy is checked (`integrity_check`, row counts equal to the source's in
the same snapshot) before it counts: the folder is built under a hidden name
and renamed only when complete, so a half-made backup never looks like one.
A backup is whole or it is nothing: a file that cannot be copied (disk full,
permission denied) fails the run, removes the hidden folder and records no
success, so the backup-stale alert sees it. Only a log or config file removed
while the backup runs is skipped (and listed as such). One run at a time holds
the directory's lock, so a hidden folder found under it is a killed run's and
is removed at once.
A manifest records each database with its role, and sizes, SHA-256 checksums
and versions; `restore` verifies against it. Retention removes only folders
this tool created (they carry its manifest), by age, always keeping the newest
few. The status file tells the exporter of this database (and no other one)
when its last backup succeeded and how big it was (core/backup_status.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import shutil
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from devflow_monitor.core import backup_status, devflow_db
from devflow_monitor.core.config import Config
from devflow_monitor.ops import common, logfiles
from devflow_monitor.core.commands import add_command, config_from_args

MANIFEST = "manifest.json"
FORMAT = "devflow-monitor-backup/1"
DB_FILE = "devflow.db"  # the main database's copy; the others are <role>.db
PREFIX = "devflow-backup-"
VANISHED = "removed while the backup ran"
NOT_PRESENT = "not present (the server has not created it)"


def register(subparsers) -> None:
    parser = add_command(subparsers, "backup", run,
                         help="online, verified backup of the server's databases, config files and logs")
    parser.add_argument("--dir", metavar="DIR", help="backup directory (default: backup.directory from the config)")
    parser.add_argument("--retention-days", type=int, metavar="DAYS",
                        help="remove backups older than this (default: backup.retention_days, 30); 0 keeps all")
    parser.add_argument("--keep-min", type=int, default=3, metavar="N",
                        help="always keep the newest N backups, however old (default 3)")
    parser.add_argument("--keep-max", type=int, default=0, metavar="N",
                        help="keep at most N backups (default 0: no limit)")
    parser.add_argument("--include", action="append", default=[], metavar="FILE",
                        help="another config file to copy (repeatable)")
    parser.add_argument("--no-logs", action="store_true", help="do not copy the log files")
    parser.add_argument("--status-file", metavar="FILE",
                        help="where to record the last success (default: backup.status_file)")
    parser.add_argument("--step-pages", type=int, default=1024, metavar="N",
                        help="database pages copied per backup step (default 1024)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


@dataclass
class Options:
    directory: Path
    include: list[Path]
    logs: bool = True
    step_pages: int = 1024
    config_file: Path | None = None


def options_from_args(config: Config, args) -> Options:
    return Options(
        directory=Path(args.dir or config.backup.directory).expanduser(),
        include=[Path(p).expanduser() for p in args.include],
        logs=not args.no_logs,
        step_pages=args.step_pages,
        config_file=Path(args.config_file).expanduser() if args.config_file else None)


def run(args) -> int:
    """Copy each of DevFlow's databases with SQLite's online backup API while DevFlow keeps writing, verify each
    copy, add config files and compressed logs, write a manifest with checksums, apply retention and record the
    success for the exporter. Exit status 0 on success, 1 on failure."""
    config = config_from_args(args)
    if args.step_pages < 1 or args.keep_min < 1 or args.keep_max < 0:
        return common.fail("backup", "--step-pages and --keep-min must be at least 1, --keep-max at least 0",
                           as_json=args.json)
    retention_days = config.backup.retention_days if args.retention_days is None else args.retention_days
    status_file = Path(args.status_file or config.backup.status_file).expanduser()
    options = options_from_args(config, args)
    try:
        result, removed = backup_and_record(config, options, status_file, retention_days,
                                            args.keep_min, args.keep_max)
    except common.OpsError as exc:
        return common.fail("backup", str(exc), as_json=args.json)
    except OSError as exc:
        return common.fail("backup", common.os_error_text(exc), as_json=args.json)
    if args.json:
        common.print_json({"ok": True, "path": result["path"], "status_file": str(status_file),
                           "removed": [str(p) for p in removed], "manifest": result["manifest"]})
    else:
        print_summary(result, removed, retention_days, args.keep_min, status_file)
    return 0


def backup_and_record(config: Config, options: Options, status_file: Path, retention_days: int,
                      keep_min: int = 3, keep_max: int = 0) -> tuple[dict, list[Path]]:
    """A backup as the `backup` command makes it: verified, recorded for the exporter, then retention."""
    result = create_backup(config, options)
    write_status(status_file, config.devflow.database_path, result)
    removed = apply_retention(options.directory, retention_days, keep_min, keep_max, protect=Path(result["path"]))
    return result, removed


def create_backup(config: Config, options: Options) -> dict:
    """Make one verified backup folder; returns {"path", "manifest", "size_bytes"}. Raises OpsError."""
    started = time.time()
    db = config.devflow.database_path
    if not db.is_file():
        raise common.OpsError(f"database not found: {db}")
    present = [(role, path) for role, path in devflow_db.server_databases(db) if path.exists()]
    absent = [{"role": role, "source": str(path), "reason": NOT_PRESENT}
              for role, path in devflow_db.server_databases(db) if not path.exists()]
    sources = {role: _inspect_source(path) for role, path in present}
    needed = sum(int(s["page_count"] * s["page_size"] * 1.1) for s in sources.values()) + (1 << 20)
    with _sole_backup_in(options.directory):
        try:
            free = common.free_bytes(options.directory)
            _remove_partials(options.directory)
            name = _unique_name(options.directory, PREFIX + common.utc_stamp(started))
            work = options.directory / f".{name}.partial"
            work.mkdir(mode=0o700)
        except OSError as exc:
            raise common.OpsError(f"cannot use backup directory {options.directory}: "
                                  f"{common.os_error_text(exc)}") from None
        if free < needed:
            work.rmdir()
            raise common.OpsError(f"not enough free space in {options.directory}: the copy needs about "
                                  f"{common.human_bytes(needed)}, {common.human_bytes(free)} free")
        try:
            databases = [{"role": role, "source": str(path.resolve()),
                          **copy_database(path, work / copy_name(role), options.step_pages)}
                         for role, path in present]
            files, skipped = [], list(absent)
            _copy_config_files(config, options, work, files, skipped)
            if options.logs:
                _copy_logs(config, work, files, skipped)
            manifest = {
                "format": FORMAT,
                "tool": common.TOOL,
                "versions": common.versions(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "created_timestamp": started,
                "host": socket.gethostname(),
                "source": {"database": str(db.resolve()), **sources[devflow_db.MAIN_DATABASE]},
                # The main database again under the key where a reader that knows one database looks.
                "database": databases[0],
                "databases": databases,
                "files": files,
                "skipped": skipped,
                "duration_seconds": round(time.time() - started, 3),
            }
            common.write_json_atomic(work / MANIFEST, manifest)
            final = options.directory / name
            os.rename(work, final)
            common.fsync_path(options.directory)
        except OSError as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise common.OpsError(f"backup failed, nothing kept: {common.os_error_text(exc)}") from None
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    size = sum(p.stat().st_size for p in final.rglob("*") if p.is_file())
    return {"path": str(final), "manifest": manifest, "size_bytes": size}


def copy_name(role: str) -> str:
    """The file a database's copy has in the backup folder."""
    return DB_FILE if role == devflow_db.MAIN_DATABASE else f"{role}.db"


def manifest_databases(manifest: dict) -> list[dict]:
    """The manifest's databases, each with its role and file; a backup made when only the main database
    was copied lists it under "database" alone."""
    listed = manifest.get("databases")
    if listed is None:
        return [{"role": devflow_db.MAIN_DATABASE, **manifest["database"]}]
    return listed


def copy_database(db: Path, dest: Path, step_pages: int) -> dict:
    """Copy one snapshot of `db` into `dest` and verify it; returns the manifest's database entry."""
    try:
        src = devflow_db.connect_readonly(db, timeout=10.0)
    except sqlite3.Error as exc:
        raise common.OpsError(f"cannot open {db} read-only: {exc}") from None
    dst = None
    try:
        # Pin one snapshot for the whole copy: steps then never restart, and the counts below match it.
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        dst = sqlite3.connect(dest, isolation_level=None)
        src.backup(dst, pages=step_pages)
        source_counts = common.row_counts(src)
        src.execute("COMMIT")
        # A backup is one self-contained file: no -wal beside it to lose.
        dst.execute("PRAGMA journal_mode=DELETE")
        errors = devflow_db.integrity_errors(dst)
        if errors:
            raise common.OpsError(f"the copy of {db} fails integrity_check: {errors[0]} (is the source damaged? "
                                  f"run devflow-monitor doctor)")
        copy_counts = common.row_counts(dst)
        if copy_counts != source_counts:
            raise common.OpsError(f"the copy's row counts {copy_counts} differ from the source's {source_counts}")
    except sqlite3.Error as exc:  # "database or disk is full" among others
        raise common.OpsError(f"copying {db} failed: {exc}") from None
    finally:
        src.close()
        if dst is not None:
            dst.close()
    with open(dest, "rb+") as handle:
        os.fsync(handle.fileno())
    return {"file": dest.name, "size_bytes": dest.stat().st_size, "sha256": common.sha256_file(dest),
            "integrity_check": "ok", "row_counts": copy_counts}


def write_status(path: Path, database: Path, result: dict) -> None:
    """The exporter's view of this database's backups: when the last one succeeded and how big it was."""
    try:
        backup_status.record(path, database, timestamp=time.time(), size_bytes=result["size_bytes"],
                             backup_path=result["path"])
    except OSError as exc:
        raise common.OpsError(f"backup made at {result['path']} but the status file {path} could not be "
                              f"written: {exc.strerror or exc}") from None


@dataclass
class Existing:
    path: Path
    created: float
    manifest: dict


def list_backups(directory: Path) -> list[Existing]:
    """Backups this tool made in `directory` (recognised by their manifest), newest first."""
    found = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return found
    for entry in entries:
        if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        manifest = read_manifest(Path(entry.path))
        if manifest is not None:
            found.append(Existing(Path(entry.path), float(manifest["created_timestamp"]), manifest))
    return sorted(found, key=lambda b: b.created, reverse=True)


def read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("tool") != common.TOOL:
        return None
    if not isinstance(manifest.get("created_timestamp"), (int, float)):
        return None
    try:
        listed = manifest_databases(manifest)
    except (KeyError, TypeError):
        return None
    if not isinstance(listed, list) or not listed or not all(
            isinstance(entry, dict) and isinstance(entry.get("role"), str) and isinstance(entry.get("file"), str)
            and entry["file"] == Path(entry["file"]).name for entry in listed):
        return None  # each copy is a file of the folder itself
    return manifest


def apply_retention(directory: Path, days: int, keep_min: int, keep_max: int, *,
                    protect: Path | None = None, now: float | None = None) -> list[Path]:
    """Remove this tool's backups older than `days` or beyond `keep_max`, never the newest `keep_min`."""
    now = time.time() if now is None else now
    removed = []
    for index, backup in enumerate(list_backups(directory)):
        if index < keep_min or (protect is not None and backup.path == protect):
            continue
        too_old = days > 0 and backup.created < now - days * 86400
        too_many = keep_max > 0 and index >= keep_max
        if too_old or too_many:
            try:
                shutil.rmtree(backup.path)
            except OSError as exc:
                raise common.OpsError(f"retention could not remove {backup.path}: {exc.strerror or exc}") from None
            removed.append(backup.path)
    return removed


def print_summary(result: dict, removed: list[Path], days: int, keep_min: int, status_file: Path) -> None:
    manifest = result["manifest"]
    configs = [f for f in manifest["files"] if f["role"] == "config"]
    logs = [f for f in manifest["files"] if f["role"] == "log"]
    print(f"Backup written: {result['path']}")
    for database in manifest["databases"]:
        counts = database["row_counts"]
        rows = f"{counts['events']} events" if "events" in counts else f"{sum(counts.values())} rows in " \
            f"{len(counts)} tables"
        print(f"  database  {database['file']}: {common.human_bytes(database['size_bytes'])}, integrity ok, {rows}, "
              f"row counts match the source; sha256 {database['sha256'][:16]}...")
    print(f"  config    {len(configs)} file(s)" + (": " + ", ".join(f["source"] for f in configs) if configs else ""))
    if logs:
        raw = sum(f["source_bytes"] for f in logs)
        packed = sum(f["size_bytes"] for f in logs)
        print(f"  logs      {len(logs)} file(s), {common.human_bytes(raw)} compressed to {common.human_bytes(packed)}")
    for skip in manifest["skipped"]:
        print(f"  skipped   {skip['source']}: {skip['reason']}")
    print(f"  took      {common.human_duration(manifest['duration_seconds'])}")
    if removed:
        print(f"Retention: removed {len(removed)} backup(s) older than {days} days "
              f"(the newest {keep_min} are always kept): " + ", ".join(p.name for p in removed))
    print(f"Status recorded in {status_file}")


# --- helpers ------------------------------------------------------------------------

def _inspect_source(db: Path) -> dict:
    try:
        conn = devflow_db.connect_readonly(db, timeout=10.0)
        try:
            return {"page_size": conn.execute("PRAGMA page_size").fetchone()[0],
                    "page_count": conn.execute("PRAGMA page_count").fetchone()[0],
                    "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0]}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise common.OpsError(f"cannot read {db}: {exc} (run devflow-monitor doctor)") from None


def _unique_name(directory: Path, name: str) -> str:
    candidate, n = name, 1
    while (directory / candidate).exists() or (directory / f".{candidate}.partial").exists():
        n += 1
        candidate = f"{name}-{n}"
    return candidate


@contextlib.contextmanager
def _sole_backup_in(directory: Path):
    """Hold a lock on the backup directory itself for one run (no lock file to leave behind); the kernel
    drops it when the run ends, however it ends."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise common.OpsError(f"cannot use backup directory {directory}: {common.os_error_text(exc)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise common.OpsError(f"another backup is writing to {directory}; run again when it has finished") \
            from None
    try:
        yield
    finally:
        os.close(fd)


def _remove_partials(directory: Path) -> None:
    """Folders a killed run left half-made: under the lock, no running backup can own one."""
    for entry in os.scandir(directory):
        if entry.name.startswith(f".{PREFIX}") and entry.name.endswith(".partial") and \
                entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)


def config_candidates(config: Config, config_file: Path | None, include: list[Path]) -> list[Path]:
    """Config files worth keeping: the guide's (.env, servers.json), the exporter's, and --include."""
    db_dir = config.devflow.database_path.parent
    candidates = [db_dir / ".env"]
    if config.devflow.workdir:
        candidates.append(Path(config.devflow.workdir).expanduser() / ".env")
    candidates.append(Path("~/.config/mcp/servers.json").expanduser())
    if config_file:
        candidates.append(config_file)
    candidates.extend(include)
    unique = []
    for path in candidates:
        if path.resolve() not in [p.resolve() for p in unique]:
            unique.append(path)
    return unique


def _copy_config_files(config: Config, options: Options, work: Path, files: list, skipped: list) -> None:
    folder = work / "config"
    for index, path in enumerate(config_candidates(config, options.config_file, options.include)):
        if not path.is_file():
            if path in options.include or path == options.config_file:
                raise common.OpsError(f"config file to back up not found: {path}")
            continue
        folder.mkdir(exist_ok=True, mode=0o700)
        dest = folder / f"{index:02d}-{path.name}"
        try:
            shutil.copy2(path, dest)
        except FileNotFoundError:
            skipped.append({"source": str(path), "reason": VANISHED})
            continue
        files.append({"role": "config", "source": str(path.resolve()), "file": str(dest.relative_to(work)),
                      "size_bytes": dest.stat().st_size, "sha256": common.sha256_file(dest)})


def _copy_logs(config: Config, work: Path, files: list, skipped: list) -> None:
    found, _ = logfiles.configured_files(config.devflow.log_files)
    folder = work / "logs"
    for index, path in enumerate(found):
        folder.mkdir(exist_ok=True, mode=0o700)
        try:
            source = open(path, "rb")
        except FileNotFoundError:  # rotated away since it was listed; any other error fails the backup
            skipped.append({"source": str(path), "reason": VANISHED})
            continue
        dest = folder / f"{index:02d}-{path.name}.gz"
        with source:
            copied = _gzip_prefix(source, dest)
        files.append({"role": "log", "source": str(path.resolve()), "file": str(dest.relative_to(work)),
                      "source_bytes": copied, "size_bytes": dest.stat().st_size, "sha256": common.sha256_file(dest)})


def _gzip_prefix(source, dest: Path) -> int:
    """Compress the bytes the log had when we opened it (it keeps growing while we read)."""
    remaining = size = os.fstat(source.fileno()).st_size
    with gzip.open(dest, "wb", compresslevel=6) as target:
        while remaining > 0:
            chunk = source.read(min(1 << 20, remaining))
            if not chunk:
                break  # truncated under us (copytruncate rotation): keep what was there
            target.write(chunk)
            remaining -= len(chunk)
    return size - remaining
