"""Evaluation of a trained two-tower model on the holdout day D, beside the champion and the baselines.

Every request of D (`build_evalset`) gets its query-side features as of its own time from the Feast offline store
(service `query_tower_online`), is encoded by the exported query tower and searched EXACTLY (Faiss IndexFlatIP)
over the exported doc embeddings of the whole corpus. The champion re-embeds the same corpus with its own doc
tower and searches with its own query tower; popularity and BM25 come from `baseline_systems`; with an index
directory, `ann_recall@K` of the built index joins the model's row. The real-time skew: the same requests encoded
with their real-time features as the online store serves them without pushed events (as of D 00:00) and searched
once more; the summary's `realtime_skew` (and a section of report.md) gives both views' metrics and the gap.
The report (markdown, JSON, plots) is written with `write_report`, logged to MLflow, and the gate's inputs and
decision are returned.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from ebr.artifacts.atomic import atomic_output_dir
from ebr.evaluate.config import EvaluateConfig, GateConfig
from ebr.evaluate.funnel import FUNNEL_CANDIDATES, FUNNEL_SYSTEM, CoarseScorer
from ebr.judgements.metrics import EMPTY
from ebr.settings import Section
from ebr.train.tracking import MlflowConfig, write_json

if TYPE_CHECKING:
    from ebr.models.export import ExportedBundle

SUMMARY_JSON = "evaluation.json"
REPORT_DIR = "report"
EVALSET_FILE = "evalset.parquet"
QUERY_SERVICE = "query_tower_online"
SERVED_SYSTEM = "hybrid_served"  # what the server answers: hybrid, relevance control inside retrieval
RELAXED_SYSTEM = "hybrid_served_relaxed"  # the served hybrid with query relaxation (`relax`)
CHAMPION_SERVED = "champion_served"  # the same from the champion's towers (the served gate compares the two)
SKEW_SYSTEM = "model_realtime_day_start"  # the model with real-time features as served without pushed events


class TwoTowerEvalConfig(Section):
    """What the two-tower evaluation computes and where it is tracked."""

    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    batch_size: int = Field(2048, ge=1, description="rows per tower call")
    features_as_of: Literal["day_start", "day_end"] = Field(
        "day_start", description="doc features of the champion's re-embedding (as the export step reads them)"
    )
    num_threads: int | None = Field(None, ge=1, description="torch threads while encoding; None = torch's default")
    progress: bool = Field(True, description="tqdm progress bars")
    mlflow: MlflowConfig = Field(default_factory=lambda: MlflowConfig(experiment="ebr-two-tower"))


def query_feature_rows(features_dir: str | Path, requests: pd.DataFrame, store: Any = None) -> pd.DataFrame:
    """Requests (user_id, query, event_timestamp) with their query-side features as of each request's time."""
    from ebr.features import historical_features, open_store

    f = requests
    entity = pd.DataFrame({"user_id": f["user_id"].astype("Int64"), "query": f["query"].astype(str),
                           "event_timestamp": pd.to_datetime(f["event_timestamp"], utc=True)})
    store = store if store is not None else open_store(features_dir)
    out = historical_features(store, entity, QUERY_SERVICE, on_missing="null")
    out.attrs.pop("feature_report", None)
    return out.reset_index(drop=True)


def served_realtime_rows(
    features_dir: str | Path, requests: pd.DataFrame, rows: pd.DataFrame, day: str, store: Any = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """`rows` (query features as of each request, the training-time view) with the real-time features
    (`user_realtime`, `user_queries`) replaced by those the online store serves on `day` without pushed events:
    as of `day` 00:00, where the day before's build materialized them. Also returns the mask of the requests whose
    real-time features differ between the two views."""
    from ebr.features.realtime import REALTIME_FEATURES

    at_start = requests[["user_id", "query"]].copy()
    at_start["event_timestamp"] = pd.Timestamp(day, tz="UTC")
    served = query_feature_rows(features_dir, at_start, store)
    if len(served) != len(rows):
        raise ValueError(f"real-time features as of {day} 00:00: {len(served)} rows for {len(rows)} requests")
    out = rows.copy()
    changed = np.zeros(len(rows), dtype=bool)
    for name in REALTIME_FEATURES:
        before = served[name].to_numpy(dtype=object)
        changed |= np.array([list(a) != list(b) for a, b in zip(before, out[name].to_numpy(dtype=object),
                                                                 strict=True)], dtype=bool)
        out[name] = before
    return out, changed


def reads_realtime_features(bundle: ExportedBundle) -> bool:
    """Whether the exported query tower reads a feature a push changes: the real-time sequence or the recent
    queries (query history), both parts of its personalization. An export without a recorded config counts as
    reading them."""
    from ebr.models.config import REALTIME_INPUTS, tower_reads
    from ebr.models.export import recorded_query_tower

    return tower_reads(recorded_query_tower(bundle.manifest), REALTIME_INPUTS)


def encode_queries(bundle: ExportedBundle, rows: pd.DataFrame, batch_size: int) -> np.ndarray:
    """Query vectors [n, dim] through the exported query tower, featurized with the model's own featurizer."""
    from ebr.models.inputs import featurize_queries

    if bundle.featurizer is None:
        raise ValueError(f"export {bundle.path} records no featurizer: not a two-tower export")
    tower = bundle["query_tower"]
    out = np.zeros((len(rows), tower.output_dim), dtype=np.float32)
    for start in range(0, len(rows), batch_size):
        part = rows.iloc[start : start + batch_size]
        out[start : start + len(part)] = tower(featurize_queries(part, bundle.featurizer)).numpy()
    return out


def flat_search(doc_ids: np.ndarray, doc_vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k doc ids [n, k] by inner product (Faiss IndexFlatIP); -1 pads a corpus smaller than k."""
    import faiss

    index = faiss.IndexFlatIP(doc_vectors.shape[1])
    index.add(np.ascontiguousarray(doc_vectors, dtype=np.float32))
    kk = min(k, index.ntotal)
    _, pos = index.search(np.ascontiguousarray(queries, dtype=np.float32), kk)
    ids = np.where(pos >= 0, np.asarray(doc_ids, dtype=np.int64)[np.maximum(pos, 0)], EMPTY)
    if kk < k:
        ids = np.concatenate([ids, np.full((len(ids), k - kk), EMPTY, dtype=np.int64)], axis=1)
    return ids


def _export_version(model_dir: str | Path, only: list[str] | None = None) -> tuple[ExportedBundle, str]:
    from ebr.index.export import export_dir_of
    from ebr.models.export import load_exported

    bundle = load_exported(export_dir_of(model_dir), only=only)
    return bundle, bundle.model_version


def _champion_vectors(
    champion_dir: str | Path,
    features_dir: str | Path,
    data_root: str | Path,
    day: str,
    rows: pd.DataFrame,
    cfg: TwoTowerEvalConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(doc ids, doc vectors, query vectors, version) of the champion: its doc tower over the corpus as of `day`,
    its query tower over the requests."""
    from ebr.features.doc_features import corpus_docs, doc_feature_table
    from ebr.index.export import encode_docs

    bundle, version = _export_version(champion_dir)
    table = doc_feature_table(features_dir, corpus_docs(data_root, day), day, cfg.features_as_of)
    vectors = encode_docs(bundle, table, cfg.batch_size, cfg.progress, "champion doc tower")
    queries = encode_queries(bundle, rows, cfg.batch_size)
    return table["doc_id"].to_numpy(dtype=np.int64), vectors, queries, version


def _funnel(scorer: Any, served_ann: tuple[np.ndarray, np.ndarray], served_lex: tuple[np.ndarray, np.ndarray],
            evalset: Any, bm25: Any, rows: pd.DataFrame, kmax: int, cfg: TwoTowerEvalConfig,
            lexical_weights: np.ndarray | None = None) -> dict[str, Any]:
    """The served funnel's top-kmax ids (key `ids`) and what survived from each channel: the served channels'
    N candidates (each at N among the allowed docs) merged, coarse-ranked by `scorer`, the top kmax kept."""
    from ebr.evaluate.funnel import funnel_ids, survival
    from ebr.evaluate.hybrid import hybrid_systems

    n = served_ann[0].shape[1]
    candidates = hybrid_systems(evalset.queries, served_ann, served_lex, n, bm25.index.tokenize,
                                lexical_weights=lexical_weights)["hybrid"]
    requests = None
    if scorer.three_tower:  # the cross features read the request's query understanding as training did (the log's)
        requests = rows.assign(query_category_leaf=evalset.frame["query_category_leaf"].to_numpy(),
                               query_brand=evalset.frame["query_brand"].to_numpy())
    kept = funnel_ids(scorer, encode_queries(scorer.bundle, rows, cfg.batch_size), candidates, kmax, requests)
    return {"ids": kept, "candidates": n, "kept": kmax,
            "survival": survival(candidates, kept, {"ann": served_ann[0], "lexical": served_lex[0]})}


def evaluate_two_tower(
    model_dir: str | Path,
    embeddings_dir: str | Path,
    features_dir: str | Path,
    data_root: str | Path,
    day: str,
    out_dir: str | Path,
    cfg: TwoTowerEvalConfig | None = None,
    champion_dir: str | Path | None = None,
    index_dir: str | Path | None = None,
    coarse_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate the model (its exported towers and doc embeddings) on day `day`; write the report into `out_dir`.
    With the day's coarse ranker (`coarse_dir`), the served funnel too (`ebr.evaluate.funnel`).

    `out_dir` gets report/ (metrics.json, report.md, recall_at_k.png), evalset.parquet and evaluation.json,
    whole or not at all. Returns the report's metrics, the gate inputs and the gate decision."""
    import torch

    from ebr.evaluate.baselines import BM25Retriever, baseline_systems
    from ebr.evaluate.gate import combine, compare, served_gate
    from ebr.evaluate.hybrid import (
        hybrid_systems,
        relax_fill,
        scores_of,
        served_channels,
        tune_lexical_weight,
    )
    from ebr.evaluate.report import evaluate_systems, metric_gap, render_gap_markdown, write_report
    from ebr.features.realtime import REALTIME_FEATURES
    from ebr.index.embeddings import read_embeddings
    from ebr.judgements.corpus import load_corpus
    from ebr.judgements.evalset import build_evalset
    from ebr.judgements.metrics import ann_recall, metric_key

    cfg = cfg or TwoTowerEvalConfig()
    ec = cfg.evaluate
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    bundle, version = _export_version(model_dir, only=["query_tower"])  # the doc side is the embeddings
    emb = read_embeddings(embeddings_dir, mmap=False)
    if emb.info.model_version != version:
        raise ValueError(f"embeddings in {embeddings_dir} come from model {emb.info.model_version!r}, but "
                         f"{model_dir} is model {version!r}: export the embeddings of this model")
    corpus = load_corpus(data_root, day)
    unknown = np.setdiff1d(emb.ids, corpus.doc_ids)
    if len(unknown):
        raise ValueError(f"embeddings in {embeddings_dir} hold {len(unknown)} doc(s) not in the corpus as of {day}, "
                         f"e.g. {unknown[:5].tolist()}")
    evalset = build_evalset(data_root, day, ec.label_days, corpus, ec.max_requests)
    if evalset.n_requests == 0:
        raise ValueError(f"no request on {day} under {data_root}: nothing to evaluate")
    kmax = max(ec.ks)
    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        rows = query_feature_rows(features_dir, evalset.frame)
        timings["query_features"] = time.perf_counter() - t0
        queries = encode_queries(bundle, rows, cfg.batch_size)
        systems = {"model": flat_search(emb.ids, emb.vectors, queries, kmax)}
        # train/serve skew of the real-time features: the same requests as served without pushed events (only for
        # a tower that reads them: without personalization both views give the same vectors)
        t1 = time.perf_counter()
        day_start_ids = rt_changed = None
        if reads_realtime_features(bundle):
            served_rows, rt_changed = served_realtime_rows(features_dir, evalset.frame, rows, day)
            day_start_ids = flat_search(emb.ids, emb.vectors, encode_queries(bundle, served_rows, cfg.batch_size),
                                        kmax)
            del served_rows
        timings["realtime_skew"] = time.perf_counter() - t1
        extra: dict[str, Any] = {}
        notes: list[str] = []
        champion_version = champ_vectors = None
        if champion_dir is not None:
            t1 = time.perf_counter()
            *champ_vectors, champion_version = _champion_vectors(champion_dir, features_dir, data_root, day, rows, cfg)
            systems["champion"] = flat_search(*champ_vectors, kmax)
            timings["champion"] = time.perf_counter() - t1
        else:
            notes.append("no champion: first model, the gate publishes")
        t1 = time.perf_counter()
        bm25 = BM25Retriever(corpus, k1=ec.bm25_k1, b=ec.bm25_b)
        systems.update(baseline_systems(data_root, evalset, kmax, corpus, ec, bm25=bm25))
        timings["baselines"] = time.perf_counter() - t1
        t1 = time.perf_counter()  # the served default: embedding + lexical channels merged, query selection on
        ann = (systems["model"], scores_of(emb.ids, emb.vectors, queries, systems["model"]))
        lexical = bm25.index.search_many(evalset.queries, kmax)
        # the merge's lexical weight, chosen on the day (cross-fitted by query: `hybrid` is out of sample) and
        # shipped in the bundle; the served systems and the funnel merge with the same per-request weights
        tuning = tune_lexical_weight(evalset, ann, lexical, kmax, ec.ks, bm25.index.tokenize)
        lw = tuning.weights
        systems["hybrid"] = tuning.ids
        # as served: relevance control inside retrieval (the request's query-understanding fields), each channel;
        # searched once, as deep as the funnel needs (each channel's top kmax is the head of its top N)
        scorer = CoarseScorer.load(coarse_dir) if coarse_dir is not None else None
        depth = max(FUNNEL_CANDIDATES, kmax) if scorer is not None else kmax
        deep_ann, deep_lex = served_channels(evalset, corpus, emb.ids, emb.vectors, queries, bm25.index, depth)
        served_ann = (deep_ann[0][:, :kmax], deep_ann[1][:, :kmax])
        served_lex = (deep_lex[0][:, :kmax], deep_lex[1][:, :kmax])
        systems["model_served"] = served_ann[0]
        systems[SERVED_SYSTEM] = hybrid_systems(evalset.queries, served_ann, served_lex, kmax,
                                                  bm25.index.tokenize, lexical_weights=lw)["hybrid"]
        # with `relax`: a short constrained list filled from the unconstrained merge (no explicit filters offline)
        systems[RELAXED_SYSTEM] = relax_fill(systems[SERVED_SYSTEM], systems["hybrid"])
        if champ_vectors is not None:  # what the champion's bundle serves, for the served gate
            c_ann, c_lex = served_channels(evalset, corpus, *champ_vectors, bm25.index, kmax)
            systems[CHAMPION_SERVED] = hybrid_systems(evalset.queries, c_ann, c_lex, kmax,
                                                      bm25.index.tokenize, lexical_weights=lw)["hybrid"]
        timings["hybrid"] = time.perf_counter() - t1
        funnel = None
        if scorer is not None:
            t1 = time.perf_counter()
            funnel = _funnel(scorer, deep_ann, deep_lex, evalset, bm25, rows, kmax, cfg, lw)
            systems[FUNNEL_SYSTEM] = funnel.pop("ids")
            timings["funnel"] = time.perf_counter() - t1
        elif coarse_dir is not None:
            notes.append(f"coarse ranker in {coarse_dir} needs inputs the offline funnel does not pass (the "
                         "retrieval cosine): no funnel system")
        del deep_ann, deep_lex
        index_info = index_manifest = None
        if index_dir is not None:
            from ebr.index import load_index

            searcher = load_index(index_dir, expected_dim=emb.vectors.shape[1])
            if searcher.manifest and searcher.manifest.get("model_version") != version:
                raise ValueError(f"index {index_dir} was built from model {searcher.manifest.get('model_version')!r}"
                                 f", not {version!r}")
            _, ann_ids = searcher.search(queries, min(kmax, searcher.ntotal))
            ann_ids = np.pad(ann_ids, ((0, 0), (0, kmax - ann_ids.shape[1])), constant_values=EMPTY)
            ann = ann_recall(ann_ids, systems["model"], ec.ks)
            extra["model"] = {metric_key("ann_recall", k): v for k, v in ann.items()}
            index_manifest = searcher.manifest
            index_info = {"index_dir": str(index_dir), "factory": (searcher.manifest or {}).get("factory"),
                          "search_params": searcher.search_params}
    finally:
        torch.set_num_threads(threads)
    report = evaluate_systems(evalset, systems, ec.ks, corpus, extra)
    skew: dict[str, Any] = {"as_of": pd.Timestamp(day, tz="UTC").isoformat(), "features": list(REALTIME_FEATURES)}
    if day_start_ids is None or rt_changed is None:
        skew.update(skipped="the query tower reads no real-time feature (no real-time sequence or query history)",
                    requests_changed=0, metrics={})
    else:
        skew_report = evaluate_systems(evalset, {"model": systems["model"], SKEW_SYSTEM: day_start_ids}, ec.ks,
                                       corpus)
        skew.update(requests_changed=int(rt_changed.sum()),
                    metrics=metric_gap(report.system("model"), skew_report.system(SKEW_SYSTEM)))
    new = report.system("model")
    champ = report.systems.get("champion")
    g = cfg.gate
    decision = combine(
        compare(new, champ, g.keys, g.tolerance, g.min_requests, g.key_tolerances),
        served_gate(report.system(SERVED_SYSTEM), report.systems.get(CHAMPION_SERVED), g.keys, g.tolerance,
                    g.min_requests, g.key_tolerances),
    )
    gate_inputs = {
        "new": {k: new[k].to_json() for k in cfg.gate.keys if k in new},
        "champion": {k: champ[k].to_json() for k in cfg.gate.keys if k in champ} if champ is not None else None,
        "keys": list(cfg.gate.keys), "tolerance": cfg.gate.tolerance, "min_requests": cfg.gate.min_requests,
        "key_tolerances": dict(cfg.gate.key_tolerances),
    }
    served_new, served_champ = report.system(SERVED_SYSTEM), report.systems.get(CHAMPION_SERVED)
    gate_inputs["served"] = {
        "new": {k: served_new[k].to_json() for k in cfg.gate.keys if k in served_new},
        "champion": ({k: served_champ[k].to_json() for k in cfg.gate.keys if k in served_champ}
                     if served_champ is not None else None),
    }
    timings["total"] = time.perf_counter() - t0
    summary = {
        "day": day, "model_version": version, "champion_version": champion_version,
        "n_requests": evalset.n_requests, "corpus_docs": len(corpus), "embedded_docs": int(len(emb.ids)),
        "systems": sorted(report.systems), "gate_inputs": gate_inputs,
        "gate": {"publish": decision.publish, "reasons": decision.reasons}, "index": index_info, "notes": notes,
        "realtime_skew": skew, "funnel": funnel, "fusion": tuning.to_json(),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
    out = Path(out_dir)
    with atomic_output_dir(out, marker=SUMMARY_JSON) as tmp:
        write_report(report, tmp / REPORT_DIR, ec.main_k,
                     sections=[render_gap_markdown(skew, ec.main_k, evalset.n_requests)])
        evalset.save(tmp / EVALSET_FILE)
        summary["mlflow_run_id"] = _log_mlflow(cfg.mlflow, tmp / REPORT_DIR, summary,
                                             (Path(index_dir), index_manifest) if index_dir is not None else None)
        write_json(tmp / SUMMARY_JSON, summary)
    return {**summary, "out_dir": str(out), "report_dir": str(out / REPORT_DIR), "metrics": report.to_json()}


_INDEX_METRICS = ("ann_recall", "latency_p50_ms", "latency_p99_ms", "bytes_per_vector", "build_seconds")


def _log_mlflow(cfg: MlflowConfig, report_dir: Path, summary: dict[str, Any],
                index: tuple[Path, dict[str, Any] | None] | None = None) -> str | None:
    """The report's metrics and files in a new run of the experiment (log_report_to_mlflow), with the evaluated
    index's manifest numbers and its ANN recall vs latency plot (artifact path `index`); None untracked."""
    from ebr.train.tracking import mlflow_run

    with mlflow_run(cfg, "evaluate_two_tower", {"ebr.day": summary["day"],
                                                "ebr.model_version": summary["model_version"]}) as run:
        if run is None:
            return None
        import mlflow

        from ebr.evaluate.report import log_report_to_mlflow
        from ebr.train.tracking import using_tracking_uri

        with using_tracking_uri(run.client.tracking_uri), mlflow.start_run(run_id=run.run_id):
            log_report_to_mlflow(report_dir)
            mlflow.log_params({"model_version": summary["model_version"],
                               "champion_version": str(summary["champion_version"]),
                               "gate_publish": str(summary["gate"]["publish"])})
            if index is not None:
                _log_index(*index)
        return run.run_id


def _log_index(index_dir: Path, manifest: dict[str, Any] | None) -> None:
    """The index manifest's recall, latency and size as `index.*` metrics, its factory and search parameters as
    params, and manifest.json + ann_recall_vs_latency.png as artifacts of the active run."""
    import mlflow

    from ebr.index.manifest import MANIFEST_NAME, PLOT_NAME

    manifest = manifest or {}
    mlflow.log_metrics({f"index.{k}": float(manifest[k]) for k in _INDEX_METRICS
                        if isinstance(manifest.get(k), int | float)})
    mlflow.log_params({"index.factory": str(manifest.get("factory")),
                       "index.search_params": json.dumps(manifest.get("search_params", {}), sort_keys=True)})
    for name in (MANIFEST_NAME, PLOT_NAME):
        if (index_dir / name).is_file():
            mlflow.log_artifact(str(index_dir / name), artifact_path="index")
