"""The release half of a daily run, after the gate (`ebr.evaluate.day.evaluate_day`) decided: publish or keep.

`publish_day` assembles and publishes the bundle, tags the MLflow model version with the bundle version, moves
its `champion` alias and derives CURRENT from that alias; `keep_day` records why the champion stays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ebr.artifacts.checksums import sha256_file
from ebr.bundle.champion import BUNDLE_VERSION_TAG, CHAMPION_ALIAS, sync_current_from_registry
from ebr.bundle.layout import assemble_bundle, current_version, publish_bundle, write_current
from ebr.train.tracking import resolve_tracking_uri
from ebr.workspace import Workspace

if TYPE_CHECKING:
    from ebr.config import EbrConfig


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


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
        "retrieval": retrieval_defaults(evaluation.get("fusion")),
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


def retrieval_defaults(fusion: dict | None) -> dict | None:
    """The merge the day's evaluation chose (`ebr.evaluate.hybrid.tune_lexical_weight`) as the bundle states it:
    the server merges with it unless its operator or the request says otherwise."""
    if not fusion or fusion.get("lexical_weight") is None:
        return None
    return {"fusion": fusion.get("fusion"), "lexical_weight": float(fusion["lexical_weight"])}


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
