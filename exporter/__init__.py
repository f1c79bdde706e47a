"""devflow-monitor: Prometheus exporter and operator CLI for the DevFlow Monitor MCP server."""

__version__ = "0.1.0"
