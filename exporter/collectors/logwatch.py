"""Wakes the log reader when a log, or a rotated copy of one, is created, renamed or deleted (inotify via watchdog).

Appends are not watched: IN_MODIFY fires for every line the app writes, and the
scrape reads what was appended anyway. Where inotify is unavailable (no
watchdog backend, watch limit reached), `must_poll` tells the reader to poll.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import re
import threading
from pathlib import Path

from devflow_monitor.core.logformat import rotated_from

log = logging.getLogger(__name__)


class DirectoryWatcher:
    """Watches the directory of each log pattern, once it exists, and sets `wake` when one of our files changes."""

    def __init__(self, patterns: list[str], wake: threading.Event, poll_seconds: float):
        self._patterns = patterns
        self._wake = wake
        self._poll = poll_seconds  # only for the warning: the reader polls this often without events
        self._matches = re.compile("|".join(fnmatch.translate(p) for p in patterns) or "(?!)")
        self._observer = None
        self._watched: set[str] = set()
        self.must_poll = False  # a directory (or all) without inotify: the reader polls
        self._warned: set[str] = set()

    def start(self) -> None:
        self._watched = set()  # a new observer watches nothing yet
        self.must_poll = False
        try:
            from watchdog.observers import Observer
            self._observer = Observer()
            self._observer.start()
        except Exception as exc:  # no inotify, limits reached: the periodic stat still reads everything
            self._warn_once("watchdog", "logs: file events unavailable (%s); polling every %ss", exc, self._poll)
            self._observer = None
            self.must_poll = True
            return
        self.watch_new_dirs()

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def watch_new_dirs(self) -> None:
        """Watch the directory of every pattern once it exists (a missing /var/log/devflow may appear later)."""
        observer = self._observer  # stop() may set it to None meanwhile
        if observer is None:
            return
        from watchdog import events
        for directory, recursive in (_static_dir(p) for p in self._patterns):
            if directory in self._watched or not os.path.isdir(directory):
                continue
            try:
                # Creations, renames and deletions only: no IN_MODIFY (a line), IN_ATTRIB or IN_CLOSE_WRITE.
                observer.schedule(_Wakeup(self._matches, self._wake, recursive), directory,
                                        recursive=recursive,
                                        event_filter=[events.FileCreatedEvent, events.FileMovedEvent,
                                                      events.FileDeletedEvent, events.DirCreatedEvent,
                                                      events.DirMovedEvent, events.DirDeletedEvent])
            except Exception as exc:  # e.g. inotify watch limit: polling covers this directory
                self._warn_once("watch:" + directory, "logs: cannot watch %s (%s); polling every %ss",
                                directory, exc, self._poll)
                self.must_poll = True
            self._watched.add(directory)

    def _warn_once(self, key: str, message: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)


class _Wakeup:
    """watchdog handler: wake the reader when one of our logs, or a rotated copy of one, comes or goes."""

    def __init__(self, matches: re.Pattern, wake: threading.Event, directories: bool):
        self._matches = matches
        self._wake = wake
        self._directories = directories  # a glob with a wildcard directory: new directories matter

    def dispatch(self, event) -> None:
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path and self._concerns(os.fsdecode(path)):
                self._wake.set()
                return
        if event.is_directory and self._directories:
            self._wake.set()

    def _concerns(self, path: str) -> bool:
        directory, name = os.path.split(path)
        live = rotated_from(name)  # server.log for server.log.1: copytruncate's copy, a rotated file deleted
        return bool(self._matches.match(path) or (live and self._matches.match(os.path.join(directory, live))))


def _static_dir(pattern: str) -> tuple[str, bool]:
    """The deepest directory of a path or glob without wildcards, and whether to watch below it."""
    parts = Path(pattern).parts
    static = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            return str(Path(*static)) if static else ".", True
        static.append(part)
    return str(Path(*static)) if static else ".", False
