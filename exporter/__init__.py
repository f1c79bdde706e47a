"""The daemon (`devflow-monitor serve`): collectors, the metric catalog, configuration and HTTP."""

__version__ = "0.1.0"
