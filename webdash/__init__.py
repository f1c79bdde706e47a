"""The built-in web dashboards: the committed Grafana JSON drawn in a browser without Grafana.

`devflow-monitor webdash` serves dashboards/json/*.json as they are, a small page that draws them
(plain JavaScript modules in static/, uPlot for the charts) and a same-origin proxy to Prometheus'
query API, so the page runs each panel's own PromQL. It is its own process, so the exporter stays light.
"""
