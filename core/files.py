"""Files the daemon and the operator commands write: whole or not at all, and durable once written."""

from __future__ import annotations

import json
import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's metadata to disk (a rename is durable only after this)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data, *, indent: int | None = 2) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one.

    `indent=None` writes it compact (state files rewritten every few seconds).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=indent, separators=None if indent else (",", ":"))
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)
