"""The exporter's listening socket under a burst of connections."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

from conftest import wait_until
from prometheus_client import CollectorRegistry

from devflow_monitor.exporter.collectors import CollectorSet
from devflow_monitor.core.config import Config
from devflow_monitor.exporter.http import ExporterServer, make_server


def test_listen_backlog_holds_a_burst_of_connections_without_dropping_syns():
    server = make_server("127.0.0.1", 0, Config(), CollectorRegistry(), CollectorSet([]), None)
    port = server.server_address[1]
    clients = []
    try:
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                                   check=True).stdout.split()
        assert int(listening[2]) == ExporterServer.request_queue_size >= 128  # ss shows the backlog as Send-Q
        # Nothing accepts (start() was not called): every connect that completes sits in the queue.
        # With the stdlib's backlog of 5, the seventh SYN is dropped and its connect stalls on a retransmit.
        for _ in range(100):
            client = socket.create_connection(("127.0.0.1", port), timeout=0.5)
            clients.append(client)
    finally:
        for client in clients:
            client.close()
        server.server_close()
    assert len(clients) == 100


def test_request_threads_are_kept_for_the_next_scrape_and_a_silent_client_holds_up_no_one():
    server = make_server("127.0.0.1", 0, Config(), CollectorRegistry(), CollectorSet([]), None)
    port = server.server_address[1]
    server.start()

    def get() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return response.status

    def request_threads() -> set[int]:
        return {t.ident for t in threading.enumerate() if t.name == "http-request"}

    silent = []
    try:
        assert get() == 200
        time.sleep(0.1)  # scrapes come seconds apart: the thread is back in accept() before the next
        first = request_threads()
        for _ in range(10):
            assert get() == 200
            time.sleep(0.1)
        assert request_threads() == first, "spaced scrapes reuse the same threads"
        # Clients that connect and say nothing hold the waiting threads (until Handler.timeout); a scrape
        # then gets a thread of its own rather than queueing behind them.
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(ExporterServer.kept_threads + 1)]
        assert get() == 200
    finally:
        for client in silent:
            client.close()
        server.stop()
    wait_until(lambda: not request_threads(), message="request threads ended by stop()")


def test_requests_are_served_when_no_more_threads_can_start(monkeypatch, caplog):
    """The acceptor that cannot hand accept() on to a new thread takes it back once it has served."""
    server = make_server("127.0.0.1", 0, Config(), CollectorRegistry(), CollectorSet([]), None)
    port = server.server_address[1]
    server.start()
    start = threading.Thread.start

    def refuse(thread):
        if thread.name == "http-request":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    try:
        for _ in range(5):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                assert response.status == 200
    finally:
        server.stop()
    assert "cannot start a request thread" in caplog.text


def test_a_scrape_waiting_when_the_server_stops_is_refused_not_run_on_closed_collectors():
    """serve stops the collectors once the scrape under way ends; the one queued behind it gets a 503."""
    entered, release = threading.Event(), threading.Event()

    class Slow:
        def collect(self):
            entered.set()
            release.wait(10)
            return []

    class CountingLock:
        """The scrape lock, counting the requests that reached it."""
        def __init__(self):
            self.lock, self.callers = threading.Lock(), 0

        def __enter__(self):
            self.callers += 1
            self.lock.acquire()

        def __exit__(self, *exc):
            self.lock.release()

    registry = CollectorRegistry()
    registry.register(Slow())
    server = make_server("127.0.0.1", 0, Config(), registry, CollectorSet([]), None)
    server.scrape_lock = CountingLock()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    statuses = []

    def scrape():
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)

    server.start()
    first = threading.Thread(target=scrape)
    first.start()
    assert entered.wait(5)
    second = threading.Thread(target=scrape)
    second.start()
    wait_until(lambda: server.scrape_lock.callers == 2, message="the second scrape waits for the first")
    server.stop()
    release.set()
    first.join(10)
    second.join(10)
    assert sorted(statuses) == [200, 503]
