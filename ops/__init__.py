"""Operator commands: the operations guide's sections 6-8 as commands that check their own work.

- `doctor`    the guide's troubleshooting script, as checks with a verdict and a next step
- `backup`    an online, verified copy through SQLite's backup API, plus config and logs
- `restore`   a verified, atomic swap that keeps the database it replaces
- `maintain`  retention in short batches, ANALYZE, VACUUM only with room for it, old log cleanup
- `dashboard` the guide's CLI views over the exporter's /metrics or Prometheus

Each command's module defines `register(subparsers)` for `devflow_monitor.cli`. The dashboard's parts
live beside it: `dashboard_sources` (the exporter or Prometheus, read into snapshots), `dashboard_history`
(the last snapshots and their rates) and `dashboard_views` (each view's rows and levels).

"The guide" and its section numbers ("guide 6.1") in this room's comments are summarised in docs/devflow.md.
"""
