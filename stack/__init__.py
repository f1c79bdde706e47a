"""`devflow-monitor stack up|demo|down|status`: Prometheus, Alertmanager, Grafana and the exporter, with compose or natively."""
