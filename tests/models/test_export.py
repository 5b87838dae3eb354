"""Export of the towers (and any dict-input module) and loading them back: parity with eager, manifest,
checksums and input checks."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ebr.artifacts.checksums import sha256_file
from ebr.models.config import USER_INPUTS, FeaturizerConfig, tower_reads
from ebr.models.export import ExportError, export_modules, export_two_tower, load_exported, recorded_query_tower
from ebr.models.inputs import featurize_docs, featurize_queries
from ebr.models.two_tower import TwoTowerModel
from tests.models.rows import doc_rows, logged_in_row, logged_out_row, small_config


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _PairScorer(nn.Module):
    """A module of two submodules over {"query", "doc"} vectors: a crossing layer, then per-task logits."""

    def __init__(self, dim: int, hidden: int = 16, tasks: int = 3) -> None:
        super().__init__()
        self.cross = nn.Sequential(nn.Linear(3 * dim, hidden), nn.ReLU())
        self.out = nn.Linear(hidden, tasks)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        q, d = inputs["query"], inputs["doc"]
        return self.out(self.cross(torch.cat([q, d, q * d], dim=-1)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = small_config(query_tower={"bilinear": True}, doc_tower={"senet": True})
    model = TwoTowerModel(cfg)
    scorer = _PairScorer(cfg.query_tower.out_dim)
    with torch.no_grad():  # move weights off their init so parity is checked on non-trivial values
        for p in [*model.parameters(), *scorer.parameters()]:
            p.add_(0.05 * torch.randn_like(p))
    model.eval(), scorer.eval()
    q = featurize_queries([logged_in_row(), logged_out_row()], cfg.featurizer)
    d = featurize_docs(doc_rows()[:2], cfg.featurizer)
    with torch.no_grad():
        vectors = {"query": model.query_tower(q), "doc": model.doc_tower(d)}
    out = tmp_path_factory.mktemp("export") / "model"
    export_two_tower(model, out, query_inputs=q, doc_inputs=d, model_version="2026-11-06.r1",
                     extra_modules={"scorer": (scorer, vectors)})
    return model, cfg, out, scorer


@pytest.fixture(scope="module")
def bundle(exported):
    return load_exported(exported[2])


def test_exported_towers_match_eager_on_featurized_rows(exported, bundle):
    model, cfg, _, scorer = exported
    queries = [logged_in_row(), logged_out_row(), logged_in_row("Apple iPhone case"), {"query": "运动鞋 男"}]
    for rows in (queries[:1], queries[1:2], queries):  # batch sizes other than the example's
        x = featurize_queries(rows, cfg.featurizer)
        with torch.no_grad():
            eager = model.query_tower(x)
        got = bundle["query_tower"](x)
        assert got.shape == eager.shape
        assert (got - eager).abs().max() <= 1e-5
    docs = featurize_docs(doc_rows(), cfg.featurizer)
    with torch.no_grad():
        eager_docs = model.doc_tower(docs)
    assert (bundle["doc_tower"](docs) - eager_docs).abs().max() <= 1e-5
    qv = model.query_tower(featurize_queries(queries[:3], cfg.featurizer)).detach()
    with torch.no_grad():
        scores = scorer({"query": qv, "doc": eager_docs})
    assert (bundle["scorer"]({"query": qv, "doc": eager_docs}) - scores).abs().max() <= 1e-5


def test_callable_takes_the_full_featurizer_dict_and_ignores_extra_keys(exported, bundle):
    _, cfg, _, _ = exported
    x = featurize_queries([logged_in_row()], cfg.featurizer)
    x["something_else"] = torch.zeros(1)
    assert bundle["query_tower"](x).shape == (1, cfg.query_tower.out_dim)
    assert bundle["query_tower"].output_dim == cfg.query_tower.out_dim


def test_manifest_records_featurizer_dims_version_and_checksums(exported, bundle):
    _, cfg, out, _ = exported
    manifest = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert manifest["model_version"] == "2026-11-06.r1"
    assert FeaturizerConfig.model_validate(manifest["featurizer"]) == cfg.featurizer
    assert manifest["config"]["embedding_dim"] == cfg.query_tower.out_dim
    assert manifest["config"]["temperature"] == cfg.effective_temperature
    assert set(manifest["modules"]) == {"query_tower", "doc_tower", "scorer"}
    assert manifest["modules"]["scorer"]["output"]["shape"] == [None, 3]
    for entry in manifest["modules"].values():
        assert entry["sha256"] == sha256_file(out / entry["file"])
    spec = manifest["modules"]["query_tower"]["inputs"]["seq_rt_doc_ids"]
    assert spec == {"dtype": "int64", "shape": [None, cfg.featurizer.max_len.seq_rt]}
    assert bundle.featurizer == cfg.featurizer and bundle.model_version == "2026-11-06.r1"
    recorded = recorded_query_tower(manifest)
    assert recorded is not None and tower_reads(recorded), "the personalized test tower reads user inputs"
    assert not tower_reads({**recorded, "personalization": False})
    assert not tower_reads({**recorded, **dict.fromkeys(USER_INPUTS, False)}), "personalization without inputs"
    assert tower_reads({**recorded, **dict.fromkeys(USER_INPUTS, False), "query_history": True})
    assert recorded_query_tower({"config": {}}) is None and tower_reads(None), "no record: assume it reads them"


def test_bad_inputs_are_named(exported, bundle):
    _, cfg, _, _ = exported
    tower = bundle["query_tower"]
    x = featurize_queries([logged_in_row()], cfg.featurizer)
    missing = {k: v for k, v in x.items() if k != "seq_st_doc_ids"}
    with pytest.raises(ValueError, match="seq_st_doc_ids"):
        tower(missing)
    with pytest.raises(ValueError, match="query_words"):
        tower({**x, "query_words": x["query_words"][:, :3]})
    with pytest.raises(ValueError, match="user_id"):
        tower({**x, "user_id": x["user_id"].float()})


def test_only_the_named_modules_are_loaded(exported, bundle):
    model, cfg, path, _ = exported
    query_only = load_exported(path, only=["query_tower"])
    assert set(query_only.modules) == {"query_tower"}
    x = featurize_queries([logged_in_row(), logged_out_row()], cfg.featurizer)
    assert torch.equal(query_only["query_tower"](x), bundle["query_tower"](x))
    with pytest.raises(KeyError, match="'doc_tower' was not loaded"):
        query_only["doc_tower"]
    manifest_only = load_exported(path, only=())
    assert manifest_only.modules == {} and manifest_only.featurizer == cfg.featurizer
    assert manifest_only.output_dim("query_tower") == bundle["query_tower"].output_dim == cfg.query_tower.out_dim
    assert manifest_only.output_dim("scorer") == bundle["scorer"].output_dim
    asked = load_exported(path, only=["query_tower", "rerank"])  # an absent module is named where it is used
    with pytest.raises(KeyError, match="has no module 'rerank'"):
        asked["rerank"]


def test_tampered_file_fails_the_checksum(exported, tmp_path):
    import shutil

    _, _, out, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "scorer.pt2", "ab") as f:
        f.write(b"x")
    with pytest.raises(ExportError, match="scorer.pt2"):
        load_exported(copy)
    (copy / "export.json").unlink()
    with pytest.raises(ExportError, match="export.json"):
        load_exported(copy)


def test_an_extra_module_may_not_take_a_tower_name(exported, tmp_path):
    model, cfg, _, scorer = exported
    q = featurize_queries([logged_in_row()], cfg.featurizer)
    d = featurize_docs(doc_rows()[:1], cfg.featurizer)
    vectors = {"query": torch.zeros(1, 8), "doc": torch.zeros(1, 8)}
    with pytest.raises(ExportError, match="query_tower"):
        export_two_tower(model, tmp_path / "m", query_inputs=q, doc_inputs=d, model_version="v1",
                         extra_modules={"query_tower": (scorer, vectors)})
    assert not (tmp_path / "m").exists()


class _ScoreHead(nn.Module):
    """A stand-in for a later module (e.g. a coarse ranker) taking a dict of tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 1)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.proj(inputs["query"] * inputs["doc"]).squeeze(-1)


def test_any_dict_input_module_exports_and_existing_dirs_are_protected(tmp_path):
    torch.manual_seed(0)
    head = _ScoreHead().eval()
    ex = {
        "query": torch.randn(1, 8),
        "doc": torch.randn(1, 8),
    }  # a batch of one still exports a dynamic batch
    out = export_modules(tmp_path / "ranker", {"coarse": head}, {"coarse": ex}, model_version="v1")
    loaded = load_exported(out)
    assert loaded.featurizer is None
    big = {"query": torch.randn(5, 8), "doc": torch.randn(5, 8)}
    with torch.no_grad():
        assert (loaded["coarse"](big) - head(big)).abs().max() <= 1e-6
    with pytest.raises(ExportError, match="already exists"):
        export_modules(out, {"coarse": head}, {"coarse": ex}, model_version="v1")
    export_modules(out, {"coarse": head}, {"coarse": ex}, model_version="v2", overwrite=True)
    assert load_exported(out).model_version == "v2"
    with pytest.raises(ExportError, match="example_inputs"):
        export_modules(tmp_path / "x", {"coarse": head}, {}, model_version="v1")
    with pytest.raises(KeyError, match="coarse"):
        loaded["missing"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary directory left behind
