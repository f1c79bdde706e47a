"""What both HTTP servers (the exporter's and webdash's) share in answering: HEAD, the Server header, and
what they do with a request that fails."""

from __future__ import annotations

import logging
import ssl
from http.server import BaseHTTPRequestHandler
from typing import Callable

PRODUCT = "devflow-monitor"

# A client that hung up, timed out, or spoke plain HTTP to a TLS port: its problem, not a traceback.
CLIENT_GONE = (ConnectionError, TimeoutError, ssl.SSLError)


def answer(handler, route: Callable[[], None], log: logging.Logger) -> None:
    """Run `route()` for `handler`; a bug in it is logged at ERROR with its traceback and answered with a
    500 when no answer was started yet (the handler's `_answered`), since a person must see it."""
    handler._answered = False
    try:
        route()
    except CLIENT_GONE:
        raise
    except Exception:
        log.exception("%s %s failed", handler.command, handler.path)
        if not handler._answered:  # else the client sees a cut answer: it cannot get a status any more
            handler._send(500, "text/plain; charset=utf-8", b"internal error: the server's log has the details\n")


def log_failed_request(log: logging.Logger, client_address, error: BaseException | None) -> None:
    """A server's handle_error: a client gone is a debug line, anything else an ERROR with its traceback."""
    if isinstance(error, CLIENT_GONE):
        log.debug("client %s went away: %s", client_address, error)
    else:
        log.error("request from %s failed", client_address, exc_info=error)


class RequestHandler(BaseHTTPRequestHandler):
    """The base of both servers' handlers: HEAD answers as GET would, without the body; the Server header
    names the product only, since error pages reach clients before authentication and a version tells
    them which known flaws to try."""

    server_version = PRODUCT
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version

    def do_HEAD(self):
        self.do_GET()

    def write_body(self, body: bytes) -> None:
        """Send `body` after the headers, unless the request was a HEAD (its Content-Length is still GET's)."""
        if self.command != "HEAD":
            self.wfile.write(body)
