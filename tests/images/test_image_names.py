"""One image name per image (ebr/images.py) everywhere it is written: the Dockerfiles' build lines, the docs,
the Helm chart's defaults and the compiled pipelines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ebr.images import COMPONENT_IMAGE, REGISTRY, SERVER_IMAGE, SERVER_REPOSITORY, VERSION

ROOT = Path(__file__).resolve().parents[2]
IMAGE_REF = re.compile(r"\b[\w.-]+\.[a-z]{2,}(?::\d+)?/[\w./-]+:[\w.-]+")  # host/path:tag
PROJECT_FILES = [*ROOT.glob("*.md"), *(ROOT / "docs").glob("*.md"), *(ROOT / "pipelines").glob("*.yaml"),
                 ROOT / "components" / "Dockerfile", ROOT / "serving" / "Dockerfile",
                 *(ROOT / "helm").rglob("*.yaml")]


@pytest.mark.parametrize(("dockerfile", "image"), [("components/Dockerfile", COMPONENT_IMAGE),
                                                   ("serving/Dockerfile", SERVER_IMAGE)])
def test_dockerfile_build_line_names_the_image(dockerfile: str, image: str):
    text = (ROOT / dockerfile).read_text(encoding="utf-8")
    assert f"docker build -f {dockerfile} -t {image} ." in text


def test_docs_build_and_push_the_same_images():
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for image, dockerfile in ((SERVER_IMAGE, "serving/Dockerfile"), (COMPONENT_IMAGE, "components/Dockerfile")):
        assert re.search(rf"docker build -f {re.escape(dockerfile)}\s+-t {re.escape(image)} \.", text), image
        assert f"docker push {image}" in text


def test_chart_defaults_to_the_server_image_at_the_project_version():
    values = yaml.safe_load((ROOT / "helm" / "query-tower" / "values.yaml").read_text(encoding="utf-8"))
    chart = yaml.safe_load((ROOT / "helm" / "query-tower" / "Chart.yaml").read_text(encoding="utf-8"))
    assert values["image"]["repository"] == SERVER_REPOSITORY
    assert str(chart["appVersion"]) == VERSION


def test_no_other_project_image_name_is_written_anywhere():
    """Every `host/path:tag` reference under the project's registry is one of the two images; no stale
    registry (such as an old ghcr.io name) survives in docs, Dockerfiles, chart or compiled YAML."""
    allowed = {COMPONENT_IMAGE, SERVER_IMAGE}
    for path in PROJECT_FILES:
        text = path.read_text(encoding="utf-8")
        assert "ghcr.io/ebr" not in text, path
        for ref in IMAGE_REF.findall(text):
            if ref.startswith(REGISTRY + "/"):
                assert ref in allowed, f"{path.relative_to(ROOT)}: {ref}"
