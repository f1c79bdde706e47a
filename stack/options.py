"""What the stack runs with: the checkout and its generated inputs, the state folder, the bind address and ports,
and the DevFlow the exporter watches.

Each comes from a flag, else the process environment, else the checkout's `.env` (read as docker compose
reads it), else its default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from devflow_monitor.core.config import MODES, ConfigError

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = "docker-compose.yml"

# Host ports; each can be changed with --NAME-port or DEVFLOW_STACK_NAME_PORT (docker-compose.yml reads
# the same variables). Grafana is on 3001 because DevFlow owns 3000; the demo's simulator keeps off 3000
# too, so a demo can run beside a real DevFlow.
DEFAULT_PORTS = {"simulator": 3100, "exporter": 9764, "alertmanager": 9093, "prometheus": 9090, "grafana": 3001}
# Start order; `down` stops in reverse. webdash, the built-in dashboards, stands in for a missing Grafana.
ORDER = ("simulator", "exporter", "alertmanager", "prometheus", "grafana", "webdash")
PORT_OF = {"webdash": "grafana"}  # whoever serves the dashboards listens on Grafana's port
DEMO_INTERVAL = "5s"  # the demo scrapes and evaluates faster so the fault shows within minutes


# `stack up --devflow.NAME` and the variable it falls back to (environment or .env; `make up NAME=...` too).
TARGET_VARIABLES = {"workdir": "DEVFLOW_WORKDIR", "log_files": "DEVFLOW_LOG_FILES", "mode": "DEVFLOW_MODE"}


class StackError(Exception):
    """A problem the person running the stack can fix; printed as one line, exit 1."""


@dataclass(frozen=True)
class Target:
    """The DevFlow `stack up` points the exporter at: the public build's working directory (where it keeps
    data/devflow.db), the files its stdout and stderr go to, and how it is run. What is unset is left to the
    exporter's own settings (the guide's install by default). Paths are absolute: the native exporter runs in
    the state folder, and compose mounts each folder at its own path."""
    workdir: str | None = None
    log_files: tuple[str, ...] = ()
    mode: str | None = None

    def __bool__(self) -> bool:
        return bool(self.workdir or self.log_files or self.mode)

    def exporter_args(self) -> list[str]:
        """The exporter's flags for this target; they win over its config file and environment."""
        args = []
        if self.workdir:
            args += ["--devflow.workdir", self.workdir]
        if self.mode:
            args += ["--devflow.mode", self.mode]
        if self.log_files:
            args += ["--devflow.log-files", *self.log_files]  # takes every argument after it: keep it last
        return args

    def as_dict(self) -> dict:
        return {"workdir": self.workdir, "log_files": list(self.log_files), "mode": self.mode}


@dataclass
class StackOptions:
    repo: Path
    state: Path
    bind: str
    ports: dict[str, int]
    env: dict[str, str]  # the process environment over the checkout's .env, as compose reads them
    exporter_config: str | None = None
    demo: bool = False
    ready_timeout: float = 60.0
    target: Target = Target()

    def port(self, name: str) -> int:
        return self.ports[PORT_OF.get(name, name)]

    def url(self, name: str) -> str:
        host = "127.0.0.1" if self.bind in ("0.0.0.0", "::", "") else self.bind
        return f"http://{host}:{self.port(name)}"


def settings_from_args(args) -> StackOptions:
    """The settings of one `stack` command: its flags over the environment over .env over the defaults."""
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
    return StackOptions(repo=repo, state=state, bind=getattr(args, "bind", None) or env.get("DEVFLOW_STACK_BIND")
                    or "127.0.0.1", ports=ports, env=env,
                    exporter_config=str(Path(exporter_config).resolve()) if exporter_config else None,
                    demo=args.stack_action == "demo", ready_timeout=getattr(args, "ready_timeout", 60.0),
                    target=target_from_args(args, env) if args.stack_action == "up" else Target())


def target_from_args(args, env: dict[str, str]) -> Target:
    """The target of `stack up`: each --devflow.NAME flag, else its variable; raises ConfigError (exit 2)."""
    def pick(name: str) -> tuple[str | None, str]:
        flag = getattr(args, f"devflow_{name}", None)
        if flag:
            return ",".join(flag) if isinstance(flag, list) else flag, "--devflow." + name.replace("_", "-")
        return env.get(TARGET_VARIABLES[name]) or None, TARGET_VARIABLES[name]

    workdir, source = pick("workdir")
    if workdir:
        workdir = os.path.abspath(os.path.expanduser(workdir))
        if not os.path.isdir(workdir):
            raise ConfigError(f"{source}: {workdir} is not a directory (the folder the public build runs in, "
                              "which holds data/devflow.db)")
    log_files, _ = pick("log_files")
    files = tuple(os.path.abspath(os.path.expanduser(part.strip()))
                  for part in (log_files or "").split(",") if part.strip())
    mode, source = pick("mode")
    if mode and mode not in MODES:
        raise ConfigError(f"{source}: must be one of {', '.join(MODES)}, got '{mode}'")
    return Target(workdir=workdir, log_files=files, mode=mode)


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


def check_generated_inputs(repo: Path) -> None:
    """The stack mounts generated files; name the make target when they are missing."""
    needed = [("alerting/rules", "*.yml", "make rules"), ("alerting", "alertmanager.yml", "make rules"),
              ("dashboards/json", "*.json", "make dashboards"),
              ("dashboards/provisioning/datasources", "*.yml", "make dashboards"),
              ("dashboards/provisioning/dashboards", "*.yml", "make dashboards")]
    for folder, pattern, target in needed:
        if not any((repo / folder).glob(pattern)):
            raise StackError(f"{folder}/{pattern} is missing: run `{target}` first")
