"""`devflow-monitor stack up|down|demo|status`: exporter, Prometheus, Alertmanager and Grafana in one command.

When a Docker engine answers (`docker info`), the stack is docker-compose.yml. Otherwise the same
configuration files run natively: the exporter from this virtualenv, `prometheus` and
`prometheus-alertmanager` (or `alertmanager`) from PATH, and Grafana if it is installed, else the built-in
web dashboards (`devflow-monitor webdash`) on Grafana's port, so the dashboards' URL is the same. Native state
(rendered configs, data, logs and one record per started process) lives in a single folder, `.stack/` of
the checkout unless told otherwise; `down` stops exactly the processes whose PID and start time `up`
recorded there, never anything found by name. `up --devflow.workdir/--devflow.log-files/--devflow.mode` points
the exporter at the DevFlow to watch (the public build's project folder, its stdout and stderr files, on_demand)
in either mode.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request

from devflow_monitor.stack.compose import choose_mode, compose_up, run_compose
from devflow_monitor.stack.native import READY_PATHS, answers, native_up, stop_recorded
from devflow_monitor.stack.options import (COMPOSE_FILE, DEFAULT_PORTS, DEMO_INTERVAL, ORDER, StackOptions, StackError,
                                            settings_from_args)
from devflow_monitor.stack.state import (forget, read_manifest, read_records, record_path, recorded_process,
                                         running_records)

SHOWN_PATHS = {"simulator": "/status", "exporter": "/metrics", "alertmanager": "/#/alerts",
               "prometheus": "/alerts", "grafana": "/dashboards", "webdash": "/"}


# --- command line -------------------------------------------------------------------------------------

def register(subparsers) -> None:
    stack = subparsers.add_parser(
        "stack", help="run exporter, Prometheus, Alertmanager and Grafana (docker compose or native)",
        description="Bring the monitoring stack up or down. Uses docker compose when a Docker engine "
                    "answers, otherwise the same configs run natively with the binaries on PATH.")
    actions = stack.add_subparsers(dest="stack_action", metavar="ACTION", required=True)
    for action, help_text in (("up", "start the stack"),
                              ("demo", "start the stack against the built-in simulator and inject a fault"),
                              ("down", "stop what `up` or `demo` started"),
                              ("status", "show what runs and where")):
        parser = actions.add_parser(action, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        _add_common_arguments(parser)
        if action in ("up", "demo"):
            _add_start_arguments(parser, with_simulator=action == "demo")
        if action == "up":
            parser.add_argument("--exporter-config", metavar="FILE",
                                help="config file for the native exporter (default: its built-in defaults)")
            _add_target_arguments(parser)
        if action == "demo":
            from devflow_monitor.simulator.faults import FAULTS

            parser.add_argument("--fault", default="error_burst", choices=sorted(FAULTS), metavar="NAME",
                                help=f"simulator fault to inject: {', '.join(FAULTS)} (default error_burst)")
            parser.add_argument("--fault-after", type=float, default=60.0, metavar="SECONDS",
                                help="seconds of healthy data before the fault (default 60)")
            parser.add_argument("--wait", type=float, default=420.0, metavar="SECONDS",
                                help="how long to watch for the alert to fire; 0 returns at once (default 420)")
        parser.set_defaults(func=run)


def _add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", metavar="DIR",
                        help="where native state lives (default $DEVFLOW_STACK_DIR or .stack/ of the checkout)")


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "the DevFlow to watch", "Passed to the exporter, over --exporter-config; each falls back to its "
        "variable in the environment or .env. The public build: --devflow.workdir DIR --devflow.log-files "
        "DIR/devflow.out,DIR/devflow.err --devflow.mode on_demand.")
    group.add_argument("--devflow.workdir", dest="devflow_workdir", metavar="DIR",
                       help="the folder the public build runs in, with data/devflow.db ($DEVFLOW_WORKDIR)")
    group.add_argument("--devflow.log-files", dest="devflow_log_files", metavar="FILE,...", action="append",
                       help="the files its stdout and stderr go to (or other logs and globs), comma-separated; "
                            "repeatable ($DEVFLOW_LOG_FILES)")
    group.add_argument("--devflow.mode", dest="devflow_mode", metavar="MODE",
                       help="on_demand (an MCP client starts and stops it) or daemon ($DEVFLOW_MODE; default: "
                            "the exporter's setting, daemon)")


def _add_start_arguments(parser: argparse.ArgumentParser, with_simulator: bool) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--native", dest="mode", action="store_const", const="native",
                      help="run natively even when a Docker engine answers")
    mode.add_argument("--compose", dest="mode", action="store_const", const="compose",
                      help="use docker compose; fail when no engine answers")
    parser.add_argument("--bind", metavar="ADDRESS",
                        help="address the stack listens on (default $DEVFLOW_STACK_BIND or 127.0.0.1)")
    for name, default in DEFAULT_PORTS.items():
        if name == "simulator" and not with_simulator:
            continue
        parser.add_argument(f"--{name}-port", type=int, metavar="PORT",
                            help=f"host port of {name} (default $DEVFLOW_STACK_{name.upper()}_PORT or {default})")
    parser.add_argument("--ready-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long each native component may take to answer (default 60)")


def run(args) -> int:
    try:
        settings = settings_from_args(args)
        if args.stack_action == "status":
            return status(settings)
        if args.stack_action == "down":
            return down(settings)
        if args.stack_action == "up":
            return up(settings, args.mode)
        return demo(settings, args.mode, args.fault, args.fault_after, args.wait)
    except StackError as exc:
        print(f"devflow-monitor: error: {exc}", file=sys.stderr)
        return 1


# --- actions --------------------------------------------------------------------------------------------

def up(settings: StackOptions, mode: str | None) -> int:
    manifest = read_manifest(settings.state)
    if manifest:
        if manifest["mode"] == "compose" or running_records(settings.state):
            print("The stack is already running (`make down` stops it).")
            if settings.target and manifest.get("target") != settings.target.as_dict():
                print("It watches what its own `up` was told (below), not this command's --devflow.* settings: "
                      "`make down`, then `make up` again.")
            return status(settings)
        forget(settings.state)  # a previous run whose processes are all gone
    chosen, reason = choose_mode(settings, mode or settings.env.get("DEVFLOW_STACK_MODE"))
    print(reason)
    if chosen == "compose":
        compose_up(settings)
    else:
        native_up(settings)
    return status(settings)


def demo(settings: StackOptions, mode: str | None, fault: str, fault_after: float, wait: float) -> int:
    code = up(settings, mode)
    if code != 0:
        return code
    if not (read_manifest(settings.state) or {}).get("demo"):
        raise StackError("a stack without the simulator is running; `make down` first, then `make demo`")
    manifest = read_manifest(settings.state) or {}
    simulator = settings.url("simulator")
    prometheus = settings.url("prometheus")
    before = {alert["labels"]["alertname"] for alert in _alerts(prometheus) if alert["state"] == "firing"}
    print("\nThe simulator (a stand-in for DevFlow) writes events and logs; the exporter watches it"
          + (f" and Prometheus scrapes it every {DEMO_INTERVAL}." if manifest.get("mode") == "native" else "."))
    if "prometheus" not in manifest.get("urls", {}):
        fault_after = wait = 0  # nothing can alert, so nothing is worth waiting for
        print("Prometheus is not running (see skipped above; `make deps` installs it), so no alert can fire; "
              "the fault is injected at once.")
    print(f"Injecting fault '{fault}' in {fault_after:.0f} s (Ctrl-C skips; by hand: "
          f"curl -X POST {simulator}/faults/{fault}).")
    try:
        time.sleep(max(0.0, fault_after))
        _post(f"{simulator}/faults/{fault}")
        print(f"Fault '{fault}' is on (switch it off with: curl -X DELETE {simulator}/faults/{fault}).")
        _watch_alerts(settings, before, wait)
    except KeyboardInterrupt:
        print("\nStopped watching; the stack keeps running (`make down` stops it).")
    return 0


def down(settings: StackOptions) -> int:
    manifest = read_manifest(settings.state)
    if manifest and manifest["mode"] == "compose":
        files = manifest.get("compose_files", [COMPOSE_FILE])
        run_compose(settings, files, "down")
        forget(settings.state)
        print("Stopped the compose stack (data volumes kept; `docker compose down -v` removes them).")
        return 0
    records = read_records(settings.state)
    if not records and not manifest:
        print(f"Nothing to stop: no stack recorded in {settings.state}.")
        return 0
    for record in sorted(records, key=lambda r: ORDER.index(r["name"]), reverse=True):
        outcome = stop_recorded(record)
        print(f"  {record['name']:<13} {outcome}")
        record_path(settings.state, record["name"]).unlink(missing_ok=True)
    forget(settings.state)
    print("Stack stopped.")
    return 0


def status(settings: StackOptions) -> int:
    manifest = read_manifest(settings.state)
    if not manifest:
        print(f"The stack is not running (no state in {settings.state}); start it with `make up` or `make demo`.")
        return 1
    if manifest["mode"] == "compose":
        run_compose(settings, manifest.get("compose_files", [COMPOSE_FILE]), "ps")
        rows = [(name, "compose", "-", _shown_url(manifest, name)) for name in ORDER
                if name in manifest["urls"]]
        _print_table(manifest, rows)
        return 0
    records = {record["name"]: record for record in read_records(settings.state)}
    rows, healthy = [], True
    for name in ORDER:
        record = records.get(name)
        if record is None:
            continue
        proc = recorded_process(record)
        if proc is None:
            state, healthy = "stopped", False
        elif answers(manifest["urls"][name] + READY_PATHS[name]):
            state = "up"
        else:
            state, healthy = "starting" if time.time() - record["create_time"] < 120 else "no answer", False
        rows.append((name, state, str(record["pid"]) if proc else "-", _shown_url(manifest, name)))
    _print_table(manifest, rows)
    return 0 if healthy else 1


# --- output -----------------------------------------------------------------------------------------------

def _shown_url(manifest: dict, name: str) -> str:
    return manifest["urls"][name] + SHOWN_PATHS[name]


def _print_table(manifest: dict, rows: list[tuple[str, str, str, str]]) -> None:
    kind = manifest["mode"] + (", demo against the simulator" if manifest.get("demo") else "")
    print(f"\nStack ({kind}); state in {manifest['state']}")
    print(f"{'SERVICE':<13} {'STATE':<10} {'PID':<8} URL")
    for name, state, pid, url in rows:
        print(f"{name:<13} {state:<10} {pid:<8} {url}")
    for name, reason in manifest.get("skipped", {}).items():
        print(f"{name:<13} {'skipped':<10} {'-':<8} {reason}")
    if manifest.get("target"):
        print("\n" + _describe_target(manifest["target"]))
    if "grafana" in manifest["urls"]:
        print(f"\nDashboards: {manifest['urls']['grafana']} (Grafana; login admin or $GF_ADMIN_USER with "
              "$GF_ADMIN_PASSWORD; folder DevFlow).")
    elif "webdash" in manifest["urls"]:
        print(f"\nDashboards: {manifest['urls']['webdash']} (the built-in web dashboards: Grafana is not installed).")
    if manifest.get("placeholders"):
        print(f"Notifications: placeholder secrets ({', '.join(manifest['placeholders'])}), so alerts show in "
              "Alertmanager but nothing is sent; put real ones in alerting/secrets/ and restart.")


def _describe_target(target: dict) -> str:
    """What the exporter watches, as `up` was told: one line a person can check against their DevFlow."""
    parts = []
    if target.get("workdir"):
        parts.append(f"the public build in {target['workdir']} (database data/devflow.db)")
    if target.get("mode"):
        parts.append(f"mode {target['mode']}")
    if target.get("log_files"):
        parts.append(f"logs {', '.join(target['log_files'])}")
    return "DevFlow: " + "; ".join(parts) + "."


# --- the demo's HTTP calls -----------------------------------------------------------------------------------

def _post(url: str) -> None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST", data=b""), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise StackError(f"POST {url} failed: {exc}") from None


def _alerts(prometheus_url: str) -> list[dict]:
    try:
        with urllib.request.urlopen(prometheus_url + "/api/v1/alerts", timeout=5) as response:
            return json.load(response)["data"]["alerts"]
    except (OSError, ValueError, KeyError):
        return []


def _watch_alerts(settings: StackOptions, already_firing: set[str], wait: float) -> None:
    """Report alerts as they go pending and firing, until one fires that was not firing before the fault."""
    prometheus, seen = settings.url("prometheus"), {}
    if already_firing:
        print(f"Already firing before the fault: {', '.join(sorted(already_firing))}.")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for alert in _alerts(prometheus):
            name, state = alert["labels"]["alertname"], alert["state"]
            if name in already_firing or seen.get(name) == state:
                continue
            seen[name] = state
            print(f"  {time.strftime('%H:%M:%S')}  {name:<36} {state}  {alert['annotations'].get('summary', '')}")
            if state == "firing":
                _print_where_to_look(settings, name)
                return
        time.sleep(2.0)
    if wait > 0:
        print(f"No new alert fired within {wait:.0f} s; watch {prometheus}/alerts.")


def _print_where_to_look(settings: StackOptions, alertname: str) -> None:
    manifest = read_manifest(settings.state) or {"urls": {}}
    print(f"\n{alertname} is firing. Look at:")
    print(f"  Prometheus alerts   {settings.url('prometheus')}/alerts")
    if "alertmanager" in manifest["urls"]:
        print(f"  Alertmanager        {settings.url('alertmanager')}/#/alerts")
    if "grafana" in manifest["urls"]:
        print(f"  Grafana             {settings.url('grafana')}/dashboards (DevFlow folder: Overview, Errors)")
    elif "webdash" in manifest["urls"]:
        print(f"  Dashboards          {settings.url('webdash')}/ (built-in: Overview, Errors)")
    print("`make down` stops the stack.")
