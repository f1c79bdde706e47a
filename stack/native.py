"""The native mode: plan the components from the binaries on PATH, start each and wait until it answers,
and stop exactly the processes the state folder records."""

from __future__ import annotations

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

from devflow_monitor.ops.target import wait_gone
from devflow_monitor.stack import deps
from devflow_monitor.stack.render import render_native_configs
from devflow_monitor.stack.options import StackOptions, StackError, check_generated_inputs
from devflow_monitor.stack.state import forget, record_path, recorded_process, write_manifest

READY_PATHS = {"simulator": "/health", "exporter": "/health", "alertmanager": "/-/ready",
               "prometheus": "/-/ready", "grafana": "/api/health", "webdash": "/"}
GRAFANA_INSTALL = "https://grafana.com/docs/grafana/latest/setup-grafana/installation/"
GRAFANA_HOMES = ("/usr/share/grafana", "/opt/homebrew/share/grafana", "/usr/local/share/grafana")
# The simulator's logs in the server's formats; its access.log goes to the access-log parser instead.
DEMO_LOG_FILES = ("devflow-monitor.err", "devflow-monitor.out", "server.log", "error.log", "audit/*.log")


@dataclass
class Component:
    """One native process to start: its command and the environment it adds."""
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def native_up(settings: StackOptions) -> None:
    """Start every planned component in order, each once the one before answers; stop them all on failure."""
    check_generated_inputs(settings.repo)
    components, skipped = plan_native(settings)
    busy = [f"{c.name} port {settings.port(c.name)}" for c in components
            if not port_is_free(settings.bind, settings.port(c.name))]
    if busy:
        raise StackError(f"already in use: {', '.join(busy)}; stop what listens there or choose other ports "
                         f"(--NAME-port or DEVFLOW_STACK_NAME_PORT)")
    placeholders = render_native_configs(settings)
    write_manifest(settings, "native", {c.name: settings.url(c.name) for c in components}, skipped,
                   extra={"placeholders": placeholders})
    started: list[dict] = []
    try:
        for component in components:
            started.append(_start(settings, component))
            _wait_ready(settings, component.name, started[-1])
    except BaseException:
        for record in reversed(started):
            stop_recorded(record)
            record_path(settings.state, record["name"]).unlink(missing_ok=True)
        forget(settings.state)
        raise


def plan_native(settings: StackOptions) -> tuple[list[Component], dict[str, str]]:
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
    else:
        exporter_args = ["--config.file", settings.exporter_config] if settings.exporter_config else []
        exporter_args += settings.target.exporter_args()
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


def _prometheus_style(settings: StackOptions, name: str, binary: str, storage_flag: str, *flags: str) -> Component:
    """Prometheus or Alertmanager: both take their config file, storage folder, address and URL alike."""
    folder = settings.state / name
    return Component(name, [binary, f"--config.file={folder / f'{name}.yml'}", f"{storage_flag}={folder / 'data'}",
                            f"--web.listen-address={settings.bind}:{settings.ports[name]}",
                            f"--web.external-url={settings.url(name)}", *flags])


def _install_hint(program: str) -> str:
    return f"`make deps` installs it, or: {deps.install_command([deps.BY_COMMAND[program]])}"


def _webdash_component(settings: StackOptions, python: list[str], env: dict[str, str],
                       with_alertmanager: bool) -> Component:
    """The built-in web dashboards on Grafana's port, reading the stack's Prometheus (and Alertmanager)."""
    argv = python + ["webdash", "--web.listen-address", f"{settings.bind}:{settings.port('webdash')}",
                     "--prometheus.url", settings.url("prometheus")]
    if with_alertmanager:
        argv += ["--alertmanager.url", settings.url("alertmanager")]
    return Component("webdash", argv, env)


def _grafana_component(settings: StackOptions) -> tuple[Component | None, str]:
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


def _start(settings: StackOptions, component: Component) -> dict:
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
    path = record_path(settings.state, component.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def _wait_ready(settings: StackOptions, name: str, record: dict) -> None:
    url = settings.url(name) + READY_PATHS[name]
    deadline = time.monotonic() + settings.ready_timeout
    while not answers(url):
        if recorded_process(record) is None:
            raise StackError(f"{name} exited during start-up; last lines of {record['log']}:\n"
                             + _tail(Path(record["log"])))
        if time.monotonic() > deadline:
            raise StackError(f"{name} did not answer {url} within {settings.ready_timeout:.0f} s; "
                             f"see {record['log']}")
        time.sleep(0.2)


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


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text.splitlines()[-lines:])


def answers(url: str) -> bool:
    """True when url answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False
