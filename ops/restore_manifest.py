"""What `restore` takes from a backup's manifest, which anyone who can write the backup folder controls.

`backup.read_manifest` only tells a folder of ours from any other (listing and
retention need no more). Restore acts on the manifest, so it checks all of it
first, every key it reads and every file entry, and refuses a malformed one
before anything changes: a check halfway through the swap would leave the
databases replaced and the config files not. A file the manifest names is read
only if it resolves inside the backup folder (no `../`, no absolute path, no
symlink leading out), and a config file goes back only to a path the local
configuration backs up, never to the path the manifest records.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from devflow_monitor.ops import backup, common

SHA256 = re.compile(r"[0-9a-f]{64}")
FILE_ROLES = ("config", "log")


def check(folder: Path, manifest: dict) -> None:
    """Raise OpsError in one line unless every database and file entry of the manifest is well formed."""
    found = problem(manifest)
    if found:
        raise common.OpsError(f"{folder / backup.MANIFEST} is malformed ({found}): nothing was changed")


def problem(manifest: dict) -> str | None:
    """The first thing wrong with the manifest's databases and files, or None."""
    # "database" is the main database's entry, in every backup; "databases" lists them all where the
    # backup copied more than the main one.
    found = _entry_problem(manifest.get("database"), "database", database=True)
    if found:
        return found
    if "databases" in manifest:
        databases = manifest["databases"]
        if not isinstance(databases, list) or not databases:
            return "databases is not a non-empty list"
        roles = set()
        for index, entry in enumerate(databases):
            found = _entry_problem(entry, f"databases[{index}]", database=True)
            if found:
                return found
            if entry.get("role", "main") in roles:
                return f"databases[{index}] repeats the role {entry.get('role', 'main')!r}"
            roles.add(entry.get("role", "main"))
    files = manifest.get("files", [])
    if not isinstance(files, list):
        return "files is not a list"
    for index, entry in enumerate(files):
        found = _entry_problem(entry, f"files[{index}]", database=False)
        if found:
            return found
    return None


def _entry_problem(entry, name: str, *, database: bool) -> str | None:
    if entry is None:
        return f"{name} is missing"
    if not isinstance(entry, dict):
        return f"{name} is not an object"
    role = entry.get("role", "main" if database else None)
    if not isinstance(role, str) or not role or (not database and role not in FILE_ROLES):
        return f"{name} has no valid role"
    file = entry.get("file")
    if not isinstance(file, str) or not _relative_inside(file) or (database and "/" in file):
        return f"{name} has no valid file (a name inside the backup folder)"
    size = entry.get("size_bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"{name} has no valid size_bytes"
    if not isinstance(entry.get("sha256"), str) or not SHA256.fullmatch(entry["sha256"]):
        return f"{name} has no valid sha256"
    if not database and (not isinstance(entry.get("source"), str) or not os.path.isabs(entry["source"])):
        return f"{name} has no valid source (an absolute path)"
    return None


def _relative_inside(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and "\x00" not in name and \
        all(part not in ("..", ".") for part in parts)


def inside(folder: Path, name: str) -> Path:
    """The backup's file `name`, resolved (symlinks followed) and still inside `folder`; OpsError otherwise."""
    root = folder.resolve()
    path = (root / name).resolve()
    if path == root or not path.is_relative_to(root):
        raise common.OpsError(f"{folder / name} leads outside the backup folder ({path}): nothing was changed")
    return path


def config_destinations(folder: Path, manifest: dict, allowed: list[Path]) -> list[tuple[Path, Path]]:
    """Each config file of the backup as (verified copy, destination), the destination being the one of
    `allowed` (what the local configuration backs up) that the entry was copied from."""
    by_path = {path.resolve(): path.resolve() for path in allowed}
    planned = []
    for entry in manifest.get("files", []):
        if entry["role"] != "config":
            continue
        destination = by_path.get(Path(os.path.normpath(entry["source"])))
        if destination is None:
            raise common.OpsError(f"the backup's config file {entry['source']} is not one this configuration "
                                  "backs up (its config file, .env files, servers.json or --include): "
                                  "nothing was changed")
        copy = inside(folder, entry["file"])
        if not copy.is_file() or common.sha256_file(copy) != entry["sha256"]:
            raise common.OpsError(f"config file {folder / entry['file']} is missing or fails its checksum: "
                                  "nothing was changed")
        planned.append((copy, destination))
    return planned
