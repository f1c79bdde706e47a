"""The web dashboards' routes.

    /, /d/UID[/SLUG]           the page (static/index.html); it draws the dashboard named in the path
    /static/...                its JavaScript, CSS and the vendored uPlot
    /api/dashboards[/UID]      the dashboard JSON, as Grafana loads it
    /api/v1/query, /api/v1/query_range, /api/v1/label/NAME/values
                               proxied to Prometheus, so the page needs one origin
    /api/settings              Prometheus' scrape interval (the base of $__interval and $__rate_interval)
    /api/alerts                the alerts firing now (Alertmanager, else Prometheus)
    /dashboard/api/metrics     the operations guide's section 5.2 JSON: system, application, timestamp
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from devflow_monitor.core import __version__
from devflow_monitor.core.handlers import RequestHandler, answer, log_failed_request
from devflow_monitor.core.settings import Settings
from devflow_monitor.core.webconfig import BasicAuth, authorized, serve_tls
from devflow_monitor.dashboards import DASHBOARDS
from devflow_monitor.webdash import sources
from devflow_monitor.webdash.drawable import undrawable

log = logging.getLogger(__name__)


STATIC = Path(__file__).resolve().parent / "static"
PROXIED = re.compile(r"^/api/v1/(query|query_range|label/[A-Za-z_][A-Za-z0-9_]*/values)$")
PAGE = re.compile(r"^/(d/[\w-]+(/[\w-]*)?)?$")
# Prometheus' config changes only on reload; asking once a minute keeps up without a call per refresh.
SETTINGS_CACHE_SECONDS = 60
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".html": "text/html; charset=utf-8"}


class DashboardError(Exception):
    """A dashboards directory the server cannot serve: no JSON, or JSON that does not parse."""


def load_dashboards(directory: Path) -> list[dict]:
    """The dashboards in `directory`, in DASHBOARDS' order (Overview first), others after by name."""
    files = sorted(directory.glob("*.json"),
                   key=lambda p: (DASHBOARDS.index(p.stem) if p.stem in DASHBOARDS else len(DASHBOARDS), p.stem))
    if not files:
        raise DashboardError(f"{directory}: no dashboard JSON (*.json) here")
    boards = []
    for path in files:
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DashboardError(f"{path}: cannot read dashboard JSON: {exc}") from None
        if not isinstance(board, dict) or not board.get("uid"):
            raise DashboardError(f"{path}: not a Grafana dashboard (no uid)")
        boards.append(board)
    return boards


def render_dashboards(settings: Settings) -> list[dict]:
    """The five dashboards as `make dashboards` would write them with these settings."""
    from devflow_monitor.dashboards.build import render_all

    return [json.loads(text) for text in render_all(settings).values()]


class WebdashServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, *, prometheus_url: str, alertmanager_url: str | None, dashboards: Path | None,
                 web_config: dict | None, settings: Settings | None = None):
        """`dashboards`: a directory of dashboard JSON, read at each request; None renders them from
        `settings` once, so the panels follow the same thresholds, levels and windows as the rules."""
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        settings = settings or Settings()
        self.prometheus = sources.Prometheus(prometheus_url, settings)
        self.alertmanager_url = alertmanager_url
        self.dashboards = dashboards
        self.rendered = None if dashboards else render_dashboards(settings)
        self.auth = BasicAuth((web_config or {}).get("basic_auth_users") or {})
        self._settings_lock = threading.Lock()  # guards _settings, refreshed by whichever request finds it stale
        self._settings: tuple[float, dict] = (0.0, {})
        for board in self.boards():
            for problem in undrawable(board):
                log.warning("%s: this page cannot draw %s", board.get("title"), problem)
        super().__init__(address, Handler)
        serve_tls(self, web_config)

    def boards(self) -> list[dict]:
        return self.rendered if self.rendered is not None else load_dashboards(self.dashboards)

    def settings(self) -> dict:
        with self._settings_lock:
            fetched, value = self._settings
            if time.monotonic() - fetched > SETTINGS_CACHE_SECONDS or not value:
                value = {"scrape_interval_seconds": self.prometheus.scrape_interval(),
                         "prometheus": self.prometheus.url, "alertmanager": self.alertmanager_url,
                         "version": __version__}
                self._settings = (time.monotonic(), value)
            return value

    def handle_error(self, request, client_address):
        log_failed_request(log, client_address, sys.exc_info()[1])


class Handler(RequestHandler):
    server: WebdashServer
    timeout = 30

    def do_GET(self):
        answer(self, self._route, log)

    def _route(self):
        if not authorized(self, self.server.auth):
            return
        url = urlsplit(self.path)
        path = url.path
        if PAGE.match(path):
            self._file(STATIC / "index.html")
        elif path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
        elif PROXIED.match(path):
            self._json(*self.server.prometheus.get(path, url.query))
        elif path == "/api/dashboards":
            self._json(200, [{"uid": b["uid"], "title": b.get("title", b["uid"])} for b in self._boards()])
        elif path.startswith("/api/dashboards/"):
            uid = path.removeprefix("/api/dashboards/")
            board = next((b for b in self._boards() if b["uid"] == uid), None)
            self._json(200, board) if board else self._json(404, {"error": f"no dashboard with uid {uid!r}"})
        elif path == "/api/settings":
            self._json(200, self.server.settings())
        elif path == "/api/alerts":
            self._json(*sources.firing_alerts(self.server.prometheus, self.server.alertmanager_url))
        elif path == "/dashboard/api/metrics":
            instance = parse_qs(url.query).get("instance", [None])[0]
            self._json(*sources.guide_metrics(self.server.prometheus, instance))
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _boards(self) -> list[dict]:
        # A directory is read on each request, so `make dashboards` shows without a restart.
        try:
            return self.server.boards()
        except DashboardError as exc:
            log.error("%s", exc)
            return []

    def _static(self, name: str):
        path = (STATIC / name).resolve()
        if STATIC not in path.parents or not path.is_file():
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        self._file(path)

    def _file(self, path: Path):
        content_type = CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "text/plain"
        self._send(200, content_type, path.read_bytes(), cache="no-cache")

    def _json(self, status: int, body):
        self._send(status, "application/json", json.dumps(body).encode(), cache="no-store")

    def _send(self, status: int, content_type: str, body: bytes, cache: str | None = None):
        self._answered = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if cache:
            self.send_header("Cache-Control", cache)
        self.end_headers()
        self.write_body(body)

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)
