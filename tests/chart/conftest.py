from __future__ import annotations

import helm_python
import pytest

from tests.chart.manifests import ALL_ON, CHART_DIR, Rendered, render


@pytest.fixture(scope="session")
def chart():
    loaded = helm_python.Chart.load(CHART_DIR)
    yield loaded
    loaded.close()


@pytest.fixture(scope="session")
def default_render(chart) -> Rendered:
    return render(chart)


@pytest.fixture(scope="session")
def all_on_render(chart) -> Rendered:
    return render(chart, ALL_ON)
