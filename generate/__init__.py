"""Helpers for the generated files committed in the repository (rules, dashboards, mixin inputs, docs/metrics.md)."""
