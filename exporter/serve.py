"""`devflow-monitor serve` and `check-config`: assemble the collectors and serve them."""

from __future__ import annotations

import gc
import importlib
import logging
import signal
import sys
import threading
import time

from prometheus_client import CollectorRegistry, ProcessCollector

from devflow_monitor.core.webconfig import load_web_config
from devflow_monitor.exporter import http
from devflow_monitor.exporter.collectors import CollectorSet
from devflow_monitor.core.config import Config, parse_listen_address
from devflow_monitor.core.commands import COLLECTORS, add_command, config_from_args

log = logging.getLogger("devflow_monitor")

# Collector name -> "module:Class", imported only when enabled (a disabled collector costs no memory).
# Order is the order of the families in /metrics.
COLLECTOR_CLASSES = {
    "process": "devflow_monitor.exporter.collectors.process:ProcessCollector",
    "database": "devflow_monitor.exporter.collectors.database:DatabaseCollector",
    "host": "devflow_monitor.exporter.collectors.host:HostCollector",
    "logs": "devflow_monitor.exporter.collectors.logs:LogsCollector",
    "probe": "devflow_monitor.exporter.collectors.probe:ProbeCollector",
}
# Built after the others because it reads the probe's last /status.
EVENTQUEUE_CLASS = "devflow_monitor.exporter.collectors.eventqueue:EventQueueCollector"


def _load_class(spec: str):
    module_name, _, class_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_collectors(config: Config) -> CollectorSet:
    """Instantiate every enabled collector, in the order of COLLECTOR_CLASSES."""
    from devflow_monitor.exporter.collectors.dbwatcher import DatabaseWatcher

    # The database and event-queue collectors share one watcher: one ingest cursor, one background count.
    watcher = None
    if config.collectors.database.enabled or config.collectors.eventqueue.enabled:
        watcher = DatabaseWatcher(config)
    collectors = []
    for name, spec in COLLECTOR_CLASSES.items():
        if getattr(config.collectors, name).enabled:
            cls = _load_class(spec)
            collectors.append(cls(config, watcher) if name == "database" else cls(config))
    probe = next((c for c in collectors if c.name == "probe"), None)
    logs = next((c for c in collectors if c.name == "logs"), None)
    if probe and logs:  # one publisher of the app's version and monitors: the probe, with the logs' where it has none
        probe.fallback, logs.publishes_app_facts = logs.app_fields, False
    if config.collectors.eventqueue.enabled:
        collectors.append(_load_class(EVENTQUEUE_CLASS)(config, watcher, probe))
    return CollectorSet(collectors, mode=config.devflow.mode)


def build_registry(collector_set: CollectorSet) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector_set)
    # The exporter's own process_* metrics, so its footprint is watched too.
    registry.register(ProcessCollector(registry=None))
    return registry


def register(subparsers) -> None:
    add_command(subparsers, "serve", run_serve, help="run the Prometheus exporter")
    add_command(subparsers, "check-config", run_check_config, help="validate the configuration and exit")


def run_check_config(args) -> int:
    """Load the configuration (file, environment, flags), print the effective settings and exit 0, or
    print the first problem and exit 2."""
    config = config_from_args(args)
    if config.web.config_file:
        load_web_config(config.web.config_file)
    enabled = [name for name in COLLECTORS if getattr(config.collectors, name).enabled]
    print(f"configuration OK ({args.config_file or 'defaults'})")
    print(f"  listen      {config.web.listen_address}{config.web.telemetry_path}")
    print(f"  database    {config.devflow.database_path}")
    print(f"  mode        {config.devflow.mode}")
    print(f"  collectors  {', '.join(enabled)}")
    return 0


def limit_malloc_arenas() -> None:
    """Use one malloc arena for all threads (as MALLOC_ARENA_MAX=1 would).

    glibc gives each thread that allocates its own arena; with the request
    threads plus the background threads, their half-used arenas cost about
    0.6 MiB of RSS (measured), and the exporter serializes its scrapes anyway.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, 1)  # -8 is M_ARENA_MAX in glibc's malloc.h
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


class _ShutDown(Exception):
    """Raised by the SIGTERM/SIGINT handler to leave the main thread's wait, as KeyboardInterrupt would."""


def run_serve(args) -> int:
    """Serve DevFlow metrics on /metrics, exporter liveness on /health and the guide's status JSON on
    /status."""
    config = config_from_args(args)
    limit_malloc_arenas()
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = parse_listen_address(config.web.listen_address)
    web_config = load_web_config(config.web.config_file) if config.web.config_file else None

    collector_set = build_collectors(config)
    registry = build_registry(collector_set)
    try:
        server = http.make_server(host, port, config, registry, collector_set, web_config)
    except OSError as exc:
        print(f"devflow-monitor: error: cannot listen on {config.web.listen_address}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    collector_set.start()
    # What startup built lives as long as the process: frozen out of the collector's reach, so a full
    # collection during a scrape walks none of the modules and classes.
    gc.collect()
    gc.freeze()

    stopping = threading.Event()

    def shut_down(signum, _frame):
        if not stopping.is_set():
            stopping.set()
            log.info("received %s, shutting down", signal.Signals(signum).name)
            raise _ShutDown  # out of the sleep below, which runs in this, the main, thread

    try:
        signal.signal(signal.SIGTERM, shut_down)
        signal.signal(signal.SIGINT, shut_down)
        log.info("listening on %s:%d%s (database %s)", host, server.server_port, config.web.telemetry_path,
                 config.devflow.database_path)
        server.start()
        while True:
            # The request threads serve; this thread only waits for a signal. time.sleep,
            # unlike signal.pause, exists on every platform and is cut short by a signal handler.
            time.sleep(3600)
    except _ShutDown:
        pass
    finally:
        server.stop()
        # A scrape under way finishes before the collectors close, unless it is stuck: exit all the same.
        finished = server.scrape_lock.acquire(timeout=5)
        try:
            collector_set.stop()
        finally:
            if finished:
                server.scrape_lock.release()
    return 0
