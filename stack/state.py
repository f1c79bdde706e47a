"""The native state folder: one record per started process (`run/NAME.json`) and the manifest (`stack.json`).

A record holds the PID and start time, so the process it names is ours only while both match.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil

from devflow_monitor.stack.options import ORDER, StackOptions


def record_path(state: Path, name: str) -> Path:
    """Where the record of the component called name lives."""
    return state / "run" / f"{name}.json"


def read_records(state: Path) -> list[dict]:
    """Every readable record of a known component, running or not."""
    records = []
    for path in sorted((state / "run").glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("name") in ORDER:
            records.append(record)
    return records


def running_records(state: Path) -> list[dict]:
    """The records whose process still runs."""
    return [record for record in read_records(state) if recorded_process(record) is not None]


def write_manifest(settings: StackOptions, mode: str, urls: dict[str, str], skipped: dict[str, str],
                   extra: dict | None = None) -> None:
    """Write stack.json: the mode, whether it is a demo, the URLs, what was skipped and the DevFlow watched."""
    settings.state.mkdir(parents=True, exist_ok=True)
    manifest = {"mode": mode, "demo": settings.demo, "state": str(settings.state), "urls": urls,
                "skipped": skipped, **(extra or {})}
    if settings.target:
        manifest["target"] = settings.target.as_dict()
    (settings.state / "stack.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def read_manifest(state: Path) -> dict | None:
    """stack.json as written by write_manifest, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((state / "stack.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def forget(state: Path) -> None:
    """Remove the manifest and every record; the rendered configs, data and logs stay."""
    (state / "stack.json").unlink(missing_ok=True)
    for path in (state / "run").glob("*.json"):
        path.unlink()


def recorded_process(record: dict) -> psutil.Process | None:
    """The live process a record describes, or None: a reused PID (other start time) is not ours."""
    try:
        proc = psutil.Process(record["pid"])
        if abs(proc.create_time() - record["create_time"]) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None
