"""`devflow-monitor simulate`: a stand-in DevFlow server for demos and tests (real SQLite, real log lines, faults on request).

It imitates the server described in docs/devflow.md, the source of the "guide" its comments cite.
"""
