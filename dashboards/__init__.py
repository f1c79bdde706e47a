"""Grafana dashboards as code.

One module per dashboard (each defines `dashboard(settings)`, built with `dashboards.grafana`);
`python -m devflow_monitor.dashboards.build` (`make dashboards`) writes their JSON to dashboards/json/,
which Grafana loads through the file provider in dashboards/provisioning/.
"""

# Module names, in the order the dashboards appear in the "DevFlow dashboards" links.
DASHBOARDS = ("overview", "performance", "errors", "activity", "exporter")
