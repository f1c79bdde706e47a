"""The daemon (`devflow-monitor serve`): collectors, exposition and HTTP serving. It imports only core.

What the code relies on about the monitored server, and "the guide" its comments cite, are in
docs/devflow.md.
"""
