"""Image tests reuse the serving fixtures: a real bundle, built and published with the pipeline's own steps."""

from tests.serving.conftest import parts, published_root  # noqa: F401 (fixtures)
