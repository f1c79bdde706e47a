"""`devflow-monitor restore BACKUP`: put a verified backup in place of the DevFlow databases.

Compared with the guide's script (`cp` over the live file while the service
may still run): every database of the backup is checked first (checksum from
its manifest, SQLite header, `integrity_check`, an events table in the main
one), so a damaged or foreign file never replaces a working database; a
running DevFlow is refused unless `--stop` is given (SIGTERM by PID, then
wait); each old database is kept beside the new one with its -wal and -shm
(moved, never left where SQLite would replay the old WAL into the restored
file); each new file is copied to a temporary name in its directory and
synced, all of them before the first swap, then renamed over the old one in
one step; a swap that fails puts back the ones already made, so the
databases are all restored or all as they were; and the commands that undo
the swaps are printed.

Each database goes where the configuration puts it (`devflow_db.server_databases`),
by its role in the manifest. A backup made when only the main database was
copied restores that one; a database the backup does not hold is left as it is.
The manifest is checked whole and every file it names must lie inside the backup
folder before anything changes (ops/restore_manifest.py); config files go back
only to the paths this configuration backs up.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devflow_monitor.core import devflow_db
from devflow_monitor.core.config import Config
from devflow_monitor.ops import backup, common, restore_manifest, target
from devflow_monitor.core.commands import add_command, config_from_args

SQLITE_HEADER = b"SQLite format 3\x00"


def register(subparsers) -> None:
    parser = add_command(subparsers, "restore", run, help="verify a backup and swap it in for the DevFlow databases")
    parser.add_argument("backup", metavar="BACKUP",
                        help="a backup folder made by `devflow-monitor backup`, or a database file")
    parser.add_argument("--stop", action="store_true", help="stop a running DevFlow first (SIGTERM by PID, then wait)")
    parser.add_argument("--stop-timeout", type=float, default=15.0, metavar="SECONDS",
                        help="how long to wait for DevFlow to exit after SIGTERM (default 15)")
    parser.add_argument("--restart-command", metavar="CMD",
                        help="shell command that starts DevFlow again after the swap "
                             "(e.g. 'systemctl start devflow-monitor')")
    parser.add_argument("--config-files", action="store_true",
                        help="also put the backup's config files back: those this configuration backs up "
                             "(its config file, .env files, servers.json) and --include")
    parser.add_argument("--include", action="append", default=[], metavar="FILE",
                        help="a config file the backup holds through backup's --include, to put back too "
                             "(repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args) -> int:
    """Verify BACKUP (checksum, integrity), refuse while DevFlow runs unless --stop, keep each replaced database (and
    its -wal/-shm) beside it, swap each atomically and print how to undo. Exit status 0 when restored, 1 when
    refused or failed (the databases are then unchanged). A malformed manifest, or one naming a file outside
    the backup folder or a config file this configuration does not back up, is refused."""
    config = config_from_args(args)
    config_files = None
    if args.config_files:
        config_files = backup.config_candidates(
            config, Path(args.config_file).expanduser() if args.config_file else None,
            [Path(p).expanduser() for p in args.include])
    try:
        result = restore(config, Path(args.backup).expanduser().absolute(), stop=args.stop,
                         stop_timeout=args.stop_timeout,
                         restart_command=args.restart_command, config_files=config_files)
    except common.OpsError as exc:
        return common.fail("restore", str(exc), as_json=args.json)
    except OSError as exc:
        return common.fail("restore", common.os_error_text(exc), as_json=args.json)
    if args.json:
        common.print_json({"ok": True, **result})
    else:
        print_summary(result)
    return 1 if result.get("restart_error") else 0


@dataclass
class Swap:
    """One database to put in place: the backup's copy, where it goes, and what the swap moved aside."""
    role: str
    backup: Path
    database: Path
    verified: dict
    tmp: Path | None = None
    kept_db: Path | None = None
    kept: list[Path] = field(default_factory=list)
    moved: list[tuple[Path, Path]] = field(default_factory=list)

    def describe(self) -> dict:
        return {"role": self.role, "database": str(self.database), "backup": str(self.backup),
                "verified": self.verified, "kept": [str(p) for p in self.kept],
                "undo": undo_commands(self.database, self.kept_db, self.kept)}


def restore(config: Config, source: Path, *, stop: bool, stop_timeout: float, restart_command: str | None,
            config_files: list[Path] | None) -> dict:
    """Verify, stop if asked, swap, restart if asked; `config_files` are the paths the backup's config files
    may go back to (None: leave config files alone). Raises OpsError with nothing changed on refusal."""
    copies, manifest = locate(source)
    planned_configs = []
    if config_files is not None and manifest is not None and source.is_dir():
        planned_configs = restore_manifest.config_destinations(source, manifest, config_files)
    targets = dict(devflow_db.server_databases(config.devflow.database_path))
    swaps = []
    for role, db_file, entry in copies:
        if role not in targets:
            raise common.OpsError(f"{db_file} is a database of role {role!r}, which this version does not know")
        verified = verify(db_file, entry, require_events=role == devflow_db.MAIN_DATABASE)
        db = targets[role]
        if db.exists() and db.resolve() == db_file.resolve():
            raise common.OpsError(f"{db_file} is the live database itself")
        swaps.append(Swap(role, db_file, db, verified))
    restored_roles = {swap.role for swap in swaps}
    untouched = [str(db) for role, db in targets.items() if role not in restored_roles and db.exists()]

    running = target.find_devflow(config)
    stopped = []
    if running and not stop:
        raise common.OpsError(f"DevFlow is running: {running[0].describe()}; stop it first or pass --stop")
    if running:
        relaunch = [_how_it_ran(item) for item in running]
        still = target.stop(running, stop_timeout)
        stopped = [{"pid": item.pid, "ran_as": how} for item, how in zip(running, relaunch) if item not in still]
        if still:
            raise _with_restart(f"PID {still[0].pid} did not exit within {stop_timeout:g}s of SIGTERM; "
                                "the databases were not changed", stopped, restart_command)
    try:
        swap_databases(swaps)
        restored_configs = restore_config_files(planned_configs)
    except common.OpsError as exc:
        raise _with_restart(str(exc), stopped, restart_command) from None
    databases = [swap.describe() for swap in swaps]
    result = {"database": databases[0]["database"], "backup": databases[0]["backup"],
              "verified": databases[0]["verified"], "databases": databases, "untouched": untouched,
              "kept": [p for d in databases for p in d["kept"]], "undo": [c for d in databases for c in d["undo"]],
              "stopped": stopped, "config_files": restored_configs}
    if restart_command:
        result["restart_command"] = restart_command
        result["restart_error"] = restart(restart_command)
    return result


def locate(source: Path) -> tuple[list[tuple[str, Path, dict | None]], dict | None]:
    """The databases to restore as (role, file, manifest entry or None for a bare file), and the manifest."""
    if not source.exists():
        raise common.OpsError(f"backup not found: {source}")
    if source.is_dir():
        manifest = backup.read_manifest(source)
        if manifest is None:
            raise common.OpsError(f"{source} has no valid {backup.MANIFEST}: not a devflow-monitor backup "
                                  "(pass the database file itself to restore it without a checksum)")
        restore_manifest.check(source, manifest)
        return [(entry["role"], restore_manifest.inside(source, entry["file"]), entry)
                for entry in backup.manifest_databases(manifest)], manifest
    manifest = backup.read_manifest(source.parent)
    if manifest is not None:
        restore_manifest.check(source.parent, manifest)
        for entry in backup.manifest_databases(manifest):
            if entry["file"] == source.name:
                return [(entry["role"], source, entry)], manifest
    return [(devflow_db.MAIN_DATABASE, source, None)], None


def verify(db_file: Path, expected: dict | None, *, require_events: bool = True) -> dict:
    """Checksum (against the manifest's entry, if any), header, integrity and, for the main database, schema
    of a backup's database; returns what was verified."""
    if not db_file.is_file():
        raise common.OpsError(f"backup database missing: {db_file}")
    size = db_file.stat().st_size
    sha = common.sha256_file(db_file)
    if expected is not None:
        if size != expected.get("size_bytes") or sha != expected.get("sha256"):
            raise common.OpsError(f"checksum mismatch: {db_file} is {size} bytes with sha256 {sha[:16]}..., the "
                                  f"manifest says {expected.get('size_bytes')} bytes, "
                                  f"{str(expected.get('sha256'))[:16]}...: the backup is damaged")
    with open(db_file, "rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise common.OpsError(f"{db_file} is not a SQLite database")
    try:
        conn = devflow_db.connect_readonly(db_file, mode=devflow_db.IMMUTABLE)
        try:
            errors = devflow_db.integrity_errors(conn)
            tables = common.table_names(conn) if not errors else []
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0] if "events" in tables else None
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise common.OpsError(f"{db_file} fails integrity_check: {exc}") from None
    if errors:
        raise common.OpsError(f"{db_file} fails integrity_check: {errors[0]}")
    if events is None and require_events:
        raise common.OpsError(f"{db_file} has no events table: not a DevFlow database")
    return {"sha256": sha, "size_bytes": size, "checksum": "manifest" if expected else "none (bare file)",
            "integrity_check": "ok", "tables": len(tables), "events": events}


def swap_databases(swaps: list[Swap]) -> None:
    """Put every database in place, or none: all copies are staged before the first swap, and a swap that
    fails puts back the ones already made."""
    try:
        for swap in swaps:
            _stage(swap)
    except common.OpsError:
        for swap in swaps:
            if swap.tmp is not None:
                swap.tmp.unlink(missing_ok=True)
        raise
    done = []
    for swap in swaps:
        try:
            _swap_in(swap)
        except OSError as exc:
            for other in swaps:
                if other.tmp is not None:
                    other.tmp.unlink(missing_ok=True)
            for other in reversed(done):
                _put_back(other)
            restored = "; the databases already swapped were put back" if done else ""
            raise common.OpsError(f"swap of {swap.database} failed, databases unchanged{restored}: "
                                  f"{common.os_error_text(exc)}") from None
        done.append(swap)


def _stage(swap: Swap) -> None:
    """Copy the backup to a temporary name beside its destination, synced and checked."""
    directory = swap.database.parent
    directory.mkdir(parents=True, exist_ok=True)
    size = swap.backup.stat().st_size
    if common.free_bytes(directory) < size + (1 << 20):
        raise common.OpsError(f"not enough free space in {directory} for a {common.human_bytes(size)} copy")
    swap.tmp = directory / f".{swap.database.name}.restore-{os.getpid()}.tmp"
    try:
        shutil.copyfile(swap.backup, swap.tmp)
        _match_owner(swap.tmp, swap.database)
        with open(swap.tmp, "rb+") as handle:
            os.fsync(handle.fileno())
    except OSError as exc:
        raise common.OpsError(f"cannot copy the backup into {directory}: {exc.strerror or exc}") from None
    if common.sha256_file(swap.tmp) != swap.verified["sha256"]:
        raise common.OpsError(f"the copy in {directory} does not match the backup's checksum (disk problem?)")


def _swap_in(swap: Swap) -> None:
    """Keep the current database and its -wal/-shm aside, then rename the staged copy over it."""
    db = swap.database
    kept_db = _unused(db.parent / f"{db.name}.before-restore-{common.utc_stamp()}")
    swap.kept_db = kept_db
    try:
        if db.exists():
            _keep(db, kept_db)
            swap.kept.append(kept_db)
        # The old -wal must never sit beside the restored file: SQLite would replay it into it.
        for suffix in ("-wal", "-shm"):
            side = Path(f"{db}{suffix}")
            if side.exists():
                os.rename(side, f"{kept_db}{suffix}")
                swap.moved.append((side, Path(f"{kept_db}{suffix}")))
                swap.kept.append(Path(f"{kept_db}{suffix}"))
        os.replace(swap.tmp, db)
        swap.tmp = None
        common.fsync_path(db.parent)
    except OSError:
        _put_back(swap)
        raise


def _put_back(swap: Swap) -> None:
    """Undo one swap (or the part of it that was made): the kept database returns, then its -wal/-shm."""
    if swap.kept_db in swap.kept:
        if swap.tmp is None:  # the copy was renamed in: the kept file goes back over it
            os.replace(swap.kept_db, swap.database)
        else:  # a second name of the untouched database
            swap.kept_db.unlink(missing_ok=True)
    elif swap.tmp is None:  # there was no database before: the restored one goes
        swap.database.unlink(missing_ok=True)
    for original, renamed in reversed(swap.moved):
        os.rename(renamed, original)
    swap.moved, swap.kept = [], []
    common.fsync_path(swap.database.parent)


def undo_commands(db: Path, kept_db: Path | None, kept: list[Path]) -> list[str]:
    q = shlex.quote
    commands = [f"rm -f {q(str(db))}-wal {q(str(db))}-shm"]
    if kept_db in kept:
        commands.append(f"mv {q(str(kept_db))} {q(str(db))}")
    else:
        commands.append(f"rm -f {q(str(db))}")
    for suffix in ("-wal", "-shm"):
        if Path(f"{kept_db}{suffix}") in kept:
            commands.append(f"mv {q(str(kept_db) + suffix)} {q(str(db) + suffix)}")
    return commands


def restore_config_files(planned: list[tuple[Path, Path]]) -> list[dict]:
    """Put the backup's verified config files back, keeping each replaced one beside it."""
    restored = []
    stamp = common.utc_stamp()
    for copy, destination in planned:
        kept = None
        if destination.exists():
            kept = destination.with_name(f"{destination.name}.before-restore-{stamp}")
            shutil.copy2(destination, kept)
        tmp = destination.with_name(f".{destination.name}.restore-{os.getpid()}.tmp")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(copy, tmp)
        os.replace(tmp, destination)
        restored.append({"file": str(destination), "kept": str(kept) if kept else None})
    return restored


def _with_restart(problem: str, stopped: list[dict], command: str | None) -> common.OpsError:
    """The error to report once DevFlow was stopped for nothing: restarted if we can, else said so."""
    if not stopped:
        return common.OpsError(problem)
    if not command:
        return common.OpsError(f"{problem}; DevFlow was stopped and is not running: start it again")
    failure = restart(command)
    return common.OpsError(f"{problem}; " + (f"restarting DevFlow failed too: {failure}" if failure
                                             else "DevFlow was restarted"))


def restart(command: str) -> str | None:
    """Start DevFlow again in its own session; returns a problem if the command fails at once."""
    try:
        proc = subprocess.Popen(command, shell=True, start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        return f"cannot run the restart command: {exc.strerror or exc}"
    try:
        code = proc.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        return None  # still running after 2 s: a foreground server, started
    if code != 0:
        message = (proc.stderr.read() or b"").decode(errors="replace").strip().splitlines()
        return f"restart command exited with {code}" + (f": {message[-1]}" if message else "")
    return None


def print_summary(result: dict) -> None:
    for item in result["stopped"]:
        print(f"Stopped DevFlow PID {item['pid']} (it ran as: {item['ran_as']})")
    for database in result["databases"]:
        verified = database["verified"]
        content = f"{verified['events']} events" if verified["events"] is not None else f"{verified['tables']} tables"
        print(f"Restored {database['database']}")
        print(f"  from      {database['backup']}")
        print(f"  verified  checksum: {verified['checksum']}; integrity_check ok; {content}; "
              f"{common.human_bytes(verified['size_bytes'])}")
        if database["kept"]:
            print("  kept      " + "\n            ".join(database["kept"]))
    for path in result["untouched"]:
        print(f"Left as it is: {path} (not in this backup)")
    for item in result["config_files"]:
        print(f"  config    {item['file']}" + (f" (previous kept as {item['kept']})" if item["kept"] else ""))
    print("To undo, with DevFlow stopped (this discards what it wrote since the restore):")
    for command in result["undo"]:
        print(f"  {command}")
    if "restart_command" in result:
        if result["restart_error"]:
            print(f"Restart FAILED: {result['restart_error']}; start DevFlow by hand")
        else:
            print(f"Restarted DevFlow with: {result['restart_command']}")
    elif result["stopped"]:
        print("DevFlow was stopped and not restarted: start it again (e.g. as it ran above), "
              "or pass --restart-command next time.")


# --- helpers ------------------------------------------------------------------------

def _unused(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`...: a name no earlier restore's kept files use (two in one second)."""
    candidate, n = path, 1
    while any(Path(f"{candidate}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _keep(db: Path, kept_db: Path) -> None:
    """Keep the current database under a new name without a moment where `db` is missing."""
    try:
        os.link(db, kept_db)
    except OSError:
        shutil.copy2(db, kept_db)


def _match_owner(new: Path, old: Path) -> None:
    """The restored file gets the old one's mode and owner, so DevFlow can still write it."""
    try:
        stat = old.stat()
    except OSError:
        return
    os.chmod(new, stat.st_mode & 0o7777)
    try:
        os.chown(new, stat.st_uid, stat.st_gid)
    except PermissionError:
        pass


def _how_it_ran(item: target.Found) -> str:
    try:
        cwd = item.process.cwd()
        return f"cd {shlex.quote(cwd)} && {shlex.join(item.process.cmdline())}"
    except Exception:  # psutil.Error, or a process that vanished: only a hint is lost
        return "?"

