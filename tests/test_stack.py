"""The `make up` stack: docker-compose.yml, Dockerfile, prometheus.yml and `devflow-monitor stack`.

No Docker engine exists here: the compose file is checked with Debian's `docker-compose config` (which needs
none), and the compose code path runs against a fake `docker` command. Everything native is real: the
exporter, `prometheus`, `prometheus-alertmanager`, `promtool`, `amtool`, the simulator.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import ROOT, cli, free_port, http_get, requires, wait_until
from devflow_monitor.stack import deps
from devflow_monitor.stack.native import plan_native, port_is_free, stop_recorded
from devflow_monitor.stack.render import (compose_mounts, render_alertmanager_config, render_native_configs,
                                          render_prometheus_config)
from devflow_monitor.stack.options import DEFAULT_PORTS, TARGET_VARIABLES, StackOptions, read_dotenv
from devflow_monitor.stack.state import recorded_process

COMPOSE = shutil.which("docker-compose")
PROMTOOL = shutil.which("promtool")
needs_compose = requires("docker-compose")
needs_promtool = requires("promtool")
needs_native = requires("prometheus", "prometheus-alertmanager")


# --- make deps ---------------------------------------------------------------------------------------------

def run_deps(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """stack/deps.py where nothing is on PATH but python: every program missing, no package manager."""
    bin_dir = tmp_path / "bare-bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "python3").exists():
        (bin_dir / "python3").symlink_to(sys.executable)
    return subprocess.run(["python3", str(ROOT / "stack" / "deps.py"), *args], capture_output=True, text=True,
                          timeout=60, env={"PATH": str(bin_dir)})


def test_deps_that_cannot_install_print_the_one_line_and_let_the_tests_run(tmp_path):
    result = run_deps(tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(line.strip() for line in result.stdout.splitlines() if "apt-get install" in line)
    packages = line.split("--no-install-recommends ")[1].split()
    assert {"prometheus", "prometheus-alertmanager", "chromium", "chromium-driver", "procps"} <= set(packages)
    assert len(packages) == len(set(packages))
    assert run_deps(tmp_path, "--strict").returncode == 1, "CI must not turn a missing program into a skip"


def test_make_test_up_and_demo_all_run_deps_first():
    for target in ("test", "up", "demo"):
        result = subprocess.run(["make", "--no-print-directory", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=30)
        commands = result.stdout.splitlines()
        assert commands and "stack/deps.py" in commands[0], (target, commands)
    assert "make deps" in (ROOT / ".ci" / "run").read_text()


# --- docker-compose.yml ---------------------------------------------------------------------------------

def compose_config(tmp_path: Path, *files: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`docker-compose config` on the checkout's files with an empty env file (so a local .env plays no part)."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    args = [COMPOSE, "--env-file", str(env_file)]
    for file in files:
        args += ["-f", str(ROOT / file)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DEVFLOW_", "GF_"))}
    return subprocess.run(args + ["config"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**clean, **(env or {})})


@pytest.fixture
def compose_env(tmp_path):
    folders = {name: tmp_path / f"devflow-{name.lower()}" for name in ("DATA", "LOG", "STATE")}
    for folder in folders.values():
        folder.mkdir()
    return {"GF_ADMIN_PASSWORD": "s3cret-from-env", **{f"DEVFLOW_{name}_DIR": str(f) for name, f in folders.items()}}


def resolved(tmp_path, env, *files) -> dict:
    result = compose_config(tmp_path, *files, env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def bind_mounts(config: dict) -> list[tuple[str, str, str, str]]:
    """(service, host path, container path, mode) of every bind mount in a resolved compose config."""
    mounts = []
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            source, target, *mode = volume.split(":")
            if source.startswith("/"):
                mounts.append((name, source, target, mode[0] if mode else "rw"))
    return mounts


def host_ports(config: dict) -> list[tuple[str, str, int]]:
    ports = []
    for name, service in config["services"].items():
        for spec in service.get("ports", []):
            address, host_port, _container = spec.split("/")[0].split(":")
            ports.append((name, address, int(host_port)))
    return ports


@needs_compose
@pytest.mark.parametrize("files", [("docker-compose.yml",), ("docker-compose.yml", "stack/compose.demo.yml")],
                         ids=["stack", "demo"])
def test_compose_file_validates_with_docker_compose_config(tmp_path, compose_env, files):
    config = resolved(tmp_path, compose_env, *files)
    assert {"exporter", "prometheus", "alertmanager", "grafana"} <= set(config["services"])
    assert config["services"]["exporter"]["build"]["context"] == str(ROOT)


@needs_compose
def test_compose_refuses_to_start_grafana_without_an_admin_password(tmp_path, compose_env):
    del compose_env["GF_ADMIN_PASSWORD"]
    result = compose_config(tmp_path, "docker-compose.yml", env=compose_env)
    assert result.returncode != 0
    assert "GF_ADMIN_PASSWORD" in result.stderr


@needs_compose
def test_grafana_admin_password_comes_only_from_the_environment(tmp_path, compose_env):
    grafana = resolved(tmp_path, compose_env, "docker-compose.yml")["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret-from-env"
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"PASSWORD[^\n]*:-", text), "a password variable must not have a default"


@needs_compose
@pytest.mark.parametrize("files", [("docker-compose.yml",), ("docker-compose.yml", "stack/compose.demo.yml")],
                         ids=["stack", "demo"])
def test_every_bind_mount_of_the_compose_file_exists(tmp_path, compose_env, files):
    mounts = bind_mounts(resolved(tmp_path, compose_env, *files))
    assert mounts
    missing = [(service, source) for service, source, _, _ in mounts if not Path(source).exists()]
    assert not missing


@needs_compose
def test_devflow_data_and_logs_are_mounted_read_only_from_configurable_folders(tmp_path, compose_env):
    mounts = {target: (source, mode) for service, source, target, mode
              in bind_mounts(resolved(tmp_path, compose_env, "docker-compose.yml")) if service == "exporter"}
    assert mounts["/devflow"] == (compose_env["DEVFLOW_DATA_DIR"], "ro")
    assert mounts["/var/log/devflow"] == (compose_env["DEVFLOW_LOG_DIR"], "ro")


@needs_compose
def test_configuration_from_the_checkout_is_mounted_read_only(tmp_path, compose_env):
    for service, source, target, mode in bind_mounts(resolved(tmp_path, compose_env, "docker-compose.yml")):
        if source.startswith(str(ROOT)):
            assert mode == "ro", f"{service} mounts {source} writable"


@needs_compose
def test_host_ports_are_unique_on_loopback_and_grafana_is_on_3001(tmp_path, compose_env):
    ports = host_ports(resolved(tmp_path, compose_env, "docker-compose.yml", "stack/compose.demo.yml"))
    numbers = [port for _, _, port in ports]
    assert len(numbers) == len(set(numbers)), ports
    assert all(address == "127.0.0.1" for _, address, _ in ports)
    assert ("grafana", "127.0.0.1", 3001) in ports
    assert 3000 not in numbers  # DevFlow's own port


@needs_compose
def test_host_ports_follow_the_same_variables_as_the_native_stack(tmp_path, compose_env):
    env = {**compose_env, "DEVFLOW_STACK_GRAFANA_PORT": "4001", "DEVFLOW_STACK_BIND": "0.0.0.0"}
    ports = host_ports(resolved(tmp_path, env, "docker-compose.yml"))
    assert ("grafana", "0.0.0.0", 4001) in ports


@needs_compose
def test_image_tags_are_pinned(tmp_path, compose_env):
    config = resolved(tmp_path, compose_env, "docker-compose.yml", "stack/compose.demo.yml")
    images = [service["image"] for service in config["services"].values()]
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{image} is not pinned to a release"
    bases = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert bases and all(re.search(r":\d+\.\d+\.\d+", base) for base in bases), bases


# --- Dockerfile ------------------------------------------------------------------------------------------

def final_stage(dockerfile: str) -> str:
    return dockerfile.split("\nFROM ")[-1]


def test_exporter_image_runs_as_non_root_with_a_health_check_on_health():
    image = final_stage((ROOT / "Dockerfile").read_text())
    users = re.findall(r"^USER\s+(\S+)", image, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthcheck = re.search(r"^HEALTHCHECK .*?(?<!\\)\n", image, re.MULTILINE | re.DOTALL).group(0)
    assert "/health" in healthcheck
    assert re.search(r"^CMD .*0\.0\.0\.0:9764", image, re.MULTILINE)
    assert "slim" in re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)[-1]


def dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    allowed = True
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.removeprefix("!")
        alternatives = [pattern, "*/" + pattern[3:], pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatch.fnmatchcase(prefix, alt) for prefix in prefixes for alt in alternatives):
            allowed = negate
    return allowed


def test_build_context_holds_every_file_the_dockerfile_copies_and_no_secrets():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = [src for line in re.findall(r"^COPY (?!--from)(.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
               for src in line.split()[:-1]]
    assert "pyproject.toml" in sources
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is missing"
        assert dockerignore_allows(source, patterns), f".dockerignore keeps {source} out of the build"
    for kept_out in (".env", ".stack/prometheus/prometheus.yml", "alerting/secrets/slack_api_url", ".venv/bin/python",
                     "exporter/__pycache__/cli.cpython-311.pyc"):
        assert not dockerignore_allows(kept_out, patterns), kept_out


# --- prometheus.yml ----------------------------------------------------------------------------------------

def promtool_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, timeout=60)


def settings_for(tmp_path: Path, demo: bool = False) -> StackOptions:
    ports = {name: 20000 + i for i, name in enumerate(DEFAULT_PORTS)}
    return StackOptions(repo=ROOT, state=tmp_path / "state", bind="127.0.0.1", ports=ports, env={}, demo=demo)


@needs_promtool
def test_prometheus_yml_passes_promtool_with_the_compose_mounts_in_place(tmp_path):
    """The top-level file as the container sees it: its container paths swapped for what compose mounts there."""
    config = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    mounted = render_prometheus_config(config, {}, compose_mounts(ROOT)["prometheus"])
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(mounted))
    result = promtool_check(path)
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = sorted((ROOT / "alerting" / "rules").glob("*.yml"))
    assert rule_files and f"SUCCESS: {len(rule_files)} rule files found" in result.stdout
    assert mounted["scrape_configs"][0]["static_configs"][0]["targets"] == ["exporter:9764"]


@needs_promtool
@pytest.mark.parametrize("demo", [False, True], ids=["up", "demo"])
def test_native_prometheus_yml_passes_promtool_and_scrapes_only_localhost(tmp_path, demo):
    settings = settings_for(tmp_path, demo)
    render_native_configs(settings)
    path = settings.state / "prometheus" / "prometheus.yml"
    result = promtool_check(path)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    targets = [t for job in config["scrape_configs"] for group in job.get("static_configs", [])
               for t in group["targets"]]
    targets += [t for am in config["alerting"]["alertmanagers"] for g in am["static_configs"] for t in g["targets"]]
    assert sorted(set(targets)) == sorted({f"127.0.0.1:{settings.ports[n]}"
                                           for n in ("exporter", "prometheus", "alertmanager")})
    assert all(Path(p).parent.is_dir() for p in config["rule_files"])
    assert config["global"]["scrape_interval"] == ("5s" if demo else "15s")


@needs_promtool
def test_file_sd_example_is_valid_service_discovery_for_the_devflow_job(tmp_path):
    sd = tmp_path / "file_sd"
    sd.mkdir()
    shutil.copy(ROOT / "stack" / "file_sd" / "team.yml.example", sd / "team.yml")
    config = render_prometheus_config(
        yaml.safe_load((ROOT / "prometheus.yml").read_text()), {},
        {**compose_mounts(ROOT)["prometheus"], "/etc/prometheus/file_sd": sd})
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    assert promtool_check(path).returncode == 0
    (sd / "team.yml").write_text("- targets: [a:1]\n  labels: {'bad-label': x}\n")  # a broken one must fail
    assert promtool_check(path).returncode != 0


# --- native alertmanager.yml and Grafana provisioning ---------------------------------------------------------

def secret_paths(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k.endswith("_file") and isinstance(v, str)] + \
            [p for v in node.values() for p in secret_paths(v)]
    if isinstance(node, list):
        return [p for item in node for p in secret_paths(item)]
    return []


@requires("amtool")
def test_native_alertmanager_config_passes_amtool_with_placeholder_secrets(tmp_path):
    settings = settings_for(tmp_path)
    placeholders = render_native_configs(settings)
    path = settings.state / "alertmanager" / "alertmanager.yml"
    result = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    secrets = secret_paths(yaml.safe_load(path.read_text()))
    assert secrets, "alertmanager.yml reads no secret files"
    for secret in secrets:
        assert Path(secret).is_file()
        real = ROOT / "alerting" / "secrets" / Path(secret).name
        if not real.is_file():
            assert Path(secret).parent == settings.state / "alertmanager" / "secrets"
            assert Path(secret).name in placeholders
            assert Path(secret).stat().st_mode & 0o077 == 0


def test_native_alertmanager_config_uses_real_secret_files_where_they_exist(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "slack").write_text("https://hooks.slack.com/services/T/B/real\n")
    config = {"receivers": [{"name": "slack", "slack_configs": [{"api_url_file": "/etc/am/secrets/slack"}]},
                            {"name": "email", "email_configs": [{"auth_password_file": "secrets/smtp"}]}],
              "templates": ["templates/*.tmpl"]}
    rendered, placeholders = render_alertmanager_config(
        config, {"/etc/am/secrets": secrets}, tmp_path, tmp_path / "placeholders")
    assert rendered["receivers"][0]["slack_configs"][0]["api_url_file"] == str(secrets / "slack")
    fake = Path(rendered["receivers"][1]["email_configs"][0]["auth_password_file"])
    assert fake == tmp_path / "placeholders" / "smtp" and placeholders == ["smtp"]
    assert rendered["templates"] == [str(tmp_path / "templates" / "*.tmpl")]
    assert config["receivers"][0]["slack_configs"][0]["api_url_file"] == "/etc/am/secrets/slack"  # not mutated


def test_native_grafana_provisioning_points_at_native_prometheus_and_the_checkout_dashboards(tmp_path):
    settings = settings_for(tmp_path)
    render_native_configs(settings)
    provisioning = settings.state / "grafana" / "provisioning"
    datasources = [ds for f in (provisioning / "datasources").glob("*.yml")
                   for ds in yaml.safe_load(f.read_text())["datasources"]]
    assert [ds["url"] for ds in datasources if ds["type"] == "prometheus"] == [settings.url("prometheus")]
    providers = [p for f in (provisioning / "dashboards").glob("*.yml")
                 for p in yaml.safe_load(f.read_text())["providers"]]
    assert providers and all(Path(p["options"]["path"]) == ROOT / "dashboards" / "json" for p in providers)


# --- the command: mode choice, ports, PIDs -------------------------------------------------------------------

@pytest.fixture
def fake_docker(tmp_path):
    """A `docker` command that records its arguments: no engine can run here, so this stands in for one."""
    bin_dir, log = tmp_path / "bin", tmp_path / "docker.log"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text('#!/bin/sh\necho "$@" >> "$FAKE_DOCKER_LOG"\n'
                      'if [ "$1" = info ]; then exit "${FAKE_DOCKER_INFO_STATUS:-0}"; fi\nexit 0\n')
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_DOCKER_LOG": str(log),
           "DEVFLOW_STATE_DIR": str(tmp_path / "devflow-state")}
    for key in [k for k in env if k.startswith("DEVFLOW_STACK_") or k in TARGET_VARIABLES.values()]:
        del env[key]
    return env, log


def test_up_uses_compose_when_docker_info_succeeds_and_down_brings_it_down(tmp_path, fake_docker):
    env, log = fake_docker
    state = tmp_path / "state"
    result = cli("stack", "up", "--state-dir", str(state), env={**env, "GF_ADMIN_PASSWORD": "x"})
    assert result.returncode == 0, result.stderr
    assert "Running with docker compose: a Docker engine answers" in result.stdout
    calls = log.read_text().splitlines()
    assert f"compose -f {ROOT / 'docker-compose.yml'} up -d --build" in calls
    assert json.loads((state / "stack.json").read_text())["mode"] == "compose"
    assert Path(env["DEVFLOW_STATE_DIR"]).is_dir(), "left to Docker, the backup status folder would be root's"
    assert cli("stack", "down", "--state-dir", str(state), env=env).returncode == 0
    assert log.read_text().splitlines()[-1] == f"compose -f {ROOT / 'docker-compose.yml'} down"
    assert not (state / "stack.json").exists()


def public_build_command(workdir: Path) -> list[str]:
    """The one command the README gives for the public build run in workdir."""
    return ["--devflow.workdir", str(workdir), "--devflow.log-files", f"{workdir}/devflow.out,{workdir}/devflow.err",
            "--devflow.mode", "on_demand"]


@needs_compose
def test_compose_up_mounts_the_public_build_workdir_at_its_own_path_and_passes_the_one_command(tmp_path, fake_docker):
    env, log = fake_docker
    workdir, elsewhere = tmp_path / "project", tmp_path / "editor-logs"
    workdir.mkdir()
    state = tmp_path / "state"
    result = cli("stack", "up", "--state-dir", str(state), *public_build_command(workdir),
                 "--devflow.log-files", f"{elsewhere}/*.log", env={**env, "GF_ADMIN_PASSWORD": "x"})
    assert result.returncode == 0, result.stderr
    override = state / "compose.target.yml"
    up_call = f"compose -f {ROOT / 'docker-compose.yml'} -f {override} up -d --build"
    assert up_call in log.read_text().splitlines()

    exporter = resolved(tmp_path, {"GF_ADMIN_PASSWORD": "x"}, "docker-compose.yml", str(override))["services"]["exporter"]
    command = exporter["command"]
    assert command[command.index("--devflow.workdir") + 1] == str(workdir)
    assert command[command.index("--devflow.mode") + 1] == "on_demand"
    assert command[command.index("--devflow.log-files") + 1:] == [
        f"{workdir}/devflow.out", f"{workdir}/devflow.err", f"{elsewhere}/*.log"]
    assert not any(arg.startswith("--devflow.database") for arg in command), "the guide's database, not the workdir's"
    assert "/var/log/devflow/*.log" not in command
    mounts = {(source, target, mode) for service, source, target, mode in bind_mounts({"services": {"e": exporter}})}
    assert {(str(workdir), str(workdir), "ro"), (str(elsewhere), str(elsewhere), "ro")} <= mounts
    assert f"DevFlow: the public build in {workdir}" in result.stdout

    assert cli("stack", "down", "--state-dir", str(state), env=env).returncode == 0
    assert log.read_text().splitlines()[-1] == f"compose -f {ROOT / 'docker-compose.yml'} -f {override} down"


def test_make_up_passes_the_devflow_variables_on_as_stack_flags():
    variables = ["DEVFLOW_WORKDIR=/srv/project", "DEVFLOW_LOG_FILES=/srv/project/devflow.out,/srv/project/devflow.err",
                 "DEVFLOW_MODE=on_demand"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEVFLOW_")}
    result = subprocess.run(["make", "--no-print-directory", "-n", "up", *variables], cwd=ROOT, capture_output=True,
                            text=True, timeout=30, env=clean)
    command = result.stdout.splitlines()[-1]
    assert command.endswith("devflow-monitor stack up --devflow.workdir '/srv/project' --devflow.log-files "
                            "'/srv/project/devflow.out,/srv/project/devflow.err' --devflow.mode 'on_demand'"), command
    plain = subprocess.run(["make", "--no-print-directory", "-n", "up"], cwd=ROOT, capture_output=True, text=True,
                           timeout=30, env=clean)
    assert plain.stdout.splitlines()[-1].endswith("devflow-monitor stack up")


@pytest.mark.parametrize("args, variables, message", [
    (["--devflow.mode", "always"], {}, "--devflow.mode: must be one of daemon, on_demand, got 'always'"),
    ([], {"DEVFLOW_MODE": "ondemand"}, "DEVFLOW_MODE: must be one of daemon, on_demand, got 'ondemand'"),
    (["--devflow.workdir", "/nonexistent/project"], {}, "--devflow.workdir: /nonexistent/project is not a directory"),
], ids=["mode-flag", "mode-variable", "workdir"])
def test_a_bad_target_is_one_line_and_exit_2_before_anything_starts(tmp_path, fake_docker, args, variables, message):
    env, log = fake_docker
    state = tmp_path / "state"
    result = cli("stack", "up", "--state-dir", str(state), *args, env={**env, **variables, "GF_ADMIN_PASSWORD": "x"})
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert not log.exists() and not (state / "stack.json").exists()


def test_compose_up_without_an_admin_password_says_how_to_set_one(tmp_path, fake_docker):
    env, log = fake_docker
    if "GF_ADMIN_PASSWORD" in read_dotenv(ROOT / ".env"):
        pytest.skip("this checkout's .env sets GF_ADMIN_PASSWORD")
    env.pop("GF_ADMIN_PASSWORD", None)
    result = cli("stack", "up", "--state-dir", str(tmp_path / "state"), env=env)
    assert result.returncode == 1
    assert "GF_ADMIN_PASSWORD" in result.stderr and ".env" in result.stderr
    assert "up -d" not in log.read_text()


def test_compose_is_refused_with_the_reason_when_no_engine_answers(tmp_path, fake_docker):
    env, _ = fake_docker
    result = cli("stack", "up", "--compose", "--state-dir", str(tmp_path / "state"),
                 env={**env, "FAKE_DOCKER_INFO_STATUS": "1"})
    assert result.returncode == 1
    assert "no Docker engine answers" in result.stderr and "--native" in result.stderr


def test_up_refuses_a_busy_port_by_name_and_starts_nothing(tmp_path):
    """The exporter's port: the one component that starts whatever else is installed."""
    state = tmp_path / "state"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("stack", "up", "--native", "--state-dir", str(state), *port_flags(exporter=port))
    assert result.returncode == 1
    assert f"exporter port {port}" in result.stderr and "--NAME-port" in result.stderr
    assert not list((state / "run").glob("*.json")) and not (state / "stack.json").exists()


def test_down_leaves_alone_a_process_whose_pid_was_reused(tmp_path, spawn):
    """A record whose PID now belongs to another process (other start time) must not be signalled."""
    state = tmp_path / "state"
    (state / "run").mkdir(parents=True)
    stranger = spawn(["sleep", "30"])
    started = psutil.Process(stranger.pid).create_time()
    (state / "run" / "exporter.json").write_text(json.dumps(
        {"name": "exporter", "pid": stranger.pid, "create_time": started - 100, "argv": [], "log": ""}))
    (state / "stack.json").write_text(json.dumps({"mode": "native", "urls": {}, "skipped": {}}))
    result = cli("stack", "down", "--state-dir", str(state))
    assert result.returncode == 0
    assert "was not running" in result.stdout
    assert stranger.poll() is None
    assert not (state / "run" / "exporter.json").exists()


def test_status_without_a_stack_says_how_to_start_one(tmp_path):
    result = cli("stack", "status", "--state-dir", str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert "make up" in result.stdout


def test_dotenv_is_read_as_compose_reads_it(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# ports\n\nDEVFLOW_STACK_BIND=0.0.0.0\nexport GF_ADMIN_PASSWORD='s3cret # kept'\n"
                        'DEVFLOW_STACK_GRAFANA_PORT="3002"\n')
    assert read_dotenv(env_file) == {"DEVFLOW_STACK_BIND": "0.0.0.0", "GF_ADMIN_PASSWORD": "s3cret # kept",
                                     "DEVFLOW_STACK_GRAFANA_PORT": "3002"}
    assert read_dotenv(tmp_path / "missing.env") == {}


def test_stack_without_python_dotenv_names_the_extra_to_install(tmp_path):
    hidden = tmp_path / "hidden" / "dotenv"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    result = cli("stack", "status", "--state-dir", str(tmp_path / "state"),
                 env={**os.environ, "PYTHONPATH": str(hidden.parent)})
    assert result.returncode == 1
    assert result.stderr == "devflow-monitor: error: python-dotenv is missing: pip install 'devflow-monitor[stack]'\n"


def path_with_only(tmp_path: Path, *programs: str) -> str:
    """A PATH holding just these real programs, so what the plan finds does not depend on this machine."""
    bin_dir = tmp_path / "only-bin"
    bin_dir.mkdir()
    for program in programs:
        (bin_dir / program).symlink_to(deps.find(program))
    return str(bin_dir)


@requires("prometheus", "prometheus-alertmanager")
def test_without_grafana_the_built_in_dashboards_take_its_port_and_read_the_stack(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with_only(tmp_path, "prometheus", "prometheus-alertmanager"))
    settings = settings_for(tmp_path)
    components, skipped = plan_native(settings)
    assert [c.name for c in components] == ["exporter", "alertmanager", "prometheus", "webdash"]
    assert "grafana" in skipped
    argv = components[-1].argv
    assert argv[argv.index("-m") + 1:argv.index("-m") + 3] == ["devflow_monitor.cli", "webdash"]
    options = dict(zip(argv[argv.index("webdash") + 1::2], argv[argv.index("webdash") + 2::2]))
    assert options == {"--web.listen-address": f"127.0.0.1:{settings.ports['grafana']}",
                       "--prometheus.url": settings.url("prometheus"),
                       "--alertmanager.url": settings.url("alertmanager")}


def test_without_prometheus_nothing_serves_dashboards_that_could_only_say_it_is_down(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with_only(tmp_path))
    components, skipped = plan_native(settings_for(tmp_path))
    assert [c.name for c in components] == ["exporter"]
    assert set(skipped) == {"prometheus", "alertmanager", "grafana"}
    assert "make deps" in skipped["prometheus"]


# --- native runs with the real binaries -------------------------------------------------------------------

def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def port_flags(**chosen: int) -> list[str]:
    ports = dict(zip(DEFAULT_PORTS, distinct_free_ports(len(DEFAULT_PORTS))))
    ports.update(chosen)
    return [arg for name, port in ports.items() if name != "simulator" for arg in (f"--{name}-port", str(port))]


@pytest.fixture
def native_stack(tmp_path):
    """A state dir and ports for a native stack; whatever the test leaves running is stopped afterwards."""
    state = tmp_path / "state"
    names = list(DEFAULT_PORTS)
    ports = dict(zip(names, distinct_free_ports(len(names))))
    yield state, ports
    cli("stack", "down", "--state-dir", str(state))
    for path in (state / "run").glob("*.json"):  # only if `down` itself failed
        stop_recorded(json.loads(path.read_text()), timeout=5)


def flags(state: Path, ports: dict[str, int], demo: bool = False) -> list[str]:
    args = ["--native", "--state-dir", str(state)]
    for name, port in ports.items():
        if demo or name != "simulator":
            args += [f"--{name}-port", str(port)]
    return args


def records(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (state / "run").glob("*.json")]


def alive(record: dict) -> bool:
    return recorded_process(record) is not None


def query(prometheus: str, promql: str) -> list:
    url = f"{prometheus}/api/v1/query?query={urllib.request.quote(promql)}"
    return json.loads(http_get(url)[1])["data"]["result"]


def assert_everything_stopped(state: Path, started: list[dict], ports: dict[str, int]) -> None:
    assert started
    assert not any(alive(record) for record in started)
    assert all(port_is_free("127.0.0.1", port) for port in ports.values())
    assert not list((state / "run").glob("*.json")) and not (state / "stack.json").exists()


@pytest.mark.slow
@needs_native
def test_native_up_then_down_leaves_no_process_and_no_port_behind(native_stack):
    state, ports = native_stack
    up = cli("stack", "up", *flags(state, ports), timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    started = records(state)
    assert {r["name"] for r in started} >= {"exporter", "prometheus", "alertmanager"}
    assert all(alive(r) for r in started)
    for name in ("exporter", "prometheus", "alertmanager"):
        assert f"http://127.0.0.1:{ports[name]}" in up.stdout
    if not (shutil.which("grafana") or shutil.which("grafana-server")):
        assert re.search(r"^grafana\s+skipped\s+-\s+\S", up.stdout, re.MULTILINE)
        # The built-in dashboards, on Grafana's port.
        assert "webdash" in {r["name"] for r in started}
        assert f"Dashboards: http://127.0.0.1:{ports['grafana']} (the built-in" in up.stdout
        assert http_get(f"http://127.0.0.1:{ports['grafana']}/")[0] == 200

    # The pieces are wired together: Prometheus scrapes the exporter, loaded the rules, knows Alertmanager.
    prometheus = f"http://127.0.0.1:{ports['prometheus']}"
    wait_until(lambda: query(prometheus, 'up{job="devflow"} == 1'), 60, interval=0.5, message="the exporter scraped")
    rules = json.loads(http_get(f"{prometheus}/api/v1/rules")[1])["data"]["groups"]
    assert rules and all(g["file"].startswith(str(ROOT / "alerting" / "rules")) for g in rules)
    managers = json.loads(http_get(f"{prometheus}/api/v1/alertmanagers")[1])["data"]["activeAlertmanagers"]
    assert [m["url"] for m in managers] == [f"http://127.0.0.1:{ports['alertmanager']}/api/v2/alerts"]

    again = cli("stack", "up", *flags(state, ports), timeout=60)
    assert again.returncode == 0 and "already running" in again.stdout
    assert sorted(r["pid"] for r in records(state)) == sorted(r["pid"] for r in started)
    assert cli("stack", "status", "--state-dir", str(state)).returncode == 0

    down = cli("stack", "down", "--state-dir", str(state), timeout=120)
    assert down.returncode == 0, down.stderr
    assert_everything_stopped(state, started, ports)
    assert cli("stack", "status", "--state-dir", str(state)).returncode == 1


def test_demo_without_prometheus_injects_the_fault_at_once_instead_of_waiting_a_minute(native_stack, tmp_path):
    state, ports = native_stack
    env = {**os.environ, "PATH": path_with_only(tmp_path)}
    demo = cli("stack", "demo", *flags(state, ports, demo=True), "--fault-after", "60", env=env, timeout=45)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "injected at once" in demo.stdout and "make deps" in demo.stdout
    assert {r["name"] for r in records(state)} == {"simulator", "exporter"}
    assert "error_burst" in json.loads(http_get(f"http://127.0.0.1:{ports['simulator']}/faults")[1])["active"]


@pytest.mark.slow
@needs_native
def test_native_demo_injects_the_fault_and_an_alert_fires(native_stack):
    state, ports = native_stack
    demo = cli("stack", "demo", *flags(state, ports, demo=True), "--fault", "error_burst", "--fault-after", "0",
               "--wait", "240", timeout=420)
    started = records(state)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert {r["name"] for r in started} >= {"simulator", "exporter", "prometheus", "alertmanager"}
    assert "error_burst" in json.loads(http_get(f"http://127.0.0.1:{ports['simulator']}/faults")[1])["active"]
    assert re.search(r"^\S+ is firing\. Look at:", demo.stdout, re.MULTILINE), demo.stdout
    prometheus = f"http://127.0.0.1:{ports['prometheus']}"
    assert query(prometheus, 'devflow_process_up{job="devflow"} == 1'), "the exporter does not see the simulator"

    down = cli("stack", "down", "--state-dir", str(state), timeout=120)
    assert down.returncode == 0, down.stderr
    assert_everything_stopped(state, started, ports)


# The public build as `ps` sees it, `node <install>/dist/server/index.js`, run in its project's folder by an MCP
# client; here the simulator with no HTTP, like the public build. With argv[0] "node" Python cannot find its
# home from argv[0]: PYTHONHOME names it, and VENV_SITE this virtualenv's packages (the editable install's .pth).
PUBLIC_BUILD_STANDIN = r"""
import os, runpy, site, sys
site.addsitedir(os.environ["VENV_SITE"])
sys.argv = ["devflow-monitor", *sys.argv[1:]]
runpy.run_module("devflow_monitor.cli", run_name="__main__")
"""


def start_public_build_standin(spawn, tmp_path: Path) -> tuple[Path, subprocess.Popen]:
    """`simulate --listen none` started the public build's way: cwd the workdir (so <workdir>/data/devflow.db),
    stdout and stderr redirected to <workdir>/devflow.out and devflow.err; returns once the database exists."""
    workdir = tmp_path / "project"
    script = tmp_path / "devflow-mcp" / "dist" / "server" / "index.js"
    script.parent.mkdir(parents=True)
    script.write_text(PUBLIC_BUILD_STANDIN)
    workdir.mkdir()
    env = {**os.environ, "PYTHONHOME": sys.base_prefix, "VENV_SITE": sysconfig.get_paths()["purelib"],
           "PYTHONUNBUFFERED": "1"}
    with open(workdir / "devflow.out", "wb") as out, open(workdir / "devflow.err", "wb") as err:
        proc = spawn(["node", str(script), "simulate", "--database", "data/devflow.db", "--listen", "none",
                      "--rate", "20"], executable=sys.executable, cwd=workdir, env=env, stdout=out, stderr=err)
    wait_until(lambda: (workdir / "devflow.err").stat().st_size > 0 or proc.poll() is not None,
               message="the stand-in to start")
    assert proc.poll() is None, (workdir / "devflow.err").read_text()
    assert (workdir / "data" / "devflow.db").is_file()
    return workdir, proc


@pytest.mark.slow
@needs_native
def test_up_with_the_public_build_command_brings_its_data_to_the_dashboards(native_stack, spawn, tmp_path):
    state, ports = native_stack
    workdir, standin = start_public_build_standin(spawn, tmp_path)
    # Prometheus and Alertmanager only, so the built-in dashboards serve Grafana's port on any machine.
    env = {**{k: v for k, v in os.environ.items() if k not in TARGET_VARIABLES.values()},
           "PATH": path_with_only(tmp_path, "prometheus", "prometheus-alertmanager")}
    # Other tests on this machine run `node .../server/index.js` stand-ins too: a config file narrows the pattern to
    # this one's install folder, and the one command's flags go over it.
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump({"devflow": {"process_pattern": re.escape(str(tmp_path / "devflow-mcp"))}}))
    up = cli("stack", "up", *flags(state, ports), "--exporter-config", str(config), *public_build_command(workdir),
             env=env, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"DevFlow: the public build in {workdir} (database data/devflow.db); mode on_demand; logs " \
           f"{workdir}/devflow.out, {workdir}/devflow.err." in up.stdout
    started = records(state)
    exporter_argv = next(r["argv"] for r in started if r["name"] == "exporter")
    assert exporter_argv[exporter_argv.index("--devflow.mode") + 1] == "on_demand"

    prometheus, instance = f"http://127.0.0.1:{ports['prometheus']}", f'instance="127.0.0.1:{ports["exporter"]}"'
    start_time = wait_until(lambda: query(prometheus, f"devflow_process_start_time_seconds{{{instance}}}"), 90,
                            interval=0.5, message="the exporter to find the stand-in")
    assert abs(float(start_time[0]["value"][1]) - psutil.Process(standin.pid).create_time()) < 1
    assert query(prometheus, f"devflow_process_up{{{instance}}} == 1")
    assert query(prometheus, f"devflow_process_matches{{{instance}}} == 1")
    stored = wait_until(lambda: query(prometheus, f"sum(devflow_events_stored{{{instance}}}) > 0"), 120,
                        interval=0.5, message="events stored in <workdir>/data/devflow.db")
    err_log = wait_until(lambda: query(prometheus, f'devflow_log_file_size_bytes{{{instance},file=~".*devflow.err"}}'
                                                   " > 0"), 60, interval=0.5, message="the stderr file read")
    assert err_log[0]["metric"]["file"].endswith("devflow.err")

    # The built-in dashboards answer the same queries through their Prometheus proxy.
    dashboards = f"http://127.0.0.1:{ports['grafana']}/api/v1/query?query="
    for promql in (f"devflow_process_up{{{instance}}} == 1", f"sum(devflow_events_stored{{{instance}}}) > 0"):
        status, body = http_get(dashboards + urllib.request.quote(promql))
        assert status == 200 and json.loads(body)["data"]["result"], (promql, body)
    assert float(stored[0]["value"][1]) > 0

    again = cli("stack", "up", *flags(state, ports), "--devflow.mode", "daemon", env=env, timeout=60)
    assert again.returncode == 0 and "not this command's --devflow.* settings" in again.stdout, again.stdout
    assert sorted(r["pid"] for r in records(state)) == sorted(r["pid"] for r in started)

    down = cli("stack", "down", "--state-dir", str(state), timeout=120)
    assert down.returncode == 0, down.stderr
    assert_everything_stopped(state, started, ports)
    assert standin.poll() is None, "`stack down` stops only what `stack up` started"
