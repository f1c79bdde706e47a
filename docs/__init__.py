"""Package data only: installed so the exporter can serve runbook.md at /runbook (exporter/runbook.py)."""
