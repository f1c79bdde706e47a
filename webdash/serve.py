"""`devflow-monitor webdash`: serve the five dashboards in a browser, without Grafana."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from devflow_monitor.core import settings as monitoring
from devflow_monitor.core.commands import add_command
from devflow_monitor.core.config import ConfigError, parse_listen_address
from devflow_monitor.core.webconfig import load_web_config

log = logging.getLogger("devflow_monitor.webdash")


def register(subparsers) -> None:
    parser = add_command(subparsers, "webdash", run, config=False,
                         help="serve the dashboards in a browser, without Grafana")
    parser.add_argument("--web.listen-address", dest="listen_address", default="127.0.0.1:3001",
                        metavar="HOST:PORT", help="address to serve on (default 127.0.0.1:3001)")
    parser.add_argument("--prometheus.url", dest="prometheus_url", default="http://127.0.0.1:9090",
                        metavar="URL", help="Prometheus to query (default http://127.0.0.1:9090)")
    parser.add_argument("--alertmanager.url", dest="alertmanager_url", metavar="URL",
                        help="Alertmanager to list firing alerts from (default: Prometheus' own list)")
    parser.add_argument("--web.config.file", dest="web_config_file", metavar="FILE",
                        help="exporter-toolkit web config for TLS and basic auth (the exporter's format)")
    parser.add_argument("--settings", metavar="FILE",
                        help="alert settings (YAML or Jsonnet): the panels' thresholds, error levels, rate window "
                             "and scrape interval, as the rules use them (default: built in)")
    parser.add_argument("--dashboards", metavar="DIR", type=Path,
                        help="serve the dashboard JSON of this directory instead, re-read at each request")
    parser.add_argument("--log.level", dest="log_level", default="info",
                        choices=("debug", "info", "warning", "error"), help="log level (default info)")


def check_url(flag: str, url: str | None) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{flag} must be an http:// or https:// URL, got {url!r}")


def run(args) -> int:
    """Serve the Grafana dashboards (built from the settings, or a directory of JSON) as web pages that run the
    same PromQL against Prometheus, with the firing alerts and the guide's /dashboard/api/metrics JSON."""
    from devflow_monitor.webdash.http import DashboardError, WebdashServer

    check_url("--prometheus.url", args.prometheus_url)
    check_url("--alertmanager.url", args.alertmanager_url)
    host, port = parse_listen_address(args.listen_address, "--web.listen-address")
    web_config = load_web_config(args.web_config_file) if args.web_config_file else None
    settings = monitoring.load(args.settings)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = WebdashServer((host, port), prometheus_url=args.prometheus_url,
                               alertmanager_url=args.alertmanager_url, dashboards=args.dashboards,
                               web_config=web_config, settings=settings)
    except DashboardError as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        print(f"devflow-monitor: error: cannot listen on {args.listen_address}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1

    def shut_down(signum, _frame):
        log.info("received %s, shutting down", signal.Signals(signum).name)
        threading.Thread(target=server.shutdown, name="webdash-shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    scheme = "https" if web_config and web_config.get("tls_server_config") else "http"
    log.info("dashboards on %s://%s:%d/ (Prometheus %s)", scheme, host, server.server_port, args.prometheus_url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
