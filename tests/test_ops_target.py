"""Waiting for processes to exit: `wait_gone`, which `restore --stop` and `stack down` rely on."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from conftest import wait_until
from devflow_monitor.ops.target import wait_gone

# Forks a child that exits at once and never reaps it: a zombie whose parent is not the test.
UNREAPED_CHILD = """
import os, time
pid = os.fork()
if pid == 0:
    os._exit(0)
print(pid, flush=True)
time.sleep(60)
"""


def test_a_zombie_another_parent_has_not_reaped_counts_as_gone_at_once(spawn):
    parent = spawn([sys.executable, "-c", UNREAPED_CHILD], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    wait_until(lambda: child.status() == psutil.STATUS_ZOMBIE, message="the child to exit")
    started = time.monotonic()
    assert wait_gone([child], timeout=10) == []
    # psutil.wait_procs alone would wait all 10 s for the parent to reap it.
    assert time.monotonic() - started < 5


def test_a_process_that_keeps_running_is_returned_after_the_timeout(spawn):
    sleeper = psutil.Process(spawn([sys.executable, "-c", "import time; time.sleep(60)"]).pid)
    assert wait_gone([sleeper], timeout=0.3) == [sleeper]
