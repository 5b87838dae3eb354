"""The release half of a daily run: evaluate against baselines and the champion, then publish or keep.

`evaluate_day` writes the day's evaluation (table, metrics, examples) into the workspace reports and
returns the gate decision; `publish_day` assembles and publishes the bundle, tags the MLflow model version
with the bundle version, moves its `champion` alias and derives CURRENT from that alias; `keep_day` records
why the champion stays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ebr.artifacts.checksums import sha256_file
from ebr.bundle.champion import (
    BUNDLE_VERSION_TAG,
    CHAMPION_ALIAS,
    champion_model_dir,
    sync_current_from_registry,
)
from ebr.bundle.layout import assemble_bundle, current_version, publish_bundle, write_current
from ebr.evaluate.gate import GateDecision
from ebr.train.tracking import resolve_tracking_uri
from ebr.workspace import Workspace

if TYPE_CHECKING:
    from ebr.config import EbrConfig

EXAMPLES = 3
EXAMPLE_K = 10


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def ranker_rows(coarse_dir: str | Path) -> tuple[str, dict[str, Any]]:
    """The coarse-ranker step's report (teacher, distilled and plain students) as markdown and metrics."""
    coarse_dir = Path(coarse_dir)
    md = (coarse_dir / "report.md").read_text(encoding="utf-8") if (coarse_dir / "report.md").is_file() else ""
    return md, _read_json(coarse_dir / "metrics.json") or {}


def example_queries(evalset_path: Path, model_dir: str | Path, index_dir: str | Path, features_dir: str | Path,
                    data_root: str | Path, day: str, n: int = EXAMPLES, k: int = EXAMPLE_K) -> list[dict[str, Any]]:
    """`n` evaluation requests with complete labels, their model top-`k` from the built index, with titles and
    ground-truth labels (the first ones by request id, so the same day shows the same examples)."""
    from ebr.evaluate.two_tower import encode_queries, query_feature_rows
    from ebr.index import load_index
    from ebr.index.export import export_dir_of
    from ebr.judgements.corpus import load_corpus
    from ebr.judgements.evalset import EvalSet
    from ebr.models.export import load_exported

    evalset = EvalSet.load(evalset_path)
    f = evalset.frame
    pick = f[f["labels_complete"].astype(bool)].sort_values("request_id").drop_duplicates("query").head(n)
    if pick.empty:
        return []
    pick = pick.reset_index(drop=True)
    rows = query_feature_rows(features_dir, pick)
    vectors = encode_queries(load_exported(export_dir_of(model_dir)), rows, 256)
    scores, ids = load_index(index_dir).search(vectors, k)
    corpus = load_corpus(data_root, day)
    titles = dict(zip(corpus.doc_ids.tolist(), corpus.titles.tolist(), strict=True))
    out = []
    for i, r in enumerate(pick.itertuples(index=False)):
        labels = dict(zip(np.asarray(r.label_doc_ids).tolist(), np.asarray(r.label_values).tolist(), strict=True))
        items = [{"doc_id": int(d), "score": float(s), "label": int(labels.get(int(d), 0)),
                  "title": titles.get(int(d), "")} for d, s in zip(ids[i], scores[i], strict=True) if d >= 0]
        out.append({"request_id": r.request_id, "query": r.query,
                    "user_id": None if pd.isna(r.user_id) else int(r.user_id),
                    "query_category_leaf": r.query_category_leaf, "relevant_docs": len(labels), "items": items})
    return out


def evaluate_day(data_root: str | Path, day: str, ws: Workspace, cfg: EbrConfig, *, model_dir: str | Path,
                 embeddings_dir: str | Path, index_dir: str | Path, coarse_dir: str | Path,
                 features_dir: str | Path, out_dir: str | Path) -> GateDecision:
    """Evaluate the new model on `day` (model, champion, baselines, ANN recall, rankers) and decide the gate."""
    from ebr.evaluate.two_tower import EVALSET_FILE, REPORT_DIR, evaluate_two_tower

    tracking_uri = resolve_tracking_uri(cfg.evaluation.mlflow)  # before the run: tracking scopes its URI
    res = evaluate_two_tower(model_dir, embeddings_dir, features_dir, data_root, day, out_dir, cfg.evaluation,
                             champion_dir=champion_model_dir(ws.bundles), index_dir=index_dir)
    retrieval_md = (Path(res["report_dir"]) / "report.md").read_text(encoding="utf-8")
    rankers_md, rankers = ranker_rows(coarse_dir)
    examples = example_queries(Path(out_dir) / EVALSET_FILE, model_dir, index_dir, features_dir, data_root, day)
    decision = GateDecision(bool(res["gate"]["publish"]), list(res["gate"]["reasons"]))
    ws.record(day, "evaluation", {
        "day": day, "table": retrieval_md.strip() + ("\n\n" + rankers_md.strip() if rankers_md else ""),
        "retrieval": res["metrics"], "rankers": rankers, "gate_inputs": res["gate_inputs"],
        "model_version": res["model_version"], "champion_version": res["champion_version"],
        "report_dir": str(Path(out_dir) / REPORT_DIR), "examples": examples,
        "mlflow_run_id": res.get("mlflow_run_id"), "mlflow_tracking_uri": tracking_uri,
    })
    return decision


def bundle_version(day: str, model_dir: str | Path) -> str:
    """A deterministic bundle version: the day and a digest of the trained weights."""
    return f"{day}-{sha256_file(Path(model_dir) / 'checkpoint.pt')[:10]}"


def publish_day(data_root: str | Path, day: str, ws: Workspace, cfg: EbrConfig, *, model_dir: str | Path,
                index_dir: str | Path, coarse_dir: str | Path, report_dir: str | Path, reason: str) -> Path:
    """Assemble the bundle (model, coarse ranker, index, docs, metrics), publish it atomically, alias the MLflow
    model version `champion`, and record the decision."""
    from ebr.judgements.corpus import load_corpus

    version = bundle_version(day, model_dir)
    model_manifest = _read_json(Path(model_dir) / "manifest.json") or {}
    evaluation = ws.read(day, "evaluation") or {}
    corpus = load_corpus(data_root, day)
    docs = pd.DataFrame({"doc_id": corpus.doc_ids, "title": corpus.titles, "category_leaf": corpus.category_leaf,
                         "brand": corpus.brand})
    staging = ws.bundles / f".staging-{version}"
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    ws.bundles.mkdir(parents=True, exist_ok=True)
    info = {
        "day": day, "model_version": model_manifest.get("model_version"), "reason": reason,
        "metrics": (evaluation.get("gate_inputs") or {}).get("new"),
        "registered_model": model_manifest.get("registered_model"),
        "registered_version": model_manifest.get("registered_version"),
    }
    assemble_bundle(staging, version=version, model_dir=model_dir, index_dir=index_dir, docs=docs,
                    coarse_ranker_dir=coarse_dir, info=info)
    final = publish_bundle(ws.bundles, staging, version, switch_current=False)
    uri = resolve_tracking_uri(cfg.two_tower.mlflow)
    alias = _set_champion_alias(uri, info["registered_model"], info["registered_version"], version)
    if alias is not None:  # CURRENT follows the registry's champion, never a second source of truth
        current = sync_current_from_registry(ws.bundles, str(uri), str(info["registered_model"]))
        if current != version:
            raise RuntimeError(f"registry champion is bundle {current}, not the published {version}")
        source = "registry"
    else:  # untracked run: no registry to derive from
        write_current(ws.bundles, version)
        source = "publish (no MLflow registry)"
    coarse_manifest = _read_json(Path(coarse_dir) / "manifest.json") or {}
    coarse_alias = _set_champion_alias(resolve_tracking_uri(cfg.coarse_ranker.mlflow),
                                       coarse_manifest.get("registered_model"),
                                       coarse_manifest.get("registered_version"), version)
    ws.record(day, "decision", {"publish": True, "reason": reason, "bundle": str(final), "version": version,
                                "mlflow_alias": alias, "coarse_ranker_alias": coarse_alias, "current_from": source})
    return final


def _set_champion_alias(tracking_uri: str | None, name: str | None, version: str | int | None,
                        bundle_version: str) -> str | None:
    """Tag the registered version with its bundle version and point the model's `champion` alias at it (only
    ever at publish time), in the registry the trainer registered it in (never MLflow's ambient default)."""
    if not tracking_uri or not name or version is None:
        return None
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.set_model_version_tag(name, str(version), BUNDLE_VERSION_TAG, bundle_version)
    client.set_registered_model_alias(name, CHAMPION_ALIAS, str(version))
    return f"models:/{name}@{CHAMPION_ALIAS} -> {version}"


def keep_day(day: str, ws: Workspace, reason: str) -> None:
    """Record that the gate stayed closed and which bundle keeps serving."""
    ws.record(day, "decision", {"publish": False, "reason": reason, "bundle": None,
                                "version": current_version(ws.bundles)})
