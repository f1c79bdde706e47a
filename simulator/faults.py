"""The simulator's faults: the FAULTS table, the set of active faults, and the memory and CPU faults' effects.

The other faults act where their symptom shows: stop_writing, error_burst and outbox_backlog in the
engine (engine.py), slow_health and failing_health in the HTTP answers (http.py), exit in the
server's crash (server.py).
"""

from __future__ import annotations

import mmap
import threading

FAULTS = {
    "stop_writing": "keep logging file and git events but persist no rows (the public build's defect)",
    "error_burst": "ERROR lines in every log, 5xx in the access log, test:failed events",
    "memory_growth": "RSS grows by about 4 MB per second (up to 512 MB), released when switched off",
    "slow_health": "/health and /status answer after about 1.5 s",
    "failing_health": "/health and /status answer 500, status unhealthy, monitors error",
    "outbox_backlog": "the sync worker stops: pending rows pile up and some become 'failed'",
    "cpu_burn": "a busy thread burns one core",
    "exit": "the process exits at once with status 1",
}

MEMORY_GROWTH_BYTES_PER_SECOND = 4 << 20
MEMORY_GROWTH_CAP_BYTES = 512 << 20
SLOW_HEALTH_SECONDS = 1.5


class Faults:
    """The set of active faults, shared by the HTTP threads and the event engine."""

    def __init__(self, active=()):
        self._lock = threading.Lock()   # guards _active
        self._active = set(active)

    def set(self, name: str, on: bool) -> None:
        with self._lock:
            (self._active.add if on else self._active.discard)(name)

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._active

    def active(self) -> list[str]:
        with self._lock:
            return sorted(self._active)


class MemoryGrowth:
    """memory_growth: one block more per step while the fault is on, all released once it is off."""

    def __init__(self, faults: Faults, step_bytes: int):
        self.faults = faults
        self._blocks: list[mmap.mmap] = []
        self._fill = b"\x5a" * step_bytes

    def step(self) -> None:
        if "memory_growth" in self.faults:
            if len(self._blocks) * len(self._fill) < MEMORY_GROWTH_CAP_BYTES:
                # Anonymous mmap, written through: RSS really grows, and munmap really returns it.
                block = mmap.mmap(-1, len(self._fill))
                block.write(self._fill)
                self._blocks.append(block)
        elif self._blocks:
            for block in self._blocks:
                block.close()
            self._blocks.clear()


class CpuBurn:
    """cpu_burn: a busy thread that runs while the fault is on and the simulator is not stopping."""

    def __init__(self, faults: Faults, stopping: threading.Event):
        self.faults, self.stopping = faults, stopping
        self._thread: threading.Thread | None = None

    def start_if_asked(self) -> None:
        if "cpu_burn" in self.faults and not (self._thread and self._thread.is_alive()):
            self._thread = threading.Thread(target=self._burn, name="cpu_burn", daemon=True)
            self._thread.start()

    def _burn(self) -> None:
        while "cpu_burn" in self.faults and not self.stopping.is_set():
            sum(i * i for i in range(20_000))
