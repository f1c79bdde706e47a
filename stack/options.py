"""What the stack runs with: the checkout and its generated inputs, the state folder, the bind address and ports.

Each comes from a flag, else the process environment, else the checkout's `.env` (read as docker compose
reads it), else its default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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


class StackError(Exception):
    """A problem the person running the stack can fix; printed as one line, exit 1."""


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


def check_generated_inputs(repo: Path) -> None:
    """The stack mounts generated files; name the make target when they are missing."""
    needed = [("alerting/rules", "*.yml", "make rules"), ("alerting", "alertmanager.yml", "make rules"),
              ("dashboards/json", "*.json", "make dashboards"),
              ("dashboards/provisioning/datasources", "*.yml", "make dashboards"),
              ("dashboards/provisioning/dashboards", "*.yml", "make dashboards")]
    for folder, pattern, target in needed:
        if not any((repo / folder).glob(pattern)):
            raise StackError(f"{folder}/{pattern} is missing: run `{target}` first")
