"""`devflow-monitor simulate`: a stand-in DevFlow server for demos and tests (real SQLite, real log lines, faults on request)."""
