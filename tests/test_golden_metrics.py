"""A fixed DevFlow directory gives the committed exposition, tests/golden/metrics.txt: every family's HELP,
TYPE, labels and value, so any change to what users scrape shows in review as a diff of that file.

Values that depend on the machine or the moment (durations, free disk, file times, the Python version, the
exporter's own process_* and python_* series) are
written as `<varies>`; paths under the test's directory as `$DIR`, and DevFlow's port (a free one) as `$PORT`. After a deliberate change:
`DEVFLOW_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_metrics.py`.
"""

from __future__ import annotations

import os
import re

from conftest import ROOT, free_port, http_get, wait_until
from devflow_monitor.core.devflow_db import create_database, insert_event

GOLDEN = ROOT / "tests" / "golden" / "metrics.txt"
START_MS = 1_790_000_000_000  # 2026-09-21: events at fixed times, so the oldest/newest series are fixed too
EVENTS = [("file:changed", "synced"), ("file:changed", "pending"), ("git:commit", "synced"),
          ("test:run", "failed"), ("file:changed", "synced"), ("git:commit", "pending")]
LOG = """\
[INFO][FileMonitor] Monitor started
[2026-11-26T11:37:33.687Z] [INFO] [ProjectManager] project opened
[WARN][GitMonitor] git status took 1200 ms
2025-08-02 14:00:01 ERROR database is locked
{"timestamp": "2026-11-26T11:38:00Z", "eventType": "sync", "severity": "error", "category": "db"}
Running migration 1...
[DEBUG] File event: file:change {
  "path": "src/a.ts"
}
{"jsonrpc":"2.0","id":1,"result":{}}
"""
ACCESS = ('127.0.0.1 - - [26/Nov/2026:11:37:33 +0000] "GET /health HTTP/1.1" 200 15 0.004\n'
          '127.0.0.1 - - [26/Nov/2026:11:37:34 +0000] "GET /status HTTP/1.1" 503 15 0.250\n')
# Families whose values (not names or labels) depend on the machine or the moment.
VARYING = {"devflow_exporter_collector_duration_seconds", "devflow_db_filesystem_free_bytes",
           "devflow_db_filesystem_size_bytes", "devflow_db_counts_refresh_duration_seconds",
           "devflow_db_counts_refresh_timestamp_seconds", "devflow_db_integrity_check_duration_seconds",
           "devflow_db_integrity_check_timestamp_seconds", "devflow_log_file_modified_timestamp_seconds",
           "devflow_log_last_error_timestamp_seconds"}


def devflow_directory(root):
    conn = create_database(root / "data" / "devflow.db")
    for n, (kind, status) in enumerate(EVENTS):
        insert_event(conn, kind, START_MS + n * 60_000, sync_status=status)
    conn.commit()
    conn.close()
    (root / "logs").mkdir()
    (root / "logs" / "server.log").write_text(LOG)
    (root / "logs" / "access.log").write_text(ACCESS)


def normalised(text: str, root, port: int) -> str:
    lines = []
    for line in text.replace(str(root), "$DIR").replace(f'port="{port}"', 'port="$PORT"').splitlines():
        if not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)[0]
            family = re.sub(r"_(bucket|count|sum|total|created)$", "", name)
            # The exporter's own process_* and python_* series (prometheus_client's) describe this machine.
            if family in VARYING or name.endswith("_created") or not name.startswith("devflow_"):
                line = line.rsplit(" ", 1)[0] + " <varies>"
            line = re.sub(r'(version|major|minor|patchlevel|implementation)="[^"]*"', r'\1="<varies>"', line)
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_a_fixed_devflow_directory_gives_the_committed_exposition(tmp_path, start_exporter):
    devflow_directory(tmp_path)
    port = free_port()  # a port nothing listens on, wherever the test runs
    exporter = start_exporter(
        "--devflow.workdir", str(tmp_path), "--devflow.process-pattern", r"golden-test-matches-no-process-\d{12}",
        "--devflow.port", str(port),
        "--devflow.log-files", str(tmp_path / "logs" / "server.log"),
        settings={"devflow": {"access_log": str(tmp_path / "logs" / "access.log")},
                  "collectors": {"logs": {"enabled": True, "state_file": None}, "host": {"enabled": False}}})

    def settled() -> str | None:
        # The background counts and the integrity check arrive after the first scrapes: wait for both.
        text = normalised(http_get(exporter.url + "/metrics")[1], tmp_path, port)
        return text if "devflow_db_table_rows{" in text and "devflow_db_integrity_check_ok 1.0" in text else None

    actual = wait_until(settled, timeout=30, message="the database's background counts")
    if os.environ.get("DEVFLOW_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(actual)
    assert actual == GOLDEN.read_text(), "the exposition changed: review it, then update tests/golden/metrics.txt"
