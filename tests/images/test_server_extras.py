"""The server runs on its own install, `ebr[serve]`: in a fresh interpreter where every installed distribution
that install does not pull is hidden (the pipeline stack among them: KFP, Great Expectations, MLflow,
scikit-learn, the Kubernetes client, matplotlib, DuckDB), and the `pipelines`/`components` packages the server
image does not copy are absent, the server imports, answers /search over a real published bundle, and
`ebr serve --help` works while `ebr pipeline` names the extra it needs."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.images.extras import REPO, canonical, installed_closure, modules_outside, project_requirements

# What only the daily pipeline needs: none of it may be pulled by the server install.
PIPELINE_MODULES = ["kfp", "great_expectations", "mlflow", "sklearn", "kubernetes", "matplotlib", "duckdb",
                    "onnx", "scipy"]
PIPELINE_DISTS = {"kfp", "kfp-kubernetes", "great-expectations", "mlflow", "mlflow-skinny", "scikit-learn",
                  "kubernetes", "matplotlib", "duckdb", "onnx"}
# Top-level packages of this repository the server image does not copy.
NOT_IN_SERVER_IMAGE = ["pipelines", "components"]


@pytest.fixture(scope="module")
def serve_install() -> set[str]:
    """The installed distributions `pip install 'ebr[serve]'` pulls (from pyproject.toml and their metadata)."""
    return installed_closure(project_requirements({"serve"}))


def test_serve_install_leaves_out_the_pipeline_stack(serve_install):
    assert serve_install >= {"torch", "faiss-cpu", "feast", "fastapi", "uvicorn", "prometheus-client", "bm25s",
                             "jieba", "pyarrow", "pydantic"}
    assert not serve_install & PIPELINE_DISTS, sorted(serve_install & PIPELINE_DISTS)
    assert set(PIPELINE_MODULES) <= modules_outside(serve_install)
    pipeline_install = installed_closure(project_requirements({"pipeline"}))
    assert pipeline_install >= PIPELINE_DISTS - {"mlflow-skinny"}
    # dev installs every role: `make install` gives the tests the server and the pipeline
    assert installed_closure(project_requirements({"dev"})) >= serve_install | pipeline_install | {"redis"}


def _probe(tmp_path: Path, serve_install: set[str], **spec: object) -> dict:
    hidden = sorted({canonical(d.metadata["Name"]) for d in md.distributions()} - serve_install - {"ebr"})
    spec = {"hidden_dists": hidden, "hidden_modules": NOT_IN_SERVER_IMAGE,
            "expect_missing": PIPELINE_MODULES + NOT_IN_SERVER_IMAGE, **spec}
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(spec, default=str), encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "tests.images.server_probe", str(path)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-6000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_server_answers_without_the_pipeline_stack(tmp_path, published_root, serve_install):
    report = _probe(tmp_path, serve_install, bundles=published_root, query="acme running shoes")

    assert report["found_hidden"] == [], "the hiding finder must make these unimportable"
    assert report["loaded_hidden"] == []
    assert report["search_status"] == 200, report["search"]
    body = report["search"]
    assert body["bundle_version"] == "v1"
    assert 1 <= len(body["items"]) <= 5
    assert all(isinstance(it["doc_id"], int) for it in body["items"])

    serve_help = report["serve_help"]
    assert serve_help["code"] == 0, serve_help["stderr"]
    assert "--bundles" in serve_help["stdout"] and "--feature-repo" in serve_help["stdout"]

    pipeline = report["pipeline_run"]
    assert pipeline["code"] == 2
    assert "ebr pipeline needs the pipeline extra: pip install 'ebr[pipeline]'" in pipeline["stderr"]


@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory) -> Path:
    """A features directory (ebr.features layout) whose SQLite online store holds the profile of user 7."""
    import pandas as pd

    from ebr.features import open_store
    from ebr.features.definitions import VIEW_BY_NAME
    from ebr.features.encoding import encode_list

    out = tmp_path_factory.mktemp("features") / "features"
    out.mkdir()
    store = open_store(out)  # applies the project's definitions
    values = {"user_gender": "f", "user_age": 31.0, "user_city": "hangzhou", "user_profile_tags": ["sports"]}
    row: dict[str, list] = {"user_id": [7], "event_timestamp": [pd.Timestamp.now(tz="UTC")]}
    for f in VIEW_BY_NAME["user_profile"].features:
        value = values.get(f.name)
        row[f.name] = [encode_list(value) if f.dtype.startswith("list") else value]
    store.write_to_online_store("user_profile", pd.DataFrame(row))
    return out


@pytest.mark.slow
def test_server_reads_online_features_without_the_pipeline_stack(tmp_path, published_root, feature_dir,
                                                                 serve_install):
    """The online path of ebr.features (Feast, SQLite online store) needs nothing from the pipeline extra."""
    report = _probe(tmp_path, serve_install, bundles=published_root, features=feature_dir, user_id=7,
                    query="acme running shoes")
    assert report["found_hidden"] == []
    assert report["search_status"] == 200, report["search"]
    assert report["search"]["personalized"] is True
    assert report["search"]["degraded"] is None


def _plugin_dist(root: Path, commands: dict[str, str], modules: dict[str, str]) -> Path:
    """A real installed distribution under `root` (dist-info with `ebr.commands` entry points) and its modules."""
    info = root / "ebr_probe_plugins-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ebr-probe-plugins\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in commands.items())
    (info / "entry_points.txt").write_text(f"[ebr.commands]\n{lines}")
    package = root / "ebr_probe_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in modules.items():
        (package / f"{name}.py").write_text(source)
    return root


# `ebr ARGV` in a fresh interpreter, the CLI's own debug log on stderr
EBR = ("import logging, sys; from ebr.cli import main; log = logging.getLogger('ebr.cli'); "
       "log.addHandler(logging.StreamHandler()); log.setLevel(logging.DEBUG); sys.exit(main(sys.argv[1:]))")


def _ebr(argv: list[str], plugins: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(plugins)}
    return subprocess.run([sys.executable, "-c", EBR, *argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_cli_leaves_out_a_command_whose_dependency_is_missing_and_names_its_extra(tmp_path):
    plugins = _plugin_dist(tmp_path, {"lexicon": "ebr_probe_plugins.lexicon:register"},
                           {"lexicon": "import ebr_probe_no_such_library\n\ndef register(sub):\n    pass\n"})
    listing = _ebr(["--help"], plugins)
    assert listing.returncode == 0, listing.stderr[-3000:]
    assert "lexicon" in listing.stdout and "serve" in listing.stdout and "pipeline" in listing.stdout
    assert "ebr lexicon left out: No module named 'ebr_probe_no_such_library'" in listing.stderr

    called = _ebr(["lexicon", "build", "--fast", "--help"], plugins)
    assert called.returncode == 2
    assert "ebr lexicon needs the lexicon extra: pip install 'ebr[lexicon]'" in called.stderr
    core = _ebr(["config"], plugins)  # the other commands are unaffected
    assert core.returncode == 0 and core.stdout.strip(), core.stderr[-3000:]


def test_cli_does_not_hide_a_module_missing_inside_a_plugin_package(tmp_path):
    """A plugin package that is there but imports a module of its own that is not: a bug, not an absent extra."""
    plugins = _plugin_dist(tmp_path, {"lexicon": "ebr_probe_plugins.lexicon:register"},
                           {"lexicon": "import ebr_probe_plugins.not_written\n\ndef register(sub):\n    pass\n"})
    res = _ebr(["--help"], plugins)
    assert res.returncode != 0
    assert "ModuleNotFoundError: No module named 'ebr_probe_plugins.not_written'" in res.stderr
