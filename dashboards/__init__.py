"""Grafana dashboards as code.

One module per dashboard (each defines `dashboard(settings)`, built with `dashboards.grafana`);
`python -m devflow_monitor.dashboards.build` (`make dashboards`) writes their JSON to dashboards/json/,
which Grafana loads through the file provider in dashboards/provisioning/.

"The guide" and its section numbers ("guide 6.1") in this room's comments are summarised in docs/devflow.md.
"""

# Module names, in the order the dashboards appear in the "DevFlow dashboards" links.
DASHBOARDS = ("overview", "performance", "errors", "activity", "exporter")
