"""The evaluation step of a daily run: evaluate the new model on day D and decide the champion-comparison gate.

`evaluate_day` evaluates the trained model beside the champion and the baselines (`evaluate_two_tower`), adds
the coarse-ranker step's table (`ranker_rows`) and a few example queries with their top docs
(`example_queries`), writes the day's `evaluation` record into the workspace reports and returns the gate
decision. The champion is passed in as a model directory (the caller reads it from the published bundles), so
this package never reaches up to `ebr.bundle`; the index's own rule (`ann_gate_from_dirs`) and `combine` are in
`ebr.evaluate.gate`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ebr.evaluate.gate import GateDecision
from ebr.train.tracking import resolve_tracking_uri
from ebr.workspace import Workspace

if TYPE_CHECKING:
    from ebr.evaluate.two_tower import TwoTowerEvalConfig

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
    vectors = encode_queries(load_exported(export_dir_of(model_dir), only=["query_tower"]), rows, 256)
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


def evaluate_day(data_root: str | Path, day: str, ws: Workspace, cfg: TwoTowerEvalConfig, *,
                 champion_dir: str | Path | None, model_dir: str | Path, embeddings_dir: str | Path,
                 index_dir: str | Path, coarse_dir: str | Path, features_dir: str | Path,
                 out_dir: str | Path) -> GateDecision:
    """Evaluate the new model on `day` against the champion model at `champion_dir` (None before the first
    publish), the baselines, ANN recall and the rankers; record the evaluation and return the gate decision.

    `cfg` is the run's `evaluation` section."""
    from ebr.evaluate.two_tower import EVALSET_FILE, REPORT_DIR, evaluate_two_tower

    tracking_uri = resolve_tracking_uri(cfg.mlflow)  # before the run: tracking scopes its URI
    res = evaluate_two_tower(model_dir, embeddings_dir, features_dir, data_root, day, out_dir, cfg,
                             champion_dir=champion_dir, index_dir=index_dir, coarse_dir=coarse_dir)
    retrieval_md = (Path(res["report_dir"]) / "report.md").read_text(encoding="utf-8")
    rankers_md, rankers = ranker_rows(coarse_dir)
    examples = example_queries(Path(out_dir) / EVALSET_FILE, model_dir, index_dir, features_dir, data_root, day)
    decision = GateDecision(bool(res["gate"]["publish"]), list(res["gate"]["reasons"]))
    ws.record(day, "evaluation", {
        "day": day, "table": retrieval_md.strip() + ("\n\n" + rankers_md.strip() if rankers_md else ""),
        "retrieval": res["metrics"], "rankers": rankers, "gate_inputs": res["gate_inputs"],
        "fusion": res.get("fusion"),
        "model_version": res["model_version"], "champion_version": res["champion_version"],
        "report_dir": str(Path(out_dir) / REPORT_DIR), "examples": examples,
        "mlflow_run_id": res.get("mlflow_run_id"), "mlflow_tracking_uri": tracking_uri,
    })
    return decision
