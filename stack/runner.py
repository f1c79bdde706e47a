"""`devflow-monitor stack up|down|demo|status`: exporter, Prometheus, Alertmanager and Grafana in one command.

When a Docker engine answers (`docker info`), the stack is docker-compose.yml. Otherwise the same
configuration files run natively: the exporter from this virtualenv, `prometheus` and
`prometheus-alertmanager` (or `alertmanager`) from PATH, and Grafana if it is installed, else the built-in
web dashboards (`devflow-monitor webdash`) on Grafana's port, so the dashboards' URL is the same. Native state
(rendered configs, data, logs and one record per started process) lives in a single folder, `.stack/` of
the checkout unless told otherwise; `down` stops exactly the processes whose PID and start time `up`
recorded there, never anything found by name.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from devflow_monitor.core.config import BackupConfig
from devflow_monitor.ops.target import wait_gone
from devflow_monitor.stack import deps

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = "docker-compose.yml"
COMPOSE_DEMO_FILE = "stack/compose.demo.yml"

# Host ports; each can be changed with --NAME-port or DEVFLOW_STACK_NAME_PORT (docker-compose.yml reads
# the same variables). Grafana is on 3001 because DevFlow owns 3000; the demo's simulator keeps off 3000
# too, so a demo can run beside a real DevFlow.
DEFAULT_PORTS = {"simulator": 3100, "exporter": 9764, "alertmanager": 9093, "prometheus": 9090, "grafana": 3001}
# Start order; `down` stops in reverse. webdash, the built-in dashboards, stands in for a missing Grafana.
ORDER = ("simulator", "exporter", "alertmanager", "prometheus", "grafana", "webdash")
PORT_OF = {"webdash": "grafana"}  # whoever serves the dashboards listens on Grafana's port
READY_PATHS = {"simulator": "/health", "exporter": "/health", "alertmanager": "/-/ready",
               "prometheus": "/-/ready", "grafana": "/api/health", "webdash": "/"}
SHOWN_PATHS = {"simulator": "/status", "exporter": "/metrics", "alertmanager": "/#/alerts",
               "prometheus": "/alerts", "grafana": "/dashboards", "webdash": "/"}
GRAFANA_INSTALL = "https://grafana.com/docs/grafana/latest/setup-grafana/installation/"
GRAFANA_HOMES = ("/usr/share/grafana", "/opt/homebrew/share/grafana", "/usr/local/share/grafana")
# Where compose mounts Grafana's dashboards (dashboards/provisioning points its file provider here).
GRAFANA_DASHBOARDS_IN_CONTAINER = "/var/lib/grafana/dashboards/devflow"
# Written instead of a missing secret, so a native run needs none: port 9 (discard) refuses the connection.
PLACEHOLDER_URL = "http://127.0.0.1:9/devflow-monitor-placeholder"
PLACEHOLDER_TEXT = "devflow-monitor-placeholder"
# The simulator's logs in the server's formats; its access.log goes to the access-log parser instead.
DEMO_LOG_FILES = ("devflow-monitor.err", "devflow-monitor.out", "server.log", "error.log", "audit/*.log")
DEMO_INTERVAL = "5s"  # the demo scrapes and evaluates faster so the fault shows within minutes


class StackError(Exception):
    """A problem the person running the stack can fix; printed as one line, exit 1."""


@dataclass
class Settings:
    repo: Path
    state: Path
    bind: str
    ports: dict[str, int]
    env: dict[str, str]  # the process environment over the checkout's .env, as compose reads them
    exporter_config: str | None = None
    demo: bool = False
    ready_timeout: float = 60.0

    def port(self, name: str) -> int:
        return self.ports[PORT_OF.get(name, name)]

    def url(self, name: str) -> str:
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "::", "") else self.bind
        return f"http://{host}:{self.port(name)}"


@dataclass
class Component:
    """One native process to start: its command and the environment it adds."""
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


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
        settings = _settings(args)
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


def _settings(args) -> Settings:
    repo = _find_repo()
    env = {**read_dotenv(repo / ".env"), **os.environ}
    state = Path(args.state_dir or env.get("DEVFLOW_STACK_DIR") or repo / ".stack").expanduser().resolve()
    ports = {}
    for name, default in DEFAULT_PORTS.items():
        value = getattr(args, f"{name}_port", None) or env.get(f"DEVFLOW_STACK_{name.upper()}_PORT") or default
        try:
            ports[name] = int(value)
        except ValueError:
            raise StackError(f"DEVFLOW_STACK_{name.upper()}_PORT must be a port number, got '{value}'") from None
        if not 0 < ports[name] < 65536:
            raise StackError(f"{name} port must be between 1 and 65535, got {ports[name]}")
    exporter_config = getattr(args, "exporter_config", None)
    if exporter_config and not Path(exporter_config).is_file():
        raise StackError(f"--exporter-config {exporter_config}: no such file")
    return Settings(repo=repo, state=state, bind=getattr(args, "bind", None) or env.get("DEVFLOW_STACK_BIND")
                    or "127.0.0.1", ports=ports, env=env,
                    exporter_config=str(Path(exporter_config).resolve()) if exporter_config else None,
                    demo=args.stack_action == "demo", ready_timeout=getattr(args, "ready_timeout", 60.0))


def _find_repo() -> Path:
    for candidate in (REPO, Path.cwd()):
        if (candidate / COMPOSE_FILE).is_file() and (candidate / "prometheus.yml").is_file():
            return candidate
    raise StackError("docker-compose.yml and prometheus.yml not found: run this from a devflow-monitor checkout")


def read_dotenv(path: Path) -> dict[str, str]:
    """The settings in a compose-style .env file, read as docker compose reads it; none when it is missing."""
    try:
        from dotenv import dotenv_values  # the `stack` extra: the daemon never reads a .env
    except ImportError:
        raise StackError("python-dotenv is missing: pip install 'devflow-monitor[stack]'") from None
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


# --- actions --------------------------------------------------------------------------------------------

def up(settings: Settings, mode: str | None) -> int:
    manifest = _read_manifest(settings.state)
    if manifest:
        if manifest["mode"] == "compose" or _running_records(settings.state):
            print("The stack is already running (`make down` stops it).")
            return status(settings)
        _forget(settings.state)  # a previous run whose processes are all gone
    chosen, reason = _choose_mode(settings, mode or settings.env.get("DEVFLOW_STACK_MODE"))
    print(reason)
    if chosen == "compose":
        _compose_up(settings)
    else:
        _native_up(settings)
    return status(settings)


def demo(settings: Settings, mode: str | None, fault: str, fault_after: float, wait: float) -> int:
    code = up(settings, mode)
    if code != 0:
        return code
    if not (_read_manifest(settings.state) or {}).get("demo"):
        raise StackError("a stack without the simulator is running; `make down` first, then `make demo`")
    manifest = _read_manifest(settings.state) or {}
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


def down(settings: Settings) -> int:
    manifest = _read_manifest(settings.state)
    if manifest and manifest["mode"] == "compose":
        files = manifest.get("compose_files", [COMPOSE_FILE])
        _run_compose(settings, files, "down")
        _forget(settings.state)
        print("Stopped the compose stack (data volumes kept; `docker compose down -v` removes them).")
        return 0
    records = _records(settings.state)
    if not records and not manifest:
        print(f"Nothing to stop: no stack recorded in {settings.state}.")
        return 0
    for record in sorted(records, key=lambda r: ORDER.index(r["name"]), reverse=True):
        outcome = stop_recorded(record)
        print(f"  {record['name']:<13} {outcome}")
        _record_path(settings.state, record["name"]).unlink(missing_ok=True)
    _forget(settings.state)
    print("Stack stopped.")
    return 0


def status(settings: Settings) -> int:
    manifest = _read_manifest(settings.state)
    if not manifest:
        print(f"The stack is not running (no state in {settings.state}); start it with `make up` or `make demo`.")
        return 1
    if manifest["mode"] == "compose":
        _run_compose(settings, manifest.get("compose_files", [COMPOSE_FILE]), "ps")
        rows = [(name, "compose", "-", _shown_url(manifest, name)) for name in ORDER
                if name in manifest["urls"]]
        _print_table(manifest, rows)
        return 0
    records = {record["name"]: record for record in _records(settings.state)}
    rows, healthy = [], True
    for name in ORDER:
        record = records.get(name)
        if record is None:
            continue
        proc = recorded_process(record)
        if proc is None:
            state, healthy = "stopped", False
        elif _answers(manifest["urls"][name] + READY_PATHS[name]):
            state = "up"
        else:
            state, healthy = "starting" if time.time() - record["create_time"] < 120 else "no answer", False
        rows.append((name, state, str(record["pid"]) if proc else "-", _shown_url(manifest, name)))
    _print_table(manifest, rows)
    return 0 if healthy else 1


# --- mode choice and compose ------------------------------------------------------------------------------

def _choose_mode(settings: Settings, requested: str | None) -> tuple[str, str]:
    if requested not in (None, "", "auto", "native", "compose"):
        raise StackError(f"DEVFLOW_STACK_MODE must be auto, native or compose, got '{requested}'")
    if requested == "native":
        return "native", "Running natively (asked for)."
    engine, detail = docker_engine_answers()
    if engine:
        version = f" (version {detail})" if detail else ""
        return "compose", f"Running with docker compose: a Docker engine answers{version}."
    if requested == "compose":
        raise StackError(f"no Docker engine answers ({detail}); start Docker or run natively with --native")
    return "native", f"Running natively: no Docker engine answers ({detail})."


def docker_engine_answers() -> tuple[bool, str]:
    """True when `docker info` reaches an engine; otherwise False and why not, in a few words."""
    if shutil.which("docker") is None:
        return False, "docker is not installed"
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                                text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return False, "`docker info` timed out"
    if result.returncode == 0:
        return True, result.stdout.strip()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return False, (lines[-1].strip() if lines else f"`docker info` exited {result.returncode}")


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) when present, else Debian's `docker-compose`."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 timeout=15).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise StackError("neither `docker compose` nor `docker-compose` is installed")


def _run_compose(settings: Settings, files: list[str], *args: str) -> None:
    argv = [*compose_command()]
    for file in files:
        argv += ["-f", str(settings.repo / file)]
    env = {**os.environ, **{k: v for k, v in settings.env.items() if k.startswith(("DEVFLOW_STACK_", "GF_"))}}
    env.update({f"DEVFLOW_STACK_{name.upper()}_PORT": str(port) for name, port in settings.ports.items()})
    env["DEVFLOW_STACK_BIND"] = settings.bind
    result = subprocess.run(argv + list(args), cwd=settings.repo, env=env)
    if result.returncode != 0:
        raise StackError(f"`{' '.join(argv[:2])} {' '.join(args)}` failed with exit status {result.returncode}")


def _compose_up(settings: Settings) -> None:
    if not settings.env.get("GF_ADMIN_PASSWORD"):
        raise StackError("GF_ADMIN_PASSWORD is not set: put GF_ADMIN_PASSWORD=<a password> in the environment "
                         "or in .env (git-ignored); Grafana gets no default admin password")
    _check_generated_inputs(settings.repo)
    # Docker creates a missing bind source as root, and `devflow-monitor backup` could no longer write there.
    state_dir = settings.env.get("DEVFLOW_STATE_DIR") or str(Path(BackupConfig.status_file).parent)
    Path(state_dir).expanduser().mkdir(parents=True, exist_ok=True)
    files = [COMPOSE_FILE] + ([COMPOSE_DEMO_FILE] if settings.demo else [])
    settings.state.mkdir(parents=True, exist_ok=True)
    names = [name for name in ORDER if settings.demo or name != "simulator"]
    _write_manifest(settings, "compose", {name: settings.url(name) for name in names}, skipped={},
                    extra={"compose_files": files})
    try:
        _run_compose(settings, files, "up", "-d", "--build")
    except StackError:
        _forget(settings.state)
        raise


# --- native run -------------------------------------------------------------------------------------------

def _native_up(settings: Settings) -> None:
    _check_generated_inputs(settings.repo)
    components, skipped = plan_native(settings)
    busy = [f"{c.name} port {settings.port(c.name)}" for c in components
            if not port_is_free(settings.bind, settings.port(c.name))]
    if busy:
        raise StackError(f"already in use: {', '.join(busy)}; stop what listens there or choose other ports "
                         f"(--NAME-port or DEVFLOW_STACK_NAME_PORT)")
    placeholders = render_native_configs(settings)
    _write_manifest(settings, "native", {c.name: settings.url(c.name) for c in components}, skipped,
                    extra={"placeholders": placeholders})
    started: list[dict] = []
    try:
        for component in components:
            started.append(_start(settings, component))
            _wait_ready(settings, component.name, started[-1])
    except BaseException:
        for record in reversed(started):
            stop_recorded(record)
            _record_path(settings.state, record["name"]).unlink(missing_ok=True)
        _forget(settings.state)
        raise


def plan_native(settings: Settings) -> tuple[list[Component], dict[str, str]]:
    """The components to start, and the ones skipped with the reason."""
    state, repo, skipped = settings.state, settings.repo, {}
    # -P: the state folder (cwd) holds an `exporter/` folder of its own that must not shadow the package.
    python = [sys.executable, "-P", "-m", "devflow_monitor.cli"]
    python_env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    components = []
    exporter_env = dict(python_env)
    if settings.demo:
        demo_dir = state / "demo"
        components.append(Component("simulator", python + [
            "simulate", "--database", str(demo_dir / "devflow.db"),
            "--listen", f"{settings.bind}:{settings.ports['simulator']}",
            "--log-dir", str(demo_dir / "logs"), "--pidfile", str(demo_dir / "simulator.pid")], python_env))
        exporter_args = ["--devflow.database", str(demo_dir / "devflow.db"),
                         "--devflow.url", settings.url("simulator"),
                         "--devflow.port", str(settings.ports["simulator"]),
                         "--devflow.pidfile", str(demo_dir / "simulator.pid"),
                         "--devflow.log-files", *(str(demo_dir / "logs" / name) for name in DEMO_LOG_FILES)]
        exporter_env["DEVFLOW_MONITOR_DEVFLOW_ACCESS_LOG"] = str(demo_dir / "logs" / "access.log")
    elif settings.exporter_config:
        exporter_args = ["--config.file", settings.exporter_config]
    else:
        exporter_args = []
    if not settings.exporter_config:
        exporter_env["DEVFLOW_MONITOR_COLLECTORS_LOGS_STATE_FILE"] = str(state / "exporter" / "log-offsets.json")
    components.append(Component("exporter", python + [
        "serve", "--web.listen-address", f"{settings.bind}:{settings.ports['exporter']}", *exporter_args],
        exporter_env))

    alertmanager = deps.find("prometheus-alertmanager")
    if alertmanager:
        # A single instance: no gossip port to collide with.
        components.append(_prometheus_style(settings, "alertmanager", alertmanager, "--storage.path",
                                            "--cluster.listen-address="))
    else:
        skipped["alertmanager"] = ("neither prometheus-alertmanager nor alertmanager on PATH "
                                   f"({_install_hint('prometheus-alertmanager')})")

    prometheus = deps.find("prometheus")
    if prometheus:
        components.append(_prometheus_style(settings, "prometheus", prometheus, "--storage.tsdb.path",
                                            "--storage.tsdb.retention.time=15d", "--web.enable-lifecycle"))
    else:
        skipped["prometheus"] = f"prometheus not on PATH ({_install_hint('prometheus')})"

    grafana, reason = _grafana_component(settings)
    if grafana:
        components.append(grafana)
    else:
        skipped["grafana"] = reason
        if prometheus:
            components.append(_webdash_component(settings, python, python_env, alertmanager is not None))
    return components, skipped


def _prometheus_style(settings: Settings, name: str, binary: str, storage_flag: str, *flags: str) -> Component:
    """Prometheus or Alertmanager: both take their config file, storage folder, address and URL alike."""
    folder = settings.state / name
    return Component(name, [binary, f"--config.file={folder / f'{name}.yml'}", f"{storage_flag}={folder / 'data'}",
                            f"--web.listen-address={settings.bind}:{settings.ports[name]}",
                            f"--web.external-url={settings.url(name)}", *flags])


def _install_hint(program: str) -> str:
    return f"`make deps` installs it, or: {deps.install_command([deps.BY_COMMAND[program]])}"


def _webdash_component(settings: Settings, python: list[str], env: dict[str, str],
                       with_alertmanager: bool) -> Component:
    """The built-in web dashboards on Grafana's port, reading the stack's Prometheus (and Alertmanager)."""
    argv = python + ["webdash", "--web.listen-address", f"{settings.bind}:{settings.port('webdash')}",
                     "--prometheus.url", settings.url("prometheus")]
    if with_alertmanager:
        argv += ["--alertmanager.url", settings.url("alertmanager")]
    return Component("webdash", argv, env)


def _grafana_component(settings: Settings) -> tuple[Component | None, str]:
    binary = shutil.which("grafana") or shutil.which("grafana-server")
    if binary is None:
        return None, f"grafana-server / grafana not on PATH (see {GRAFANA_INSTALL})"
    homes = [Path(home) for home in GRAFANA_HOMES] + [Path(binary).resolve().parent.parent]
    home = next((h for h in homes if (h / "conf" / "defaults.ini").is_file()), None)
    if home is None:
        return None, f"found {binary} but not its home folder (conf/defaults.ini)"
    password = settings.env.get("GF_ADMIN_PASSWORD")
    if not password:
        return None, "GF_ADMIN_PASSWORD is not set (environment or .env); Grafana gets no default password"
    argv = [binary, "server"] if Path(binary).name == "grafana" else [binary]
    grafana_dir = settings.state / "grafana"
    overview = sorted((settings.repo / "dashboards" / "json").glob("*overview*.json"))
    env = {
        "GF_PATHS_DATA": str(grafana_dir / "data"), "GF_PATHS_LOGS": str(grafana_dir / "logs"),
        "GF_PATHS_PLUGINS": str(grafana_dir / "plugins"),
        "GF_PATHS_PROVISIONING": str(grafana_dir / "provisioning"),
        "GF_SERVER_HTTP_ADDR": settings.bind, "GF_SERVER_HTTP_PORT": str(settings.ports["grafana"]),
        "GF_SERVER_ROOT_URL": settings.url("grafana"),
        "GF_SECURITY_ADMIN_USER": settings.env.get("GF_ADMIN_USER", "admin"),
        "GF_SECURITY_ADMIN_PASSWORD": password,
        "GF_USERS_ALLOW_SIGN_UP": "false", "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_ANALYTICS_REPORTING_ENABLED": "false", "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
    }
    if overview:
        env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] = str(overview[0])
    return Component("grafana", argv + ["--homepath", str(home)], env), ""


def _check_generated_inputs(repo: Path) -> None:
    """The stack mounts generated files; name the make target when they are missing."""
    needed = [("alerting/rules", "*.yml", "make rules"), ("alerting", "alertmanager.yml", "make rules"),
              ("dashboards/json", "*.json", "make dashboards"),
              ("dashboards/provisioning/datasources", "*.yml", "make dashboards"),
              ("dashboards/provisioning/dashboards", "*.yml", "make dashboards")]
    for folder, pattern, target in needed:
        if not any((repo / folder).glob(pattern)):
            raise StackError(f"{folder}/{pattern} is missing: run `{target}` first")


def port_is_free(bind: str, port: int) -> bool:
    """True when a server could listen on bind:port now (SO_REUSEADDR, as the stack's servers use)."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind, port))
        except OSError:
            return False
    return True


def _start(settings: Settings, component: Component) -> dict:
    logs = settings.state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{component.name}.log"
    with open(log_path, "ab") as log:
        # Its own session: Ctrl-C in this terminal does not reach it, and `down` can signal its group.
        proc = subprocess.Popen(component.argv, cwd=settings.state, env={**os.environ, **component.env},
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.Error:
        create_time = time.time()
    record = {"name": component.name, "pid": proc.pid, "create_time": create_time, "argv": component.argv,
              "log": str(log_path)}
    path = _record_path(settings.state, component.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _wait_ready(settings: Settings, name: str, record: dict) -> None:
    url = settings.url(name) + READY_PATHS[name]
    deadline = time.monotonic() + settings.ready_timeout
    while not _answers(url):
        if recorded_process(record) is None:
            raise StackError(f"{name} exited during start-up; last lines of {record['log']}:\n"
                             + _tail(Path(record["log"])))
        if time.monotonic() > deadline:
            raise StackError(f"{name} did not answer {url} within {settings.ready_timeout:.0f} s; "
                             f"see {record['log']}")
        time.sleep(0.2)


def recorded_process(record: dict) -> psutil.Process | None:
    """The live process a record describes, or None: a reused PID (other start time) is not ours."""
    try:
        proc = psutil.Process(record["pid"])
        if abs(proc.create_time() - record["create_time"]) > 1.0 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def stop_recorded(record: dict, timeout: float = 15.0) -> str:
    """Stop the recorded process (and its process group, which it leads); say what happened."""
    proc = recorded_process(record)
    if proc is None:
        return "was not running"
    leads_group = _pgid(proc.pid) == proc.pid

    def send(sig):
        try:
            if leads_group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass

    send(signal.SIGTERM)
    if not wait_gone([proc], timeout):
        return f"stopped (pid {proc.pid})"
    send(signal.SIGKILL)
    wait_gone([proc], 5.0)
    return f"killed after {timeout:.0f} s (pid {proc.pid})"


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


# --- rendering the native configs ---------------------------------------------------------------------------

def render_native_configs(settings: Settings) -> list[str]:
    """Write .stack/ copies of prometheus.yml, alertmanager.yml and Grafana's provisioning for a native run;
    returns the secrets that got placeholders."""
    repo, state = settings.repo, settings.state
    mounts = compose_mounts(repo)
    targets = native_targets(repo, settings)
    prometheus = render_prometheus_config(
        yaml.safe_load((repo / "prometheus.yml").read_text(encoding="utf-8")), targets, mounts["prometheus"],
        interval=DEMO_INTERVAL if settings.demo else None)
    _write_yaml(state / "prometheus" / "prometheus.yml", prometheus, "prometheus.yml")
    alertmanager, placeholders = render_alertmanager_config(
        yaml.safe_load((repo / "alerting" / "alertmanager.yml").read_text(encoding="utf-8")),
        mounts["alertmanager"], repo / "alerting", state / "alertmanager" / "secrets")
    _write_yaml(state / "alertmanager" / "alertmanager.yml", alertmanager, "alerting/alertmanager.yml")
    render_grafana_provisioning(repo / "dashboards" / "provisioning", state / "grafana" / "provisioning",
                                settings.url("prometheus"), repo / "dashboards" / "json")
    folders = ["prometheus/data", "alertmanager/data", "grafana/data", "grafana/logs", "grafana/plugins", "exporter"]
    for folder in folders + (["demo/logs"] if settings.demo else []):
        (state / folder).mkdir(parents=True, exist_ok=True)
    return placeholders


def compose_mounts(repo: Path) -> dict[str, dict[str, Path]]:
    """Per compose service, container path -> host path of its bind mounts inside the checkout."""
    compose = yaml.safe_load((repo / COMPOSE_FILE).read_text(encoding="utf-8"))
    mounts: dict[str, dict[str, Path]] = {}
    for service, spec in compose["services"].items():
        mounts[service] = {}
        for volume in spec.get("volumes", []):
            source, _, rest = volume.partition(":")
            if source.startswith("./"):
                mounts[service][rest.split(":")[0]] = (repo / source).resolve()
    return mounts


def native_targets(repo: Path, settings: Settings) -> dict[str, str]:
    """Compose addresses (service:container-port, and Prometheus' own localhost:9090) -> native addresses."""
    compose = yaml.safe_load((repo / COMPOSE_FILE).read_text(encoding="utf-8"))
    host = settings.url("prometheus").split("//")[1].rsplit(":", 1)[0]
    targets = {}
    for service, spec in compose["services"].items():
        if service not in settings.ports:
            continue
        for port in spec.get("ports", []):
            container_port = str(port).rsplit(":", 1)[-1].split("/")[0]
            targets[f"{service}:{container_port}"] = f"{host}:{settings.ports[service]}"
            if service == "prometheus":
                targets[f"localhost:{container_port}"] = f"{host}:{settings.ports[service]}"
    return targets


def render_prometheus_config(config: dict, targets: dict[str, str], mounts: dict[str, Path],
                             interval: str | None = None) -> dict:
    """prometheus.yml with compose addresses and container paths replaced by native ones."""
    config = json.loads(json.dumps(config))  # a deep copy of plain YAML data

    def retarget(static_configs):
        for group in static_configs or []:
            group["targets"] = [targets.get(target, target) for target in group.get("targets", [])]

    config["rule_files"] = [map_path(path, mounts) for path in config.get("rule_files") or []]
    for manager in (config.get("alerting") or {}).get("alertmanagers") or []:
        retarget(manager.get("static_configs"))
    for job in config.get("scrape_configs") or []:
        retarget(job.get("static_configs"))
        for sd in job.get("file_sd_configs") or []:
            sd["files"] = [map_path(path, mounts) for path in sd.get("files", [])]
    if interval:
        config.setdefault("global", {}).update(scrape_interval=interval, evaluation_interval=interval)
    return config


def map_path(path: str, mounts: dict[str, Path], relative_to: Path | None = None) -> str:
    """A container path under one of the service's mounts as a host path; relative paths against relative_to."""
    for inside, outside in sorted(mounts.items(), key=lambda item: len(item[0]), reverse=True):
        if path == inside or path.startswith(inside.rstrip("/") + "/"):
            return str(outside / path[len(inside):].lstrip("/"))
    if relative_to is not None and not os.path.isabs(path):
        return str(relative_to / path)
    return path


def render_alertmanager_config(config: dict, mounts: dict[str, Path], config_dir: Path,
                               placeholder_dir: Path) -> tuple[dict, list[str]]:
    """alertmanager.yml for a native run: secret files from alerting/secrets/ when they exist there,
    otherwise placeholder files in placeholder_dir (nothing can be sent); returns the placeholders made."""
    config = json.loads(json.dumps(config))
    placeholders: list[str] = []

    def visit(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and key.endswith("_file"):
                    node[key] = secret_path(key, value)
                elif key == "templates" and isinstance(value, list):
                    node[key] = [map_path(v, mounts, config_dir) for v in value]
                else:
                    visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    def secret_path(key: str, value: str) -> str:
        real = Path(map_path(value, mounts, config_dir))
        if real.is_file() and real.stat().st_size > 0:
            return str(real)
        fake = placeholder_dir / real.name
        fake.parent.mkdir(parents=True, exist_ok=True)
        fake.write_text((PLACEHOLDER_URL if "url" in key else PLACEHOLDER_TEXT) + "\n", encoding="utf-8")
        fake.chmod(0o600)
        if real.name not in placeholders:
            placeholders.append(real.name)
        return str(fake)

    visit(config)
    return config, placeholders


def render_grafana_provisioning(source: Path, target: Path, prometheus_url: str, dashboards_json: Path) -> None:
    """Grafana's provisioning with the datasource at the native Prometheus and the dashboards read in place."""
    for kind in ("datasources", "dashboards"):
        (target / kind).mkdir(parents=True, exist_ok=True)
        for old in (target / kind).glob("*.yml"):
            old.unlink()
        for path in sorted((source / kind).glob("*.yml")):
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for datasource in config.get("datasources") or []:
                if datasource.get("type") == "prometheus":
                    datasource["url"] = prometheus_url
            for provider in config.get("providers") or []:
                options = provider.get("options") or {}
                if str(options.get("path", "")).startswith(GRAFANA_DASHBOARDS_IN_CONTAINER):
                    options["path"] = str(dashboards_json) + options["path"][len(GRAFANA_DASHBOARDS_IN_CONTAINER):]
            _write_yaml(target / kind / path.name, config, f"dashboards/provisioning/{kind}/{path.name}")


def _write_yaml(path: Path, data: dict, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Rendered from {source} by `devflow-monitor stack` for a native run; edit the source instead.\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


# --- state folder -----------------------------------------------------------------------------------------

def _record_path(state: Path, name: str) -> Path:
    return state / "run" / f"{name}.json"


def _records(state: Path) -> list[dict]:
    records = []
    for path in sorted((state / "run").glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("name") in ORDER:
            records.append(record)
    return records


def _running_records(state: Path) -> list[dict]:
    return [record for record in _records(state) if recorded_process(record) is not None]


def _write_manifest(settings: Settings, mode: str, urls: dict[str, str], skipped: dict[str, str],
                    extra: dict | None = None) -> None:
    settings.state.mkdir(parents=True, exist_ok=True)
    manifest = {"mode": mode, "demo": settings.demo, "state": str(settings.state), "urls": urls,
                "skipped": skipped, **(extra or {})}
    (settings.state / "stack.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _read_manifest(state: Path) -> dict | None:
    try:
        return json.loads((state / "stack.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _forget(state: Path) -> None:
    (state / "stack.json").unlink(missing_ok=True)
    for path in (state / "run").glob("*.json"):
        path.unlink()


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
    if "grafana" in manifest["urls"]:
        print(f"\nDashboards: {manifest['urls']['grafana']} (Grafana; login admin or $GF_ADMIN_USER with "
              "$GF_ADMIN_PASSWORD; folder DevFlow).")
    elif "webdash" in manifest["urls"]:
        print(f"\nDashboards: {manifest['urls']['webdash']} (the built-in web dashboards: Grafana is not installed).")
    if manifest.get("placeholders"):
        print(f"Notifications: placeholder secrets ({', '.join(manifest['placeholders'])}), so alerts show in "
              "Alertmanager but nothing is sent; put real ones in alerting/secrets/ and restart.")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text.splitlines()[-lines:])


# --- HTTP -------------------------------------------------------------------------------------------------

def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


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


def _watch_alerts(settings: Settings, already_firing: set[str], wait: float) -> None:
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


def _print_where_to_look(settings: Settings, alertname: str) -> None:
    manifest = _read_manifest(settings.state) or {"urls": {}}
    print(f"\n{alertname} is firing. Look at:")
    print(f"  Prometheus alerts   {settings.url('prometheus')}/alerts")
    if "alertmanager" in manifest["urls"]:
        print(f"  Alertmanager        {settings.url('alertmanager')}/#/alerts")
    if "grafana" in manifest["urls"]:
        print(f"  Grafana             {settings.url('grafana')}/dashboards (DevFlow folder: Overview, Errors)")
    elif "webdash" in manifest["urls"]:
        print(f"  Dashboards          {settings.url('webdash')}/ (built-in: Overview, Errors)")
    print("`make down` stops the stack.")
