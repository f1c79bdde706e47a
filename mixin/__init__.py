"""The Jsonnet monitoring-mixin view of the alerts, recording rules and dashboards (../mixin.libsonnet)."""
