"""The docker compose mode: whether a Docker engine answers, which compose command to use, and `compose up`."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from devflow_monitor.core.config import BackupConfig
from devflow_monitor.stack.options import (COMPOSE_FILE, ORDER, StackOptions, StackError, Target,
                                            check_generated_inputs)
from devflow_monitor.stack.state import forget, write_manifest

COMPOSE_DEMO_FILE = "stack/compose.demo.yml"
COMPOSE_TARGET_FILE = "compose.target.yml"  # rendered into the state folder by `up --devflow.*`


def choose_mode(settings: StackOptions, requested: str | None) -> tuple[str, str]:
    """"compose" or "native", and the line that says why: compose when a Docker engine answers, unless asked."""
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


def run_compose(settings: StackOptions, files: list[str], *args: str) -> None:
    """Run one compose subcommand over the given files, with the stack's ports and bind address."""
    argv = [*compose_command()]
    for file in files:
        argv += ["-f", str(settings.repo / file)]
    env = {**os.environ, **{k: v for k, v in settings.env.items() if k.startswith(("DEVFLOW_STACK_", "GF_"))}}
    env.update({f"DEVFLOW_STACK_{name.upper()}_PORT": str(port) for name, port in settings.ports.items()})
    env["DEVFLOW_STACK_BIND"] = settings.bind
    result = subprocess.run(argv + list(args), cwd=settings.repo, env=env)
    if result.returncode != 0:
        raise StackError(f"`{' '.join(argv[:2])} {' '.join(args)}` failed with exit status {result.returncode}")


def compose_up(settings: StackOptions) -> None:
    """Record the compose stack in the state folder and start it; forget it again when compose fails."""
    if not settings.env.get("GF_ADMIN_PASSWORD"):
        raise StackError("GF_ADMIN_PASSWORD is not set: put GF_ADMIN_PASSWORD=<a password> in the environment "
                         "or in .env (git-ignored); Grafana gets no default admin password")
    check_generated_inputs(settings.repo)
    # Docker creates a missing bind source as root, where `devflow-monitor backup` cannot write.
    state_dir = settings.env.get("DEVFLOW_STATE_DIR") or str(Path(BackupConfig.status_file).parent)
    Path(state_dir).expanduser().mkdir(parents=True, exist_ok=True)
    files = [COMPOSE_FILE] + ([COMPOSE_DEMO_FILE] if settings.demo else [])
    settings.state.mkdir(parents=True, exist_ok=True)
    if settings.target:
        files.append(str(render_compose_target(settings)))
    names = [name for name in ORDER if settings.demo or name != "simulator"]
    write_manifest(settings, "compose", {name: settings.url(name) for name in names}, skipped={},
                   extra={"compose_files": files})
    try:
        run_compose(settings, files, "up", "-d", "--build")
    except StackError:
        forget(settings.state)
        raise


def render_compose_target(settings: StackOptions) -> Path:
    """The compose override that points the exporter at `up`'s --devflow.* target; returns its path.

    Every folder it names is mounted read-only at its own path, so the exporter's flags are the ones a
    native run gets, and the workdir means the same as the server's cwd seen through the host's PID namespace.
    """
    compose = yaml.safe_load((settings.repo / COMPOSE_FILE).read_text(encoding="utf-8"))
    target = settings.target
    folders: list[str] = []
    # A parent sorts before its children, so a folder inside one already mounted is left out.
    for folder in [target.workdir] + sorted(set(map(_folder_of, target.log_files))):
        if folder and not any(_inside(folder, mounted) for mounted in folders):
            folders.append(folder)
    override = {"services": {"exporter": {
        "command": exporter_command(compose["services"]["exporter"]["command"], target),
        "volumes": [f"{folder}:{folder}:ro" for folder in folders]}}}
    path = settings.state / COMPOSE_TARGET_FILE
    path.write_text(f"# Rendered by `devflow-monitor stack up` from its --devflow.* settings over {COMPOSE_FILE}; "
                    "`make up` renders it again.\n" + yaml.safe_dump(override, sort_keys=False), encoding="utf-8")
    return path


def exporter_command(base: list[str], target: Target) -> list[str]:
    """The compose exporter's command with the flags the target sets taken out (with their values) and the
    target's flags added; a workdir replaces --devflow.database, which would name the guide's database."""
    replaced = {flag for flag in target.exporter_args() if flag.startswith("--")}
    if target.workdir:
        replaced.add("--devflow.database")
    command, dropping = [], False
    for arg in base:
        if dropping and not arg.startswith("--"):
            continue
        name, has_value, _ = arg.partition("=")
        dropping = name in replaced and not has_value
        if name not in replaced:
            command.append(arg)
    return command + target.exporter_args()


def _folder_of(pattern: str) -> str | None:
    """The deepest folder of a log path or glob without a wildcard in it."""
    folder = os.path.dirname(pattern)
    while glob.has_magic(folder):
        folder = os.path.dirname(folder)
    return folder if folder not in ("", "/") else None


def _inside(folder: str, parent: str) -> bool:
    return folder == parent or folder.startswith(parent.rstrip("/") + "/")
