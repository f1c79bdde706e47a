"""The exporter's HTTP routes: /, /metrics, /health, /status, /runbook.

Optional TLS and basic auth come from a web config file (core/webconfig.py).
"""

from __future__ import annotations

import errno
import html
import json
import logging
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer

from prometheus_client.exposition import choose_encoder

from devflow_monitor.core import __version__
from devflow_monitor.exporter import runbook
from devflow_monitor.exporter.exposition import render_text
from devflow_monitor.core.config import Config
from devflow_monitor.core.handlers import RequestHandler, answer, log_failed_request
from devflow_monitor.core.webconfig import BasicAuth, authorized, serve_tls

log = logging.getLogger(__name__)

# accept() errors that only mean a client's connection failed before it was taken (on Linux, accept(2)
# passes on the network error pending on it): retry at once. Some of the names are Linux's only.
CLIENT_GONE = {getattr(errno, name) for name in ("ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN",
                                                 "ENONET", "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH")
               if hasattr(errno, name)}


class ExporterServer(ThreadingHTTPServer):
    # listen() backlog: the stdlib's 5 overflowed 1,942 times in 20,000 scrapes at concurrency 50, each
    # overflow a dropped SYN that stalled its client for a 1 s retransmit.
    request_queue_size = 128
    # Request threads accept connections themselves (`start`), and up to this many wait in accept() for
    # the next one: a scrape wakes one thread, and starts none (a thread start per connection costs ~80 us
    # of CPU and 0.05-0.2 ms of latency). A thread that takes a connection while no other waits starts
    # one first, so a slow client never holds up another.
    kept_threads = 2
    # How long an acceptor rests after accept() failed for want of fds or memory, or for a reason unknown.
    accept_retry_seconds = 0.1

    def __init__(self, address, config: Config, registry, collector_set, auth: BasicAuth):
        self.config = config
        self.registry = registry
        self.collector_set = collector_set
        self.auth = auth
        self.started = time.time()
        # Scrapes run one at a time: collectors keep cursors and caches between scrapes.
        self.scrape_lock = threading.Lock()
        self.last_scrape: dict = {}
        self._waiting = 0  # threads in accept(); guarded by _waiting_lock
        self._waiting_lock = threading.Lock()
        self.stopping = threading.Event()  # set by stop(); requests are refused from then on
        super().__init__(address, Handler)

    def start(self) -> None:
        """Serve in background threads until `stop()`."""
        with self._waiting_lock:
            self._add_acceptor()

    def stop(self) -> None:
        self.stopping.set()
        try:
            self.socket.shutdown(socket.SHUT_RDWR)  # wakes the threads in accept(); close() alone would not
        except OSError:
            pass
        self.server_close()

    def shutdown(self) -> None:
        """socketserver's name for it (its own waits for a serve_forever loop this server does not run)."""
        self.stop()

    def _add_acceptor(self) -> None:
        """Start one more thread waiting in accept(); raises RuntimeError when none can start. Call with
        _waiting_lock held."""
        threading.Thread(target=self._accept_loop, name="http-request", daemon=True).start()
        self._waiting += 1

    def _accept_loop(self) -> None:
        failing = False  # warn once per run of failures, not at every retry
        while not self.stopping.is_set():
            try:
                request, client_address = self.socket.accept()
            except OSError as exc:
                if self.stopping.is_set():
                    break
                if exc.errno in CLIENT_GONE:
                    log.debug("accept() failed: %s", exc)
                    continue
                if not failing:
                    log.warning("accept() failed: %s; retrying every %g s", exc, self.accept_retry_seconds)
                failing = True
                time.sleep(self.accept_retry_seconds)  # out of fds or memory: let some be freed
                continue
            failing = False
            with self._waiting_lock:
                self._waiting -= 1
                if not self._waiting:
                    try:
                        self._add_acceptor()
                    except RuntimeError as exc:  # this thread accepts again once it has served
                        log.warning("cannot start a request thread: %s", exc)
            self.process_request_thread(request, client_address)  # handles, then closes the connection
            with self._waiting_lock:
                if self._waiting >= self.kept_threads:
                    return
                self._waiting += 1
        with self._waiting_lock:
            self._waiting -= 1

    def handle_error(self, request, client_address):
        log_failed_request(log, client_address, sys.exc_info()[1])


class Handler(RequestHandler):
    server: ExporterServer
    timeout = 30  # a client that connects and says nothing must not hold its thread forever
    # Headers and a body under 64 KiB leave in one write (flushed when the request ends), not two.
    wbufsize = 64 * 1024

    def do_GET(self):
        answer(self, self._route, log)

    def _route(self):
        if not authorized(self, self.server.auth):
            return
        path = self.path.split("?", 1)[0]
        routes = {self.server.config.web.telemetry_path: self._metrics, "/health": self._health,
                  "/status": self._status, runbook.PATH: self._runbook, "/": self._landing}
        route = routes.get(path)
        if route is None:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        route()

    def _metrics(self):
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        if content_type.startswith("text/plain"):
            encoder = render_text  # same format, a third of the cost
        started = time.perf_counter()
        body = self._scrape(encoder, self.server.registry)
        if body is None:
            return
        self.server.last_scrape = {"timestamp": time.time(), "duration_seconds": time.perf_counter() - started}
        self._send(200, content_type, body)

    def _health(self):
        collectors = self.server.collector_set
        body = {
            "status": "ok",
            "version": __version__,
            "uptime_seconds": round(time.time() - self.server.started, 3),
            "collectors": {c.name: collectors.last_success.get(c.name) for c in collectors.collectors},
            "last_scrape": self.server.last_scrape or None,
        }
        self._send_json(200, body)

    def _status(self):
        from devflow_monitor.exporter.status import guide_status

        body = self._scrape(guide_status, self.server.collector_set)
        if body is not None:
            self._send_json(200, body)

    def _scrape(self, read, source):
        """`read(source)` with the scrape lock held; None, and a 503 sent, once the server is stopping (its
        collectors may be closed)."""
        with self.server.scrape_lock:
            if not self.server.stopping.is_set():
                return read(source)
        self._send(503, "text/plain; charset=utf-8", b"shutting down\n")
        return None

    def _runbook(self):
        page = runbook.page()
        if page is None:
            self._send(404, "text/plain; charset=utf-8", b"the runbook is not installed with this package\n")
            return
        self._send(200, "text/html; charset=utf-8", page)

    def _landing(self):
        path = html.escape(self.server.config.web.telemetry_path)
        page = (f"<!doctype html><html><head><title>DevFlow Monitor exporter</title></head><body>"
                f"<h1>DevFlow Monitor exporter {__version__}</h1><ul>"
                f"<li><a href='{path}'>{path}</a> Prometheus metrics</li>"
                f"<li><a href='/health'>/health</a> exporter liveness</li>"
                f"<li><a href='/status'>/status</a> DevFlow status in the operations guide's shape</li>"
                f"<li><a href='{runbook.PATH}'>{runbook.PATH}</a> what to do when an alert fires</li>"
                f"</ul></body></html>")
        self._send(200, "text/html; charset=utf-8", page.encode())

    def _send_json(self, status: int, body: dict):
        self._send(status, "application/json", (json.dumps(body, indent=2) + "\n").encode())

    def _send(self, status: int, content_type: str, body: bytes):
        self._answered = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.write_body(body)

    def log_message(self, format, *args):
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), format % args)


def make_server(host: str, port: int, config: Config, registry, collector_set, web_config: dict | None):
    """Bind the server; raises OSError when the address is taken (TLS files were checked at load)."""
    server_class = ExporterServer
    if ":" in host:
        server_class = type("ExporterServer6", (ExporterServer,), {"address_family": socket.AF_INET6})
    server = server_class((host, port), config, registry, collector_set,
                          BasicAuth((web_config or {}).get("basic_auth_users") or {}))
    serve_tls(server, web_config)
    return server
