"""The operations guide's `/status` JSON (section 1.1), filled from what the exporter observes.

The guide's shape is kept so its scripts and habits still work:
`{"status", "uptime", "version", "monitors", "database", "memory": {"used", "total"}}`
with memory in MB and uptime in seconds. Fields the exporter cannot observe
are `null` or `"unknown"`, never invented. `version` and `monitors` come from
the app's /status, or, from a server without one (the public build), from what
its logs say (its MCP initialize reply, its monitors' start and stop lines).

`status` is "down" when no server runs in daemon mode (devflow.mode; an outage)
and "not_running" in on_demand mode (its MCP client is closed: normal). Added
to the guide's fields: `mode`, `process` (its PID and how many processes match)
and `last_exit` (the latest exit the exporter saw, clean or crash, and when).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import psutil

from devflow_monitor.core import persistence
from devflow_monitor.exporter.collectors.probe import HEALTHY_WORDS

# What the guide's "database" field says for each state the database collector sees.
DATABASE_WORDS = {"ok": "connected", "missing": "missing", "locked": "locked", "corrupt": "corrupt",
                  "unreadable": "unreadable"}
MB = 1024 * 1024


def guide_status(collector_set) -> dict:
    """Call with the server's scrape lock held: it reads the database like a scrape does."""
    process = collector_set.get("process")
    database = collector_set.get("database")
    probe = collector_set.get("probe")
    logs = collector_set.get("logs")
    app = getattr(probe, "last_status", None) or {}

    found = process.current() if process else None
    proc = found[0] if found else None
    uptime = memory_used = None
    if found:
        sample = found[1]
        uptime = round(time.time() - sample["start_time"])
        memory_used = round(sample["rss"] / MB) if "rss" in sample else None
    db_scrape = database.watcher.read_scrape() if database else None
    db_state = db_scrape["state"] if db_scrape else None
    # DevFlowEventsNotPersisted's condition (the public build's defect): active, yet storing nothing. Degraded
    # only once the alert would fire; while it is pending, `events` says so and the status stays healthy.
    events = persistence.judge_collectors(collector_set.get("logs"), None if process is None else proc is not None,
                                          db_scrape, process_start=found[1].get("start_time") if found else None)
    version, monitors = _version_and_monitors(app, logs.app_facts() if logs else None,
                                              server_running=None if process is None else proc is not None)

    if proc is None and process is not None:
        status = "not_running" if collector_set.mode == "on_demand" else "down"
    elif (db_state not in (None, "ok") or app.get("status") not in (None, *HEALTHY_WORDS)
          or events.state == persistence.NOT_PERSISTING):
        status = "degraded"
    else:
        status = "healthy"
    body = {
        "status": status,
        "uptime": uptime,
        "version": version,
        "monitors": {name: monitors.get(name, "unknown") for name in ("file", "git", "test")},
        "database": _database_word(db_state, server_running=None if process is None else proc is not None),
        "memory": {"used": memory_used, "total": _app_memory_total(app)},
        "events": {"state": events.state, "summary": events.summary},
        "observed_by": "devflow-monitor exporter",
    }
    body.update(_process_fields(collector_set.mode, process, proc))
    return body


def _process_fields(mode: str, process, proc) -> dict:
    """The mode, which process is reported when several match, and the server's last exit."""
    fields: dict = {"mode": mode}
    if process is None:
        return fields
    matches = process.match_count()
    if proc is None:
        summary = "not running (on-demand)" if mode == "on_demand" else "no DevFlow process found"
    elif matches > 1:
        summary = f"{matches} processes match; reporting the oldest (PID {proc.pid})"
    else:
        summary = f"PID {proc.pid}"
    last = process.last_exit()
    fields["process"] = {"pid": proc.pid if proc else None, "matches": matches, "summary": summary}
    fields["last_exit"] = None if last is None else {
        "reason": last.reason, "at": datetime.fromtimestamp(last.at, timezone.utc).isoformat(timespec="seconds")}
    return fields


def _version_and_monitors(app: dict, facts, server_running: bool | None) -> tuple[str | None, dict]:
    """The app's own /status answer where it gave one; else what its logs said (logs.AppFacts), where a
    monitor's last "started" means nothing once the server is gone."""
    version = app.get("version") or (facts.version if facts else None)
    if isinstance(app.get("monitors"), dict):
        return version, app["monitors"]
    monitors = dict(facts.monitors) if facts else {}
    if server_running is False:
        monitors = {name: "stopped" for name in monitors}
    return version, monitors


def _database_word(db_state: str | None, server_running: bool | None) -> str:
    """The guide's "connected" means DevFlow holds the database open: a readable file with no server is not."""
    if db_state == "ok" and server_running is False:
        return "disconnected"
    return DATABASE_WORDS.get(db_state, "unknown")


def _app_memory_total(app: dict):
    """The app's own figure when its /status gives one, else the machine's memory (the most it can have)."""
    memory = app.get("memory")
    if isinstance(memory, dict) and isinstance(memory.get("total"), (int, float)):
        return memory["total"]
    return round(psutil.virtual_memory().total / MB)
