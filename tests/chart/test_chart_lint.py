"""`helm lint` through the embedded Helm v4 engine (helm_python): no errors, no warnings."""

from __future__ import annotations

import helm_python
import pytest

from tests.chart.manifests import ALL_ON, ALL_ON_GCS, CHART_DIR, KUBE_VERSION

ERROR, WARNING = 3, 2


def _lint(values=None, **opts):
    report = helm_python.lint(CHART_DIR, values, namespace="search", kube_version=f"v{KUBE_VERSION}", **opts)
    for m in report["messages"]:  # shown with `pytest -s`; the INFO "icon is recommended" is expected
        print(f"lint severity={m['severity']} {m['path']}: {m['error'].strip()}")
    return report


@pytest.mark.parametrize("values", [None, ALL_ON, ALL_ON_GCS], ids=["defaults", "all-on-s3", "all-on-gcs"])
def test_lint_has_no_errors_or_warnings(values):
    report = _lint(values)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= WARNING] == []


def test_lint_strict_mode_passes():
    report = _lint(strict=True)
    assert report["errors"] == []


def test_lint_reports_schema_violation_as_error():
    """The lint run is real: values outside the schema are reported, naming the field."""
    report = _lint({"replicaCount": -3})
    errors = [m for m in report["messages"] if m["severity"] == ERROR]
    assert errors, report
    assert any("/replicaCount" in m["error"] for m in errors)


def test_chart_metadata(chart):
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["type"] == "application"
    assert meta["name"] == "query-tower"
    assert meta["appVersion"]
    assert chart.schema is not None, "values.schema.json must ship with the chart"
