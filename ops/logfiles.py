"""DevFlow's log files as the operator commands need them: which exist, their last lines, their
rotated copies.

Error records are recognised by `core.logformat`, the classifier the logs
collector counts with, so doctor and the exporter agree: by the record's own
level field in every format of docs/devflow.md, never by grepping for "ERROR" anywhere
(which counts "0 errors" and misses `"severity":"error"`); a multi-line dump, an
error with its git text and stack, and a Node crash each count once.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from devflow_monitor.core.logformat import LevelCounter, exception_line, rotated_from


def configured_files(patterns: list[str]) -> tuple[list[Path], list[str]]:
    """The log files the configuration names that exist, and the patterns that matched nothing."""
    found, missing = [], []
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        matches = sorted(glob.glob(expanded)) if glob.has_magic(expanded) else (
            [expanded] if os.path.isfile(expanded) else [])
        matches = [m for m in matches if os.path.isfile(m)]
        if matches:
            found.extend(Path(m) for m in matches if Path(m) not in found)
        else:
            missing.append(pattern)
    return found, missing


def error_records(lines: list[str], error_levels: frozenset[str]) -> list[str]:
    """The first line of each record of one of `error_levels` (the settings' app.error_levels); of a Node
    crash, `crash: ` and the line that names its exception, which says more than the script's path.

    The lines are read together: a crash or an error's text spans several.
    """
    data = b"".join(b"\n" + line.encode("utf-8", "replace") for line in lines) + b"\n"
    found = []
    for record in LevelCounter().records(data, 0, len(data)):
        if record.level in error_levels:
            exception = exception_line(data[record.start:record.end]) if record.crash else None
            first = b"crash: " + exception if exception else data[record.start:data.index(b"\n", record.start)]
            found.append(first.decode("utf-8", "replace"))
    return found


def tail_lines(path: Path, count: int, max_bytes: int = 4 << 20) -> list[str]:
    """The last `count` lines of a file, reading backwards (never more than `max_bytes`)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        end = position = handle.tell()
        data = b""
        while position > 0 and data.count(b"\n") <= count and end - position < max_bytes:
            step = min(65536, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode("utf-8", errors="replace").splitlines()
    if position > 0 and lines:
        lines = lines[1:]  # the first line read may be cut in the middle
    return lines[-count:] if count else []


def rotated_copies(path: Path) -> list[Path]:
    """Rotated copies of a log file beside it (server.log.1, server.log.2.gz, server.log-20250802.gz)."""
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    copies = []
    for entry in entries:
        if rotated_from(entry.name) == path.name and entry.is_file(follow_symlinks=False):
            copies.append(Path(entry.path))
    return sorted(copies)
