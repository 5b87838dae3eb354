"""The container images of the project: the one place their names are written.

The compiled pipeline (components' `base_image`), the Dockerfiles' build instructions, the Helm chart's default
`image.repository` and docs/deploy.md all use these names; tests/images checks that they agree. Users push to
their own registry and compile with `ebr pipeline compile --image REGISTRY/ebr/components:TAG`.
"""

from __future__ import annotations

REGISTRY = "registry.example.com/ebr"
VERSION = "0.1.0"

COMPONENT_REPOSITORY = f"{REGISTRY}/components"
SERVER_REPOSITORY = f"{REGISTRY}/query-tower"
COMPONENT_IMAGE = f"{COMPONENT_REPOSITORY}:{VERSION}"
SERVER_IMAGE = f"{SERVER_REPOSITORY}:{VERSION}"
