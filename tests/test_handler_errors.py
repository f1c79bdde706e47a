"""A bug in a handler of either server is logged where a person sees it and answered with a 500, not a
dropped connection."""

from __future__ import annotations

import logging
import threading

from conftest import free_port, http_get
from prometheus_client import CollectorRegistry

from devflow_monitor.core.config import Config
from devflow_monitor.exporter import status
from devflow_monitor.exporter.collectors import CollectorSet
from devflow_monitor.exporter.http import make_server
from devflow_monitor.webdash import sources
from devflow_monitor.webdash.http import WebdashServer


def bug(*_args, **_kwargs):
    raise KeyError("a bug in the handler")


def answer_of(url: str, logger: str, caplog) -> tuple[int, str]:
    """GET `url`; the answer, after checking the bug was logged at ERROR with its traceback."""
    with caplog.at_level(logging.ERROR, logger=logger):
        answer = http_get(url)
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records), "the traceback is logged"
    return answer


def test_a_webdash_handler_bug_is_logged_at_error_and_answered_500(monkeypatch, caplog):
    monkeypatch.setattr(sources, "guide_metrics", bug)
    server = WebdashServer(("127.0.0.1", 0), prometheus_url=f"http://127.0.0.1:{free_port()}",
                           alertmanager_url=None, dashboards=None, web_config=None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code, body = answer_of(f"http://127.0.0.1:{server.server_port}/dashboard/api/metrics",
                               "devflow_monitor.webdash", caplog)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 500 and "internal error" in body


def test_an_exporter_handler_bug_is_logged_at_error_and_answered_500(monkeypatch, caplog):
    monkeypatch.setattr(status, "guide_status", bug)
    server = make_server("127.0.0.1", 0, Config(), CollectorRegistry(), CollectorSet([]), None)
    server.start()
    try:
        code, body = answer_of(f"http://127.0.0.1:{server.server_port}/status", "devflow_monitor.exporter", caplog)
    finally:
        server.stop()
    assert code == 500 and "internal error" in body
