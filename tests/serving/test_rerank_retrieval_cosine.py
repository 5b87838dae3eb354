"""Re-ranking with a coarse ranker that reads the retrieval cosine: embedding-channel candidates bring their ANN
score, lexical-only ones q . d over the vector the index stores (Flat, IVF-Flat) or 0, counted, when the index
keeps no exact vector; a lexical-only request runs the query tower once for it (real bundles, the app
in-process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ebr.index import IndexConfig
from ebr.models.inputs import featurize_docs, featurize_queries
from ebr.models.rankers.coarse_ranker import CoarseRanker
from ebr.models.rankers.config import CoarseRankerConfig
from serving.app import create_app
from serving.coarse_rescorer import CoarseRescorer
from serving.settings import ServerSettings
from serving.synthetic import build_bundle, build_coarse_ranker
from tests.serving.clients import InProcessClient
from tests.serving.conftest import Parts

QUERY = "wayne red phone case"
W = 3.0  # the untrained ranker's weight of the retrieval cosine: large enough to reorder candidates


@pytest.fixture(scope="module")
def rc_config(parts: Parts) -> CoarseRankerConfig:
    return parts.coarse_config.model_copy(update={"retrieval_cosine": True, "retrieval_cosine_init": W})


@pytest.fixture(scope="module")
def rc_coarse_dir(parts, rc_config, tmp_path_factory) -> Path:
    return build_coarse_ranker(tmp_path_factory.mktemp("coarse-rc") / "coarse", parts.docs_v1, rc_config)


def _app(root: Path) -> tuple[InProcessClient, object]:
    app = create_app(ServerSettings(bundles_dir=root), start=False)
    app.state.runtime.manager.reload()
    return InProcessClient(app), app


@pytest.fixture(scope="module")
def flat(parts, rc_coarse_dir, tmp_path_factory):
    """A bundle over docs v1 with an exact (Flat) index and the ranker reading the retrieval cosine."""
    root = tmp_path_factory.mktemp("bundles-rc") / "bundles"
    build_bundle(root, "rc", docs=parts.docs_v1, model_dir=parts.model_dir, vectors=parts.vectors_v1,
                 coarse_ranker_dir=rc_coarse_dir)
    client, app = _app(root)
    yield client, app
    client.close()


@pytest.fixture(scope="module")
def quantized(parts, rc_coarse_dir, tmp_path_factory):
    """The same with a scalar-quantized index (no exact vectors to reconstruct)."""
    root = tmp_path_factory.mktemp("bundles-rc-sq") / "bundles"
    cfg = IndexConfig(factory="SQ8", num_eval_queries=50, latency_queries=5, recall_k=10, progress=False)
    build_bundle(root, "rc-sq", docs=parts.docs_v1, model_dir=parts.model_dir, vectors=parts.vectors_v1,
                 coarse_ranker_dir=rc_coarse_dir, index_config=cfg)
    client, app = _app(root)
    yield client, app
    client.close()


def _retrieval_cosines(parts: Parts, ids: list[int]) -> np.ndarray:
    """cos of the retrieval model's query vector with the docs' vectors (exact)."""
    with torch.no_grad():
        q = parts.model.query_tower(featurize_queries([{"query": QUERY}], parts.config.featurizer)).numpy()[0]
    pos = {d: i for i, d in enumerate(parts.docs_v1["doc_id"].tolist())}
    return parts.vectors_v1[[pos[d] for d in ids]] @ q


def _eager(parts: Parts, config: CoarseRankerConfig, ids: list[int], cos_r: np.ndarray) -> np.ndarray:
    """The eager student's scores (same seed => same weights) with the given retrieval cosines."""
    model = CoarseRanker(config).eval()
    fz = config.featurizer
    with torch.no_grad():
        q = model.encode_queries(featurize_queries([{"query": QUERY}], fz))
        d = model.encode_docs(featurize_docs(parts.docs_v1.set_index("doc_id").loc[ids].reset_index(), fz))
        return model.score_pairs(q.expand(len(ids), -1), d,
                                 retrieval_cosine=torch.from_numpy(np.asarray(cos_r, np.float32))).numpy()


def _rerank(client: InProcessClient, retrieval: str, k: int = 40) -> dict:
    r = client.post("/search", json={"query": QUERY, "k": k, "rerank": True, "candidates": k,
                                     "retrieval": retrieval, "relevance_control": False})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reranked"] is True
    return body


def test_hybrid_rerank_scores_with_the_ann_score_or_the_stored_vectors_cosine(flat, parts, rc_config):
    client, app = flat
    body = _rerank(client, "hybrid")
    items = body["items"]
    assert any(it["channels"] == ["lexical"] for it in items), "some candidates come from the lexical channel only"
    assert any("ann" in it["channels"] for it in items)
    ids = [it["doc_id"] for it in items]
    cos_r = _retrieval_cosines(parts, ids)
    coarse = [it["coarse_score"] for it in items]
    assert coarse == sorted(coarse, reverse=True)
    np.testing.assert_allclose(coarse, _eager(parts, rc_config, ids, cos_r), atol=1e-4)
    # the feature matters: without it the scores differ by W * cos_r
    np.testing.assert_allclose(np.array(coarse) - _eager(parts, rc_config, ids, np.zeros(len(ids))), W * cos_r,
                               atol=1e-4)
    assert app.state.runtime.manager.current.rescorer.missing_retrieval_cosines == 0


def test_a_lexical_only_request_runs_the_tower_for_the_cosine(flat, parts, rc_config):
    client, app = flat
    body = _rerank(client, "lexical", k=25)
    assert body["retrieval"] == "lexical" and all(it["channels"] == ["lexical"] for it in body["items"])
    ids = [it["doc_id"] for it in body["items"]]
    np.testing.assert_allclose([it["coarse_score"] for it in body["items"]],
                               _eager(parts, rc_config, ids, _retrieval_cosines(parts, ids)), atol=1e-4)
    assert app.state.runtime.manager.current.rescorer.missing_retrieval_cosines == 0


def test_without_exact_vectors_lexical_only_candidates_get_zero_and_are_counted(quantized, parts, rc_config):
    client, app = quantized
    rescorer = app.state.runtime.manager.current.rescorer
    before = rescorer.missing_retrieval_cosines
    body = _rerank(client, "lexical", k=25)
    ids = [it["doc_id"] for it in body["items"]]
    assert len(ids) > 0
    np.testing.assert_allclose([it["coarse_score"] for it in body["items"]],
                               _eager(parts, rc_config, ids, np.zeros(len(ids))), atol=1e-4)
    assert rescorer.missing_retrieval_cosines - before == len(ids)
    hybrid = _rerank(client, "hybrid")  # embedding-channel candidates still bring their ANN score
    lexical_only = sum(it["channels"] == ["lexical"] for it in hybrid["items"])
    assert rescorer.missing_retrieval_cosines - before == len(ids) + lexical_only


def test_the_rescorer_names_a_missing_or_misshapen_retrieval_cosine(rc_coarse_dir, parts):
    rescorer = CoarseRescorer.open(rc_coarse_dir)
    assert rescorer.usable and rescorer.uses_retrieval_cosine
    ids = parts.docs_v1["doc_id"].to_numpy()[:5]
    with pytest.raises(ValueError, match="retrieval_cosine"):
        rescorer.score({"query": QUERY}, ids)
    with pytest.raises(ValueError, match="retrieval_cosine"):
        rescorer.score({"query": QUERY}, ids, retrieval_cosine=np.zeros(4))
    assert np.isfinite(rescorer.score({"query": QUERY}, ids, retrieval_cosine=np.zeros(5))).all()
    assert not CoarseRescorer.open(parts.coarse_dir).uses_retrieval_cosine
