"""`devflow-monitor doctor`: the guide's troubleshooting script (section 6.1) as checks with verdicts.

Each check ends ok, warn or fail and, when not ok, says what to do next. The
exit status is what scripts need: 0 all ok, 1 warnings only, 2 any failure.
Unlike the guide's script it never matches itself (`pgrep -f devflow`), checks
the database it is configured for, counts errors by the level field, and also
checks the parts that watch DevFlow (exporter, Prometheus, Alertmanager).

Its limits are the alert settings' (core/settings.py, or the file given with
`--settings`), so doctor and the alerts agree: memory is DevFlowHighMemoryUsage's,
the log check is DevFlowErrorBurst's (more than 10 errors in 100 lines), free disk
fails below DevFlowDiskSpaceLow and warns below `checklist.disk_free_ratio`, the
WAL warns above `checklist.wal_size_bytes`. A flag given on the command line wins.
The port is checked only where a listener is expected (`app.expect_listener`; the
public build serves no HTTP). A server that is not running fails in daemon mode
(`devflow.mode`) and is ok in on_demand mode (its MCP client is closed), where
doctor warns only when the exporter saw its last exit be a crash. The events check is DevFlowEventsNotPersisted's
condition (core/persistence.py), judged from the exporter's metrics, or from
Prometheus with `--prometheus`, as `/status` and the terminal overview judge it:
it warns while the alert would be pending and fails once it would fire. Its
runbook link is on the exporter doctor checks, unless `runbook_url` is set.
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import textwrap
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from devflow_monitor.core import devflow_db, persistence
from devflow_monitor.core.commands import add_command, config_from_args
from devflow_monitor.core.config import Config
from devflow_monitor.core.settings import Settings, SettingsError, load
from devflow_monitor.ops import common, logfiles, target
from devflow_monitor.ops.check import STATUS_ORDER, Check
from devflow_monitor.ops.dashboard_sources import ExporterSource, PrometheusSource
from devflow_monitor.ops.dashboard_views import persistence_verdict
from devflow_monitor.ops.doctor_services import check_alertmanager, check_exporter, check_prometheus

CHECKS = ("process", "port", "database", "wal", "disk", "logs", "events", "exporter", "prometheus",
          "alertmanager")
MIB = 1024 * 1024


def register(subparsers) -> None:
    parser = add_command(subparsers, "doctor", run, help="check DevFlow and its monitoring, with recommended actions")
    parser.add_argument("--settings", metavar="FILE",
                        help="YAML or Jsonnet alert settings whose thresholds doctor checks against (default: built in)")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="PRAGMA quick_check instead of the full integrity_check (much faster on large DBs)")
    parser.add_argument("--skip", action="append", default=[], choices=CHECKS, metavar="CHECK",
                        help=f"skip a check (repeatable): {', '.join(CHECKS)}")
    parser.add_argument("--exporter-url", metavar="URL",
                        help="exporter health URL (default: /health on --web.listen-address, "
                             "http://127.0.0.1:9764/health)")
    parser.add_argument("--prometheus", metavar="URL", help="Prometheus base URL to check (e.g. http://127.0.0.1:9090)")
    parser.add_argument("--alertmanager", metavar="URL", help="Alertmanager base URL to check")
    parser.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="HTTP timeout (default 3)")
    # These override one setting for one run; their defaults come from the settings.
    parser.add_argument("--log-lines", type=int, default=100, metavar="N",
                        help="how many of each log file's last lines to scan for errors (default 100)")
    parser.add_argument("--log-errors-fail", type=int, metavar="N",
                        help="fail when one file has more error lines than this in its last lines "
                             "(default: DevFlowErrorBurst's min_errors, 10)")
    parser.add_argument("--min-free-mb", type=float, metavar="MB",
                        help="fail when the database's filesystem has less free space "
                             "(default: checklist.disk_free_min_bytes, 1024)")
    parser.add_argument("--disk-warn-percent", type=float, metavar="PCT",
                        help="warn when less than this share of the filesystem is free "
                             "(default: checklist.disk_free_ratio, 10)")
    parser.add_argument("--wal-warn-mb", type=float, metavar="MB",
                        help="warn when the -wal file is larger (default: checklist.wal_size_bytes, 64)")
    parser.add_argument("--memory-warn-percent", type=float, metavar="PCT",
                        help="warn when DevFlow's RSS exceeds this share of the machine's memory "
                             "(default: DevFlowHighMemoryUsage's threshold, 50)")


def run(args) -> int:
    """Check the DevFlow process, its port, database (integrity, WAL), disk space and recent log errors, and whether
    the exporter, Prometheus and Alertmanager answer. Exit status: 0 all ok, 1 warnings, 2 failures."""
    config = config_from_args(args)
    try:
        settings = load(args.settings)
        limits = Limits.from_settings(settings, args)
    except SettingsError as exc:
        return common.fail("doctor", str(exc))
    if args.log_lines < 1 or args.timeout <= 0:
        return common.fail("doctor", "--log-lines and --timeout must be positive")
    checks = diagnose(config, args, limits, settings)
    worst = max((STATUS_ORDER[c.status] for c in checks), default=0)
    if args.json:
        common.print_json({"database": str(config.devflow.database_path), "exit_code": worst,
                           "checks": [asdict(c) for c in checks]})
    else:
        print_report(config, checks)
    return worst


@dataclass
class Limits:
    """Where each check turns warn or fail: the settings' values, unless a flag overrides one."""
    memory_warn_percent: float
    wal_warn_bytes: float
    min_free_bytes: float
    disk_fail_percent: float
    disk_warn_percent: float
    log_errors_fail: int

    @classmethod
    def from_settings(cls, settings: Settings, args) -> Limits:
        alerts, checklist = settings.alerts, settings.checklist

        def flag(name, default):
            value = getattr(args, name)
            return default if value is None else value

        return cls(
            memory_warn_percent=flag("memory_warn_percent", 100 * alerts["DevFlowHighMemoryUsage"].threshold),
            wal_warn_bytes=flag("wal_warn_mb", checklist.wal_size_bytes / MIB) * MIB,
            min_free_bytes=flag("min_free_mb", checklist.disk_free_min_bytes / MIB) * MIB,
            disk_fail_percent=100 * alerts["DevFlowDiskSpaceLow"].threshold,
            disk_warn_percent=flag("disk_warn_percent", 100 * checklist.disk_free_ratio),
            # The guide's script and the alert agree: more than 10 errors in the last 100 lines.
            log_errors_fail=flag("log_errors_fail", alerts["DevFlowErrorBurst"].min_errors),
        )


def diagnose(config: Config, args, limits: Limits, settings: Settings) -> list[Check]:
    db = config.devflow.database_path
    runners = {
        "process": lambda: check_process(config, limits.memory_warn_percent, _exporter_url(config, args, "/status"),
                                         args.timeout),
        "port": lambda: check_port(config.devflow.port, settings.app.expect_listener),
        "database": lambda: check_database(db, args.quick),
        "wal": lambda: check_wal(db, limits.wal_warn_bytes),
        "disk": lambda: check_disk(db, limits.min_free_bytes, limits.disk_fail_percent, limits.disk_warn_percent),
        "logs": lambda: check_logs(config.devflow.log_files, args.log_lines, limits.log_errors_fail,
                                   settings.app.error_level_set),
        "events": lambda: check_events(_metrics_source(config, args, settings),
                                       settings, _runbook_link(config, args, settings, persistence.ALERT)),
        "exporter": lambda: check_exporter(
            args.exporter_url or common.local_url(config.web.listen_address, "/health"), args.timeout),
        "prometheus": lambda: check_prometheus(args.prometheus, args.timeout, settings),
        "alertmanager": lambda: check_alertmanager(args.alertmanager, args.timeout),
    }
    checks = []
    for name, runner in runners.items():
        if name in args.skip:
            checks.append(Check(name, "skip", "skipped (--skip)"))
            continue
        try:
            checks.append(runner())
        except Exception as exc:  # a broken check is reported, never a traceback instead of a report
            checks.append(Check(name, "fail", f"check could not run: {type(exc).__name__}: {exc}",
                                "report this as a bug in devflow-monitor doctor"))
    return checks


# --- the checks -----------------------------------------------------------------------

def check_process(config: Config, memory_warn_percent: float, status_url: str | None = None,
                  timeout: float = 3.0) -> Check:
    found = target.find_devflow(config)
    criteria = _criteria(config)
    if not found:
        return _not_running(config, criteria, _last_exit(status_url, timeout))
    main = found[0]
    try:
        with main.process.oneshot():
            rss = main.process.memory_info().rss
            uptime = time.time() - main.process.create_time()
            threads = main.process.num_threads()
    except psutil.Error as exc:
        return Check("process", "warn", f"{main.describe()}; cannot read its details: {exc}",
                     "run doctor as the user DevFlow runs as")
    share = 100.0 * rss / psutil.virtual_memory().total
    details = {"pid": main.pid, "found_by": main.how, "rss_bytes": rss, "uptime_seconds": round(uptime),
               "threads": threads, "memory_percent": round(share, 2), "matches": [f.pid for f in found]}
    summary = (f"PID {main.pid} (by {main.how}), up {common.human_duration(uptime)}, "
               f"RSS {common.human_bytes(rss)} ({share:.1f}% of memory), {threads} threads")
    if share > memory_warn_percent:
        return Check("process", "warn", summary + f": above {memory_warn_percent:g}% of the machine",
                     "watch devflow_process_resident_memory_bytes for growth (a leak); restart DevFlow "
                     "during a quiet moment", details)
    if len(found) > 1:
        others = ", ".join(str(f.pid) for f in found[1:])
        return Check("process", "warn", f"{len(found)} processes match; reporting the oldest: {summary}; "
                                        f"others: PID {others}",
                     "set --devflow.workdir to the watched server's directory (the public build), stop the "
                     "extra servers, or narrow --devflow.process-pattern / set --devflow.pidfile", details)
    return Check("process", "ok", summary, details=details)


def _not_running(config: Config, criteria: str, last_exit: dict | None) -> Check:
    """No server: normal in on_demand mode unless its last exit was a crash, an outage in daemon mode."""
    details = {"criteria": criteria, "mode": config.devflow.mode, "last_exit": last_exit}
    exit_text = ""
    if last_exit:
        exit_text = f"; last exit: {last_exit['reason']} at {last_exit['at']}"
    if config.devflow.mode == "on_demand":
        summary = "not running (on-demand)" + exit_text
        if last_exit and last_exit["reason"] == "crash":
            return Check("process", "warn", summary,
                         "read the end of DevFlow's stderr log for the crash (--devflow.log-files); its MCP client "
                         "starts it again when it next opens", details)
        return Check("process", "ok", summary, details=details)
    stale = target.stale_pidfile(config)
    details["stale_pid"] = stale
    summary = f"no DevFlow process found ({criteria})"
    if stale is not None:
        summary = f"pidfile {config.devflow.pidfile} names PID {stale}, which is not running"
    return Check("process", "fail", summary + exit_text,
                 "start DevFlow: `launchctl load ~/Library/LaunchAgents/com.devflow.monitor.plist` (macOS), "
                 "`systemctl start devflow-monitor` (Linux); then check its log for why it stopped. If an MCP "
                 "client (an editor) starts it over stdio, its absence is normal: set --devflow.mode on_demand",
                 details)


def _last_exit(status_url: str | None, timeout: float) -> dict | None:
    """The server's last exit as the exporter's /status saw it; None when the exporter cannot say."""
    if not status_url:
        return None
    try:
        status, body = common.http_get(status_url, timeout)
        last = json.loads(body).get("last_exit") if status == 200 else None
        datetime.fromisoformat(last["at"])
        return {"reason": str(last["reason"]), "at": last["at"]}
    except (*common.FAILED, ValueError, TypeError, KeyError, AttributeError):
        return None


def check_port(port: int, expected: bool) -> Check:
    details = {"port": port}
    if not expected:
        return Check("port", "skip", "no listener expected (app.expect_listener: false; the public build serves "
                                     "no HTTP)", details=details)
    if _accepts(("127.0.0.1", port)) or _listening(port):
        return Check("port", "ok", f"port {port} is listening", details=details)
    return Check("port", "fail", f"nothing listens on port {port}",
                 "check DevFlow's startup log for the listen error; if this build serves no HTTP (the public "
                 "build), say so in the settings (app: {expect_listener: false}) instead", details)


def check_database(db: Path, quick: bool) -> Check:
    pragma = "quick_check" if quick else "integrity_check"
    details: dict = {"path": str(db), "check": pragma}
    if not db.exists():
        return Check("database", "fail", f"database not found: {db}",
                     "check --devflow.database / --devflow.workdir (the public build uses $CWD/data/devflow.db); "
                     "restore the latest backup: devflow-monitor restore BACKUP_DIR", details)
    started = time.perf_counter()
    try:
        conn = devflow_db.connect_readonly(db, timeout=2.0)
        try:
            errors = devflow_db.integrity_errors(conn, quick=quick)
            tables = common.table_names(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        message = str(exc)
        if "locked" in message or "busy" in message:
            return Check("database", "warn", f"database is locked ({message}); the check could not run",
                         "run doctor again; if it stays locked, look for a stuck writer (lsof on the file)",
                         details)
        if "not a database" in message:
            return Check("database", "fail", f"{db} is not a SQLite database ({message})",
                         "the file was overwritten or truncated: restore the latest backup with "
                         "devflow-monitor restore BACKUP_DIR", details)
        return Check("database", "fail", f"database unreadable: {message}",
                     "stop DevFlow and restore the latest backup: devflow-monitor restore BACKUP_DIR", details)
    elapsed = time.perf_counter() - started
    size = common.on_disk_size(db)
    details.update(size_bytes=size, duration_seconds=round(elapsed, 3), errors=errors)
    if errors:
        return Check("database", "fail", f"{pragma} found problems: {errors[0]}",
                     "stop DevFlow, keep the damaged file for analysis and restore the latest backup "
                     "(devflow-monitor restore BACKUP_DIR)", details)
    if "events" not in tables:
        return Check("database", "warn", f"{pragma} ok but there is no events table in {db}",
                     "is this DevFlow's database? check --devflow.database / --devflow.workdir", details)
    return Check("database", "ok",
                 f"{pragma} ok, {common.human_bytes(size)} on disk ({common.human_duration(elapsed)})",
                 details=details)


def check_wal(db: Path, warn_bytes: float) -> Check:
    wal = Path(f"{db}-wal")
    if not wal.exists():
        return Check("wal", "ok", "no -wal file (clean shutdown or not in WAL mode)")
    size = wal.stat().st_size
    details = {"path": str(wal), "size_bytes": size}
    if size > warn_bytes:
        return Check("wal", "warn", f"-wal file is {common.human_bytes(size)} "
                                    f"(over {common.human_bytes(warn_bytes)})",
                     "a long-running reader holds back checkpoints, or DevFlow exited without checkpointing; "
                     f"with DevFlow stopped run: sqlite3 {db} 'PRAGMA wal_checkpoint(TRUNCATE)'", details)
    return Check("wal", "ok", f"-wal file is {common.human_bytes(size)}", details=details)


def check_disk(db: Path, min_free: float, fail_percent: float, warn_percent: float) -> Check:
    free, total = common.disk_usage(db)
    db_size = common.on_disk_size(db) if db.exists() else 0
    percent = 100.0 * free / total if total else 0.0
    details = {"free_bytes": free, "total_bytes": total, "database_bytes": db_size}
    summary = f"{common.human_bytes(free)} free of {common.human_bytes(total)} ({percent:.0f}%)"
    if free < min_free or percent < fail_percent:
        limit = common.human_bytes(min_free) if free < min_free else f"{fail_percent:g}%"
        return Check("disk", "fail", summary + f": below the {limit} minimum",
                     "free space now (old backups, rotated logs: devflow-monitor maintain), or move the data; "
                     "SQLite fails writes when the disk is full", details)
    if percent < warn_percent or free < 2 * db_size:
        return Check("disk", "warn", summary + ("; less than twice the database, VACUUM cannot run"
                                                if free < 2 * db_size else f"; under {warn_percent:g}% free"),
                     "plan space: devflow-monitor maintain deletes old events and rotated logs", details)
    return Check("disk", "ok", summary, details=details)


def check_logs(patterns: list[str], lines: int, fail_above: int, error_levels: frozenset[str]) -> Check:
    files, missing = logfiles.configured_files(patterns)
    if not files:
        return Check("logs", "warn", f"none of the configured log files exist ({', '.join(patterns)})",
                     "point --devflow.log-files at DevFlow's logs (launchd: /tmp/devflow-monitor.err; "
                     "systemd: `journalctl -u devflow-monitor`, no files)", {"missing": missing})
    per_file, unreadable, last_error = {}, [], None
    for path in files:
        try:
            tail = logfiles.tail_lines(path, lines)
        except OSError as exc:
            unreadable.append(f"{path}: {exc.strerror or exc}")
            continue
        errors = logfiles.error_records(tail, error_levels)
        per_file[str(path)] = len(errors)
        if errors:
            last_error = (str(path), errors[-1])
    details = {"errors_per_file": per_file, "lines_scanned_per_file": lines, "missing": missing,
               "unreadable": unreadable, "last_error": last_error}
    total = sum(per_file.values())
    summary = f"{total} error lines in the last {lines} lines of {len(per_file)} file(s)"
    worst_file = max(per_file, key=per_file.get) if per_file else None
    if worst_file and per_file[worst_file] > fail_above:
        return Check("logs", "fail", f"{summary}; {per_file[worst_file]} in {worst_file}",
                     f"read them: grep -E '\\[?(ERROR|FATAL)' {worst_file} | tail -20; latest: "
                     f"{_shorten(last_error[1])}", details)
    if total or unreadable:
        reason = f"; latest: {_shorten(last_error[1])}" if last_error else ""
        if unreadable:
            reason += f"; cannot read {len(unreadable)} file(s): {unreadable[0]}"
        return Check("logs", "warn", summary + reason,
                     f"look at the context: tail -50 {last_error[0]}" if last_error
                     else "run doctor as a user that can read the logs", details)
    return Check("logs", "ok", summary, details=details)


def check_events(source, settings: Settings, runbook: str) -> Check:
    """Fails when DevFlowEventsNotPersisted would fire and warns while it would be pending, as the alert waits
    its `for`; `runbook` is the link to that alert's section."""
    details = {"source": source.url}
    try:
        verdict = persistence_verdict(source.sample(), settings)
    except common.FAILED as exc:
        return Check("events", "skip", f"cannot judge without the exporter's metrics ({exc})", details=details)
    details["state"] = verdict.state
    details["held_seconds"] = verdict.held_seconds
    action = ("DevFlow logs what it sees but its database gets nothing; the public build's known defect "
              f"(restarting does not help) or a write problem: follow {runbook}")
    if verdict.state == persistence.NOT_PERSISTING:
        return Check("events", "fail", verdict.summary, action, details)
    if verdict.state == persistence.PENDING:
        hold = persistence.Window.from_settings(settings).hold
        return Check("events", "warn", verdict.summary,
                     f"{persistence.ALERT} fires if it lasts {persistence.held_text(hold)}: run doctor again "
                     f"then; the public build never stores events (docs: {runbook})", details)
    if verdict.state == persistence.UNKNOWN:
        return Check("events", "skip", f"cannot judge: {verdict.summary}", details=details)
    return Check("events", "ok", verdict.summary, details=details)


LABELS = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def print_report(config: Config, checks: list[Check]) -> None:
    color = common.use_color()
    columns = shutil.get_terminal_size((100, 24)).columns
    width = max(len(c.name) for c in checks)
    print(f"DevFlow doctor: {config.devflow.database_path}")
    print()
    for check in checks:
        label = common.paint(f"{LABELS[check.status]:<4}", check.status if check.status != "skip" else "dim", color)
        print(f"  {label}  {check.name:<{width}}  {check.summary}")
        if check.action and check.status in ("warn", "fail"):
            indent = " " * (10 + width)
            print(textwrap.fill(check.action, width=max(60, columns), initial_indent=indent + "-> ",
                                subsequent_indent=indent + "   ", break_on_hyphens=False, break_long_words=False))
    counts = {s: sum(1 for c in checks if c.status == s) for s in ("fail", "warn", "ok")}
    print()
    warnings = "warning" if counts["warn"] == 1 else "warnings"
    print(f"{counts['fail']} failed, {counts['warn']} {warnings}, {counts['ok']} ok.")


# --- helpers ------------------------------------------------------------------------

def _criteria(config: Config) -> str:
    devflow = config.devflow
    if devflow.pidfile:
        return f"pidfile {devflow.pidfile}"
    where = f" running in {devflow.workdir}" if devflow.workdir else ""
    if devflow.match_port:
        return f"command line /{devflow.process_pattern}/ or port {devflow.port}{where}"
    return f"command line /{devflow.process_pattern}/{where}"


def _exporter_url(config: Config, args, path: str) -> str:
    """`path` on the exporter: at --exporter-url's address when given, else on --web.listen-address."""
    if args.exporter_url:
        return urlsplit(args.exporter_url)._replace(path=path, query="").geturl()
    return common.local_url(config.web.listen_address, path)


def _runbook_link(config: Config, args, settings: Settings, alertname: str) -> str:
    """The alert's runbook section on the exporter doctor checks (--exporter-url, else --web.listen-address)."""
    if args.exporter_url:
        exporter = urlsplit(args.exporter_url)._replace(path="", query="", fragment="").geturl()
    else:
        exporter = common.local_url(config.web.listen_address, "")
    return settings.runbook_on(alertname, exporter)


def _metrics_source(config: Config, args, settings: Settings):
    """Prometheus when given, else the exporter's metrics at --exporter-url's address."""
    if args.prometheus:
        return PrometheusSource(args.prometheus, settings.selector, args.timeout,
                                persistence.Window.from_settings(settings).active)
    if args.exporter_url:
        url = urlsplit(args.exporter_url)._replace(path=config.web.telemetry_path, query="").geturl()
    else:
        url = common.local_url(config.web.listen_address, config.web.telemetry_path)
    return ExporterSource(url, args.timeout)


def _accepts(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=0.5):
            return True
    except OSError:
        return False


def _listening(port: int) -> bool:
    """A listener on another interface than loopback (needs the kernel's socket table)."""
    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for c in psutil.net_connections(kind="tcp"))
    except psutil.Error:
        return False


def _shorten(line: str, width: int = 100) -> str:
    line = line.strip()
    return line if len(line) <= width else line[:width - 3] + "..."
