"""The exporter's listening socket under a burst of connections (issue 11, item 11)."""

from __future__ import annotations

import socket
import subprocess

from prometheus_client import CollectorRegistry

from devflow_monitor.exporter.collectors import CollectorSet
from devflow_monitor.exporter.config import Config
from devflow_monitor.exporter.http import ExporterServer, make_server


def test_listen_backlog_holds_a_burst_of_connections_without_dropping_syns():
    server = make_server("127.0.0.1", 0, Config(), CollectorRegistry(), CollectorSet([]), None)
    port = server.server_address[1]
    clients = []
    try:
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                                   check=True).stdout.split()
        assert int(listening[2]) == ExporterServer.request_queue_size >= 128  # ss shows the backlog as Send-Q
        # Nothing accepts (serve_forever is not running): every connect that completes sits in the queue.
        # With the stdlib's backlog of 5, the seventh SYN is dropped and its connect stalls on a retransmit.
        for _ in range(100):
            client = socket.create_connection(("127.0.0.1", port), timeout=0.5)
            clients.append(client)
    finally:
        for client in clients:
            client.close()
        server.server_close()
    assert len(clients) == 100
