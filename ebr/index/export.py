"""The doc-embedding export step of day D: the exported doc tower over the whole corpus, in shards.

Every doc known by the end of D gets its features (`ebr.features.doc_features`, as of D's start by default) and is
encoded by the same `torch.export` doc-tower program the bundle ships (`ebr.models.export.load_exported`), so
indexing and serving run one program. The corpus is split into `num_shards` contiguous ranges of sorted doc
ids; each shard reads its docs' features, encodes them in batches and is written with `write_embedding_shard`
(memory is bounded by one shard). On a cluster `export_doc_embedding_shard` runs once per shard (KFP
`dsl.ParallelFor`) and `finalize_export` commits; locally `export_doc_embeddings` does all of it into a temp
directory beside `out_dir` and renames it into place.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from ebr.artifacts.atomic import atomic_output_dir, write_json_atomic
from ebr.index.embeddings import EMBEDDINGS_JSON, finalize_embeddings, write_embedding_shard
from ebr.settings import Section

SHARD_JSON = "shard.json"  # commit marker of one fan-out shard directory

if TYPE_CHECKING:
    import pandas as pd

    from ebr.models.export import ExportedBundle


class ExportEmbeddingsConfig(Section):
    """How the doc tower runs over the corpus."""

    num_shards: int = Field(4, ge=1, le=100_000, description="embedding shards (contiguous ranges of sorted doc ids)")
    batch_size: int = Field(4096, ge=1, description="docs per doc-tower call")
    features_as_of: Literal["day_start", "day_end"] = Field(
        "day_start",
        description="doc features as of D's start (what the evaluation of D may see) or its end (freshest)",
    )
    include_day: bool = Field(True, description="docs published during D are part of the corpus")
    num_threads: int | None = Field(None, ge=1, description="torch threads while encoding; None = torch's default")
    progress: bool = Field(True, description="tqdm progress bar over batches")


def export_dir_of(model_dir: str | Path) -> Path:
    """The export directory of a model: `model_dir/export`, or `model_dir` itself when it is one."""
    from ebr.models.export import MANIFEST

    d = Path(model_dir)
    if (d / MANIFEST).is_file():
        return d
    if (d / "export" / MANIFEST).is_file():
        return d / "export"
    raise FileNotFoundError(f"{model_dir} holds no exported model ({MANIFEST} or export/{MANIFEST})")


def shard_ranges(doc_ids: np.ndarray, num_shards: int) -> list[np.ndarray]:
    """Sorted doc ids split into `num_shards` contiguous, near-equal ranges (a partition of the corpus)."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    ids = np.sort(np.asarray(doc_ids, dtype=np.int64))
    if num_shards > len(ids):
        raise ValueError(f"num_shards={num_shards} exceeds the {len(ids)} docs of the corpus")
    return np.array_split(ids, num_shards)


def encode_docs(
    bundle: ExportedBundle, table: pd.DataFrame, batch_size: int, progress: bool = False, desc: str = "encode docs"
) -> np.ndarray:
    """Vectors [n, dim] of doc-feature rows through the exported doc tower, featurized batch by batch."""
    from tqdm import tqdm

    from ebr.models.inputs import featurize_docs

    if bundle.featurizer is None:
        raise ValueError(f"export {bundle.path} records no featurizer: not a two-tower export")
    tower = bundle["doc_tower"]
    out = np.zeros((len(table), tower.output_dim), dtype=np.float32)
    for start in tqdm(range(0, len(table), batch_size), desc=desc, unit="batch", disable=not progress, leave=False):
        rows = table.iloc[start : start + batch_size]
        out[start : start + len(rows)] = tower(featurize_docs(rows, bundle.featurizer)).numpy()
    return out


def export_doc_embedding_shard(
    bundle: ExportedBundle,
    features_dir: str | Path,
    corpus: pd.DataFrame,
    day: str,
    directory: str | Path,
    shard_no: int,
    cfg: ExportEmbeddingsConfig,
    store: Any = None,
) -> int:
    """Features, vectors and files of one shard of `corpus` (doc_id, first_seen); returns its doc count.

    `store` is an open feature store (opened from `features_dir` when None)."""
    from ebr.features.doc_features import doc_feature_table

    ranges = shard_ranges(corpus["doc_id"].to_numpy(), cfg.num_shards)
    if not 0 <= shard_no < len(ranges):
        raise ValueError(f"shard_no must be in [0, {len(ranges)}), got {shard_no}")
    part = corpus[corpus["doc_id"].isin(ranges[shard_no])]
    table = doc_feature_table(features_dir, part, day, cfg.features_as_of, store=store)
    vectors = encode_docs(bundle, table, cfg.batch_size, cfg.progress, f"doc tower shard {shard_no}")
    write_embedding_shard(directory, shard_no, table["doc_id"].to_numpy(dtype=np.int64), vectors)
    return len(table)


def finalize_export(directory: str | Path, bundle: ExportedBundle) -> dict[str, Any]:
    """Commit the shards with the model's version (embeddings.json)."""
    return finalize_embeddings(directory, bundle.model_version)


def export_doc_embeddings(
    model_dir: str | Path,
    features_dir: str | Path,
    data_root: str | Path,
    day: str,
    out_dir: str | Path,
    cfg: ExportEmbeddingsConfig | None = None,
) -> dict[str, Any]:
    """Doc vectors of every doc known as of `day` into `out_dir` (sharded; whole or not at all).

    Returns the embeddings.json content plus the directory, the model version and timings."""
    import torch

    from ebr.features import open_store
    from ebr.features.doc_features import corpus_docs
    from ebr.models.export import load_exported

    cfg = cfg or ExportEmbeddingsConfig()
    t0 = time.perf_counter()
    bundle = load_exported(export_dir_of(model_dir), only=["doc_tower"])
    corpus = corpus_docs(data_root, day, cfg.include_day)
    shard_ranges(corpus["doc_id"].to_numpy(), cfg.num_shards)  # fails early on too many shards
    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        store = open_store(features_dir)
        with atomic_output_dir(out_dir, marker=EMBEDDINGS_JSON) as tmp:
            counts = [
                export_doc_embedding_shard(bundle, features_dir, corpus, day, tmp, s, cfg, store)
                for s in range(cfg.num_shards)
            ]
            doc = finalize_export(tmp, bundle)
    finally:
        torch.set_num_threads(threads)
    return {
        **doc,
        "embeddings_dir": str(out_dir),
        "shard_counts": counts,
        "day": day,
        "features_as_of": cfg.features_as_of,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def plan_export_shards(data_root: str | Path, day: str, cfg: ExportEmbeddingsConfig | None = None) -> list[int]:
    """The shard numbers of `day`'s export (the items of the DAG's `dsl.ParallelFor`); fails early when the
    corpus has fewer docs than `num_shards`."""
    from ebr.features.doc_features import corpus_docs

    cfg = cfg or ExportEmbeddingsConfig()
    corpus = corpus_docs(data_root, day, cfg.include_day)
    shard_ranges(corpus["doc_id"].to_numpy(), cfg.num_shards)
    return list(range(cfg.num_shards))


def export_one_shard(
    model_dir: str | Path,
    features_dir: str | Path,
    data_root: str | Path,
    day: str,
    shard_no: int,
    out_dir: str | Path,
    cfg: ExportEmbeddingsConfig | None = None,
) -> dict[str, Any]:
    """One fan-out task: shard `shard_no` of `day`'s corpus into its own directory `out_dir` (whole or not at
    all); `finalize_shard_dirs` gathers the directories of all shards."""
    import torch

    from ebr.features import open_store
    from ebr.features.doc_features import corpus_docs
    from ebr.models.export import load_exported

    cfg = cfg or ExportEmbeddingsConfig()
    t0 = time.perf_counter()
    bundle = load_exported(export_dir_of(model_dir), only=["doc_tower"])
    corpus = corpus_docs(data_root, day, cfg.include_day)
    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        with atomic_output_dir(out_dir, marker=SHARD_JSON) as tmp:
            count = export_doc_embedding_shard(bundle, features_dir, corpus, day, tmp, shard_no, cfg,
                                               open_store(features_dir))
            write_json_atomic(tmp / SHARD_JSON, {"shard_no": int(shard_no), "count": count,
                                                 "model_version": bundle.model_version, "day": day})
    finally:
        torch.set_num_threads(threads)
    return {"shard_no": int(shard_no), "count": count, "seconds": round(time.perf_counter() - t0, 2)}


def finalize_shard_dirs(shard_dirs: list[str | Path], model_dir: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Gather the shard files written by the fan-out tasks into `out_dir` and commit them (embeddings.json),
    after checking every shard came from the same model and each number appears once."""
    import shutil

    from ebr.index.embeddings import EmbeddingsError, ids_name, vectors_name
    from ebr.models.export import load_exported

    bundle = load_exported(export_dir_of(model_dir), only=())  # the model version is all it checks
    seen: dict[int, Path] = {}
    for d in map(Path, shard_dirs):
        marker = d / SHARD_JSON
        if not marker.is_file():
            raise EmbeddingsError(f"{d}: not a finished export shard ({SHARD_JSON} missing)")
        meta = json.loads(marker.read_text(encoding="utf-8"))
        n = int(meta["shard_no"])
        if meta.get("model_version") != bundle.model_version:
            raise EmbeddingsError(f"{d}: shard {n} was encoded by model {meta.get('model_version')!r}, "
                                  f"not {bundle.model_version!r}")
        if n in seen:
            raise EmbeddingsError(f"shard {n} delivered twice: {seen[n]} and {d}")
        seen[n] = d
    with atomic_output_dir(out_dir, marker=EMBEDDINGS_JSON) as tmp:
        for n, d in sorted(seen.items()):
            for name in (ids_name(n), vectors_name(n)):
                shutil.copyfile(d / name, tmp / name)
        doc = finalize_export(tmp, bundle)
    return {**doc, "embeddings_dir": str(out_dir), "shard_counts": [int(s["count"]) for s in doc["shards"]]}
