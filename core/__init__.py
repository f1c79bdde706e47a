"""What every room stands on: the metric catalog, the settings and their loader, the DevFlow database
and log formats, web-config auth and TLS, the HTTP client, file helpers and the command-line plumbing.

core imports no other room of this project. docs/architecture.md shows the rooms and how a scrape and a
settings value travel through them.
"""

from importlib import metadata

# pyproject.toml is the version's one home; an installed (or editable) distribution reports it.
__version__ = metadata.version("devflow-monitor")
