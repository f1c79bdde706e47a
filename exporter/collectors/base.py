"""The one shape every collector has, and the background thread some of them run.

A `Collector` has a `name`, a `collect()` that yields fresh metric families, and the `Worker`s it runs
between scrapes. `start()` and `stop()` are idempotent and restartable: a second start while running does
nothing, a start after a stop runs again. `healthy` is False while a worker is down, so the scrape's
`devflow_exporter_collector_success` shows a background failure, not only a failed `collect()`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable

log = logging.getLogger(__name__)

RESTART_SECONDS = 5.0  # pause before a worker whose loop raised runs it again


class Worker:
    """A named daemon thread running `loop(stopping)` until `stopping` is set.

    A loop that raises is logged at ERROR (a programming error must be seen), marks the worker failed
    and runs again after RESTART_SECONDS; the failure clears once the new run has lasted that long.

    A loop that also sleeps on an event of its own passes it as `wake`: stop() sets it after `stopping`,
    so the loop sees the stop at once instead of at its next deadline.
    """

    def __init__(self, name: str, loop: Callable[[threading.Event], None], *, join_seconds: float = 10.0,
                 wake: threading.Event | None = None):
        self.name = name
        self._loop = loop
        self._wake = wake
        self._join_seconds = join_seconds
        # _lock guards _thread, _stopping and _stopped_thread, so that start()/stop() calls see one thread at most.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped_thread: threading.Thread | None = None  # a stopped run's thread that outlived its join
        self._stopping = threading.Event()
        self._failed_at: float | None = None  # monotonic time of the last crash, None when none is recent

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def failed(self) -> bool:
        return self._failed_at is not None

    def start(self) -> None:
        with self._lock:
            if self.running or self._outlived_its_stop():
                return
            # Each run gets its own event: a thread that outlived a timed-out join still sees its own stop.
            self._stopping = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stopping,), name=self.name, daemon=True)
            self._thread.start()

    def _outlived_its_stop(self) -> bool:
        """Whether the thread of an earlier run is still inside its loop: a second copy must not run beside it."""
        return self._stopped_thread is not None and self._stopped_thread.is_alive()

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stopping.set()
            if self._wake is not None:
                self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._join_seconds)
            if thread.is_alive():
                with self._lock:
                    self._stopped_thread = thread
                log.warning("%s did not stop within %gs; it is not started again until it has", self.name,
                            self._join_seconds)

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                self._loop(stopping)
                if stopping.is_set():
                    return
                log.error("%s returned without being stopped; running it again in %gs", self.name, RESTART_SECONDS)
            except Exception:
                log.exception("%s stopped by an error; running it again in %gs", self.name, RESTART_SECONDS)
            self._failed_at = time.monotonic()
            stopping.wait(RESTART_SECONDS)

    def settle(self) -> None:
        """Forget a crash once the loop has run again for a while since it (called from `healthy`)."""
        failed_at = self._failed_at
        if failed_at is not None and self.running and time.monotonic() - failed_at > 2 * RESTART_SECONDS:
            self._failed_at = None


class Collector:
    """Base of every collector: subclasses set `name`, implement `collect()` and list their `workers`."""

    name: str = ""

    def __init__(self) -> None:
        self.workers: list[Worker] = []

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    @property
    def healthy(self) -> bool:
        for worker in self.workers:
            worker.settle()
        return not any(worker.failed for worker in self.workers)

    def collect(self) -> Iterable:
        raise NotImplementedError
