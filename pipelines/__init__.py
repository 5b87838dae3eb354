"""Kubeflow Pipelines definitions of the daily ebr run (compiled YAML committed beside them)."""
