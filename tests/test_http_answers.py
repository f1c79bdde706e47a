"""What both HTTP servers (exporter and webdash) answer, whatever the route: HEAD as GET without the body,
the basic-auth scheme in any case, and a Server header that names no version, on error pages too."""

from __future__ import annotations

import base64
import socket
import threading

import bcrypt
import pytest
from conftest import free_port
from prometheus_client import CollectorRegistry

from devflow_monitor.core.config import Config
from devflow_monitor.exporter.collectors import CollectorSet
from devflow_monitor.exporter.http import make_server
from devflow_monitor.webdash.http import WebdashServer

USERS = {"ops": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()}
TOKEN = base64.b64encode(b"ops:s3cret").decode()
EXPORTER_PATHS = ["/", "/metrics", "/health", "/status", "/runbook", "/nothing"]
WEBDASH_PATHS = ["/", "/d/overview", "/static/app.js", "/static/style.css", "/static/missing.js", "/api/dashboards",
                 "/api/dashboards/nothing", "/api/settings", "/api/alerts", "/api/v1/query?query=up",
                 "/api/v1/query_range?query=up&start=0&end=60&step=15", "/api/v1/label/job/values",
                 "/dashboard/api/metrics", "/nothing"]


@pytest.fixture(scope="module")
def exporter_port():
    server = make_server("127.0.0.1", 0, Config(), CollectorRegistry(), CollectorSet([]),
                         {"basic_auth_users": USERS})
    server.start()
    yield server.server_port
    server.stop()


@pytest.fixture(scope="module")
def webdash_port():
    # Prometheus is a closed port: the proxied routes answer their error, the same for GET and HEAD.
    server = WebdashServer(("127.0.0.1", 0), prometheus_url=f"http://127.0.0.1:{free_port()}", alertmanager_url=None,
                           dashboards=None, web_config={"basic_auth_users": USERS})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port
    server.shutdown()
    server.server_close()


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a raw HTTP/1.0 request; the status, headers (lower-case names) and every byte after them."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def ask(port: int, method: str, path: str, authorization: str | None = f"Basic {TOKEN}"):
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    return exchange(port, f"{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode())


@pytest.mark.parametrize(("server", "path"), [("exporter", p) for p in EXPORTER_PATHS]
                         + [("webdash", p) for p in WEBDASH_PATHS])
def test_head_answers_as_get_does_without_the_body(request, server, path):
    port = request.getfixturevalue(f"{server}_port")
    get_status, get_headers, get_body = ask(port, "GET", path)
    head_status, head_headers, head_body = ask(port, "HEAD", path)
    assert head_status == get_status != 501
    assert head_body == b""
    assert head_headers["content-type"] == get_headers["content-type"]
    if path not in ("/metrics", "/health", "/status", "/api/settings"):  # these carry the time: lengths vary
        assert int(head_headers["content-length"]) == len(get_body)


@pytest.mark.parametrize("server", ["exporter", "webdash"])
def test_head_without_credentials_asks_for_them(request, server):
    status, headers, body = ask(request.getfixturevalue(f"{server}_port"), "HEAD", "/", authorization=None)
    assert status == 401 and "www-authenticate" in headers and body == b""


@pytest.mark.parametrize("server", ["exporter", "webdash"])
@pytest.mark.parametrize("scheme", ["Basic", "basic", "BASIC", "bAsIc"])
def test_the_basic_auth_scheme_is_case_insensitive(request, server, scheme):
    assert ask(request.getfixturevalue(f"{server}_port"), "GET", "/", f"{scheme} {TOKEN}")[0] == 200


@pytest.mark.parametrize("server", ["exporter", "webdash"])
@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"Basic{TOKEN}", "Basic", f"Basic {TOKEN}x"])
def test_other_schemes_and_mangled_credentials_are_refused(request, server, authorization):
    assert ask(request.getfixturevalue(f"{server}_port"), "GET", "/", authorization)[0] == 401


ERROR_REQUESTS = {
    401: b"GET / HTTP/1.0\r\n\r\n",
    404: b"GET /nothing HTTP/1.0\r\nAuthorization: Basic " + TOKEN.encode() + b"\r\n\r\n",
    414: b"GET /" + b"a" * 70000 + b" HTTP/1.0\r\n\r\n",
    431: b"GET / HTTP/1.0\r\n" + b"X-Many: 1\r\n" * 150 + b"\r\n",
    501: b"BREW / HTTP/1.0\r\n\r\n",
}


@pytest.mark.parametrize("server", ["exporter", "webdash"])
@pytest.mark.parametrize("status", ERROR_REQUESTS)
def test_error_answers_name_the_product_and_no_version(request, server, status):
    got, headers, body = exchange(request.getfixturevalue(f"{server}_port"), ERROR_REQUESTS[status])
    assert got == status
    assert headers["server"] == "devflow-monitor"
    assert b"Python" not in body and b"BaseHTTP" not in body
