"""The shape every collector shares: idempotent, restartable start/stop, named threads, failures seen."""

from __future__ import annotations

import threading

from devflow_monitor.exporter.collectors import CollectorSet, base
from conftest import wait_until


def threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


class Ticking(base.Collector):
    name = "ticking"

    def __init__(self, crash_first: int = 0):
        super().__init__()
        self.runs = 0
        self.crash_first = crash_first
        self.workers.append(base.Worker("ticking-loop", self._loop))

    def _loop(self, stopping: threading.Event) -> None:
        self.runs += 1
        if self.runs <= self.crash_first:
            raise RuntimeError("a bug in the loop")
        stopping.wait()

    def collect(self):
        return iter(())


def test_start_twice_runs_one_thread_and_stop_then_start_runs_again():
    collector = Ticking()
    collector.start()
    collector.start()
    wait_until(lambda: collector.runs == 1, message="the loop ran")
    assert len(threads_named("ticking-loop")) == 1
    collector.stop()
    collector.stop()
    assert threads_named("ticking-loop") == []
    collector.start()
    wait_until(lambda: collector.runs == 2, message="the loop ran again after a restart")
    assert len(threads_named("ticking-loop")) == 1
    collector.stop()
    assert threads_named("ticking-loop") == []


def test_a_crashed_loop_is_logged_reported_unhealthy_and_run_again(monkeypatch, caplog):
    # The failure shows for 2 x RESTART_SECONDS after the crash: long enough for the check below to see it.
    monkeypatch.setattr(base, "RESTART_SECONDS", 0.5)
    collector = Ticking(crash_first=1)
    collector.start()
    try:
        # The crash is recorded just after the loop counts its run: wait for it rather than race it.
        wait_until(lambda: not collector.healthy, message="a crashed worker makes its collector fail")
        assert any(r.levelname == "ERROR" and "ticking-loop" in r.getMessage() for r in caplog.records)
        wait_until(lambda: collector.runs == 2, message="the loop runs again")
        wait_until(lambda: collector.healthy, timeout=5, message="healthy once the new run lasts")
        samples = list(CollectorSet([collector]).collect())
        success = next(f for f in samples if f.name == "devflow_exporter_collector_success")
        assert success.samples[0].value == 1.0
    finally:
        collector.stop()


def test_a_loop_that_returns_unasked_is_reported_and_run_again(monkeypatch, caplog):
    monkeypatch.setattr(base, "RESTART_SECONDS", 0.2)
    runs = []
    worker = base.Worker("returning-loop", lambda stopping: runs.append(1))
    worker.start()
    try:
        wait_until(lambda: len(runs) >= 2, message="the loop ran again")
        assert worker.failed, "a loop that ends by itself is a failure"
        assert any(r.levelname == "ERROR" and "returning-loop" in r.getMessage() for r in caplog.records)
    finally:
        worker.stop()


def test_a_worker_whose_stop_timed_out_is_not_started_beside_itself():
    release = threading.Event()
    runs = []

    def stubborn(stopping):
        runs.append(1)
        release.wait()

    worker = base.Worker("stubborn-loop", stubborn, join_seconds=0.1)
    worker.start()
    wait_until(lambda: runs, message="the loop ran")
    worker.stop()
    worker.start()
    assert len(threads_named("stubborn-loop")) == 1 and runs == [1], "no second copy while the first runs"
    release.set()
    wait_until(lambda: not threads_named("stubborn-loop"), message="the first copy ended")
    worker.start()
    wait_until(lambda: len(runs) == 2, message="started again once the first copy ended")
    release.set()
    worker.stop()
