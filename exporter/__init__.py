"""The daemon (`devflow-monitor serve`): collectors, the metric catalog, configuration and HTTP.

What the code relies on about the monitored server, and "the guide" its comments cite, are in
docs/devflow.md.
"""

__version__ = "0.1.0"
