"""Synthetic serving bundles for tests, the benchmark and local demos, built with the pipeline's own steps.

Docs are drawn from small fixed vocabularies (categories, brands, title words); a bundle is made exactly as the
daily run makes one: featurize docs, doc-tower vectors (or given vectors), embedding shard, Faiss index, tower
export, `assemble_bundle` into `<root>/.staging-<version>`, `publish_bundle`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ebr.bundle import assemble_bundle, publish_bundle
from ebr.bundle.layout import QUERY_TOWER_EXPORT
from ebr.index import IndexConfig, build_index, finalize_embeddings, write_embedding_shard

if TYPE_CHECKING:
    from ebr.models.config import FeaturizerConfig
    from ebr.models.rankers.config import CoarseRankerConfig
    from ebr.models.two_tower import TwoTowerModel

CATEGORIES = (
    "running shoes", "dress", "phone case", "backpack", "watch", "jacket", "sunglasses", "headphones",
    "t-shirt", "lamp", "kettle", "keyboard",
)  # fmt: skip
BRANDS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka")
ADJECTIVES = ("red", "blue", "black", "light", "summer", "classic", "slim", "waterproof", "wireless", "vintage")


def synthetic_docs(n: int, *, seed: int = 0, id_offset: int = 1, brand_share: float = 0.8) -> pd.DataFrame:
    """`n` doc rows with every doc-tower column: category per doc (Zipf-ish), brand for `brand_share` of them."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(CATEGORIES) + 1)
    cat = rng.choice(len(CATEGORIES), size=n, p=weights / weights.sum())
    brand = rng.integers(0, len(BRANDS), size=n)
    has_brand = rng.random(n) < brand_share
    adj = rng.integers(0, len(ADJECTIVES), size=n)
    ids = np.arange(id_offset, id_offset + n, dtype=np.int64)
    cats = np.asarray(CATEGORIES, dtype=object)[cat]
    brands = np.where(has_brand, np.asarray(BRANDS, dtype=object)[brand], None)
    adjs = np.asarray(ADJECTIVES, dtype=object)[adj]
    titles = [f"{b or 'generic'} {a} {c} {i % 97}" for b, a, c, i in zip(brands, adjs, cats, ids, strict=True)]
    return pd.DataFrame({
        "doc_id": ids,
        "title": titles,
        "category_l1": ["goods"] * n,
        "category_l2": [c.split(" ")[-1] for c in cats],
        "category_leaf": cats,
        "author_id": (ids % 53 + 1).astype(np.int64),
        "brand": brands,
        "attributes": [[f"color={a}"] for a in adjs],
        "tags": [[c.split(" ")[0]] for c in cats],
        "doc_clicks_30d": rng.integers(0, 500, size=n),
        "doc_ctr_30d": rng.random(n) * 0.2,
        "author_follower_count": rng.integers(0, 100_000, size=n),
        "doc_age_days": rng.integers(1, 1000, size=n).astype(np.float64),
    })  # fmt: skip


def example_query_rows() -> list[dict[str, Any]]:
    """A logged-in request with every user column and a logged-out one (export examples, warm-up). The second mixes
    Han and Latin text so that warming a bundle also loads jieba's dictionary (~0.7 s), not the first request."""
    return [
        {
            "query": "red running shoes",
            "user_id": 42,
            "user_gender": "f",
            "user_age": 31.0,
            "user_city": "hangzhou",
            "user_profile_tags": ["sports", "outdoor"],
            "recent_queries": ["running shoes", "acme jacket"],
            **{f"seq_{w}_doc_ids": [3, 2, 1] for w in ("rt", "st", "lt")},
            **{f"seq_{w}_categories": ["running shoes", "jacket", "dress"] for w in ("rt", "st", "lt")},
            **{f"seq_{w}_authors": [4, 3, 2] for w in ("rt", "st", "lt")},
            **{f"seq_{w}_event_types": ["click", "like", "click"] for w in ("rt", "st", "lt")},
        },
        {"query": "无线耳机 wireless headphones"},
    ]


def encode_docs(model: TwoTowerModel, docs: pd.DataFrame, batch_size: int = 2048) -> np.ndarray:
    """Doc-tower vectors [n, d] (float32) of doc rows, in batches."""
    import torch

    from ebr.models.inputs import featurize_docs

    out = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(docs), batch_size):
            part = docs.iloc[start : start + batch_size]
            out.append(model.doc_tower(featurize_docs(part, model.config.featurizer)).numpy())
    return np.concatenate(out).astype(np.float32)


def export_model(model: TwoTowerModel, out_dir: str | Path, docs: pd.DataFrame, model_version: str) -> Path:
    """`export_two_tower` into `out_dir` with the example query rows and two of `docs` as example inputs."""
    from ebr.models.export import export_two_tower
    from ebr.models.inputs import featurize_docs, featurize_queries

    fz = model.config.featurizer
    return export_two_tower(
        model.eval(),
        out_dir,
        query_inputs=featurize_queries(example_query_rows(), fz),
        doc_inputs=featurize_docs(docs.iloc[:2], fz),
        model_version=model_version,
    )


def build_bundle(
    root: str | Path,
    version: str,
    *,
    docs: pd.DataFrame,
    model: TwoTowerModel | None = None,
    model_dir: str | Path | None = None,
    vectors: np.ndarray | None = None,
    index_config: IndexConfig | None = None,
    coarse_ranker_dir: str | Path | None = None,
    publish: bool = True,
    info: dict | None = None,
) -> Path:
    """Build bundle `version` under `root` from `model_dir` (or an export of `model`) and `vectors` (or the doc
    tower over `docs`); publish it, or with `publish=False` leave it staged. Returns its directory."""
    root = Path(root)
    work = root / f".work-{version}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        if model_dir is None:
            if model is None:
                raise ValueError("build_bundle needs a model or a model_dir")
            model_dir = work / "model"
            export_model(model, work / QUERY_TOWER_EXPORT, docs, version)
        if vectors is None:
            if model is None:
                raise ValueError("build_bundle needs a model or doc vectors")
            vectors = encode_docs(model, docs)
        emb = work / "embeddings"
        write_embedding_shard(emb, 0, docs["doc_id"].to_numpy(dtype=np.int64), vectors)
        finalize_embeddings(emb, version)
        cfg = index_config or IndexConfig(num_eval_queries=50, latency_queries=5, recall_k=10, progress=False)
        build_index(emb, work / "index", cfg)
        staging = root / f".staging-{version}"
        assemble_bundle(
            staging,
            version=version,
            model_dir=model_dir,
            index_dir=work / "index",
            docs=docs,
            coarse_ranker_dir=coarse_ranker_dir,
            info={"synthetic": True, "docs": len(docs), **(info or {})},
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return publish_bundle(root, staging, version) if publish else staging


def build_coarse_ranker(
    out_dir: str | Path,
    docs: pd.DataFrame,
    config: CoarseRankerConfig,
    model_version: str = "coarse-synthetic",
    doc_vectors: np.ndarray | None = None,
) -> Path:
    """An untrained coarse ranker laid out as `distill_coarse_ranker` writes it (`export/`, doc matrix, manifest,
    and for three towers the doc rows of the cross features); the doc matrix is its doc tower over `docs`, or
    `doc_vectors` when given."""
    import torch

    from ebr.models.export import export_modules
    from ebr.models.inputs import featurize_queries
    from ebr.models.rankers.coarse_ranker import CoarseRanker, PairScorer, encode_corpus
    from ebr.models.rankers.cross_features import bucketize, compute_cross_features
    from ebr.train.rankers import DOC_IDS, DOC_ROW_COLUMNS, DOC_ROWS, DOC_VECTORS, EXPORT_DIR

    out = Path(out_dir)
    out.mkdir(parents=True)
    model = CoarseRanker(config).eval()
    fz: FeaturizerConfig = config.featurizer
    if doc_vectors is None:
        ids, vecs = encode_corpus(model, docs, fz)
    else:
        ids, vecs = docs["doc_id"].to_numpy(dtype=np.int64), np.ascontiguousarray(doc_vectors, dtype=np.float32)
    q_in = featurize_queries(example_query_rows(), fz)
    with torch.no_grad():
        q = model.encode_queries(q_in)
    scorer_in = {"query": q, "doc": torch.from_numpy(vecs[:2])}
    if model.uses_retrieval_cosine:
        scorer_in["retrieval_cosine"] = torch.tensor([0.5, -0.25])
    if model.three_tower:
        names = config.cross_features
        cross = compute_cross_features(example_query_rows()[:1], docs.iloc[:2], None, names, fz.text)
        scorer_in.update(cross=torch.from_numpy(cross), cross_buckets=torch.from_numpy(bucketize(cross, names)))
        docs[DOC_ROW_COLUMNS].to_parquet(out / DOC_ROWS, index=False)
    export_modules(
        out / EXPORT_DIR,
        {"query_tower": model.query_tower, "scorer": PairScorer(model)},
        {"query_tower": q_in, "scorer": scorer_in},
        model_version=model_version,
        featurizer=fz,
        config={"coarse_ranker": config.model_dump(mode="json"), "embedding_dim": config.doc_tower.out_dim,
                "cross_features": config.cross_features if model.three_tower else []},
    )
    np.save(out / DOC_IDS, ids, allow_pickle=False)
    np.save(out / DOC_VECTORS, vecs, allow_pickle=False)
    manifest = {"kind": "coarse_ranker", "model_kind": config.kind, "synthetic": True}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out
