"""Generated files kept in the repository (rules, dashboards, the mixin's inputs, docs/metrics.md).

They are committed so reviewers and tools see exactly what the code produces; each generator's
`--check` says which are stale so a test fails when code changed without them.
"""

from __future__ import annotations

import sys
from pathlib import Path


def write(files: dict[str, str], directory: Path) -> None:
    """Write `files` (path relative to `directory` -> text)."""
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def stale(files: dict[str, str], directory: Path, orphans: str | None = None) -> list[str]:
    """Names whose file is missing or differs, then files matching the glob `orphans` that `files` lacks."""
    found = [name for name, text in files.items()
             if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text]
    if orphans:
        found += sorted(p.relative_to(directory).as_posix() for p in directory.glob(orphans)
                        if p.relative_to(directory).as_posix() not in files)
    return found


def sync(files: dict[str, str], directory: Path, *, check: bool, remake: str, orphans: str | None = None) -> int:
    """Bring `directory` in line with `files`, or with `check` only name what differs (exit status 1).

    Files matching `orphans` that no longer belong to the output are removed: a renamed dashboard
    would otherwise stay loaded in Grafana.
    """
    outdated = stale(files, directory, orphans)
    if check:
        for name in outdated:
            print(f"stale: {directory / name}", file=sys.stderr)
        if outdated:
            print(f"run `{remake}` and commit the result", file=sys.stderr)
        return 1 if outdated else 0
    write({name: files[name] for name in outdated if name in files}, directory)
    for name in outdated:
        if name not in files:
            (directory / name).unlink()
        print(f"{'wrote' if name in files else 'removed'} {directory / name}")
    if not outdated:
        print(f"{directory}: up to date")
    return 0
