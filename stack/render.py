"""The native mode's copies of prometheus.yml, alertmanager.yml and Grafana's provisioning.

Compose addresses and container paths become the native ones; a missing notification secret becomes a
placeholder file so a native run needs none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from devflow_monitor.stack.options import COMPOSE_FILE, DEMO_INTERVAL, StackOptions

# Where compose mounts Grafana's dashboards (dashboards/provisioning points its file provider here).
GRAFANA_DASHBOARDS_IN_CONTAINER = "/var/lib/grafana/dashboards/devflow"
# Written instead of a missing secret, so a native run needs none: port 9 (discard) refuses the connection.
PLACEHOLDER_URL = "http://127.0.0.1:9/devflow-monitor-placeholder"
PLACEHOLDER_TEXT = "devflow-monitor-placeholder"


def render_native_configs(settings: StackOptions) -> list[str]:
    """Write .stack/ copies of prometheus.yml, alertmanager.yml and Grafana's provisioning for a native run;
    returns the secrets that got placeholders."""
    repo, state = settings.repo, settings.state
    mounts = compose_mounts(repo)
    targets = native_targets(repo, settings)
    config = yaml.safe_load((repo / "prometheus.yml").read_text(encoding="utf-8"))
    interval = DEMO_INTERVAL if settings.demo else config["global"]["scrape_interval"]
    prometheus = render_prometheus_config(config, targets, mounts["prometheus"], interval=interval)
    _write_yaml(state / "prometheus" / "prometheus.yml", prometheus, "prometheus.yml")
    alertmanager, placeholders = render_alertmanager_config(
        yaml.safe_load((repo / "alerting" / "alertmanager.yml").read_text(encoding="utf-8")),
        mounts["alertmanager"], repo / "alerting", state / "alertmanager" / "secrets")
    _write_yaml(state / "alertmanager" / "alertmanager.yml", alertmanager, "alerting/alertmanager.yml")
    render_grafana_provisioning(repo / "dashboards" / "provisioning", state / "grafana" / "provisioning",
                                settings.url("prometheus"), repo / "dashboards" / "json", interval)
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


def native_targets(repo: Path, settings: StackOptions) -> dict[str, str]:
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


def render_grafana_provisioning(source: Path, target: Path, prometheus_url: str, dashboards_json: Path,
                                scrape_interval: str) -> None:
    """Grafana's provisioning with the datasource at the native Prometheus, its timeInterval at the interval
    Prometheus scrapes at (so $__rate_interval agrees), and the dashboards read in place."""
    for kind in ("datasources", "dashboards"):
        (target / kind).mkdir(parents=True, exist_ok=True)
        for old in (target / kind).glob("*.yml"):
            old.unlink()
        for path in sorted((source / kind).glob("*.yml")):
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for datasource in config.get("datasources") or []:
                if datasource.get("type") == "prometheus":
                    datasource["url"] = prometheus_url
                    datasource.setdefault("jsonData", {})["timeInterval"] = scrape_interval
            for provider in config.get("providers") or []:
                options = provider.get("options") or {}
                if str(options.get("path", "")).startswith(GRAFANA_DASHBOARDS_IN_CONTAINER):
                    options["path"] = str(dashboards_json) + options["path"][len(GRAFANA_DASHBOARDS_IN_CONTAINER):]
            _write_yaml(target / kind / path.name, config, f"dashboards/provisioning/{kind}/{path.name}")


def _write_yaml(path: Path, data: dict, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Rendered from {source} by `devflow-monitor stack` for a native run; edit the source instead.\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
