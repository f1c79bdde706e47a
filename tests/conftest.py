"""Shared fixtures: free ports, the exporter CLI as a real child process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


def cli(*args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run `devflow-monitor ARGS` as a child process and capture its output."""
    return subprocess.run([sys.executable, "-m", "exporter.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def wait_for_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s") from None
            time.sleep(0.05)


def http_get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def spawn():
    """Start child processes that are always stopped at the end of the test."""
    started: list[subprocess.Popen] = []

    def start(args, **kwargs) -> subprocess.Popen:
        kwargs.setdefault("cwd", ROOT)
        kwargs.setdefault("env", {**os.environ, "PYTHONUNBUFFERED": "1"})
        proc = subprocess.Popen(args, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        stop_process(proc)
