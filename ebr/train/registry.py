"""The trained models as MLflow pyfunc models in the model registry, so a platform can load them by alias.

Two pyfunc wrappers over the export directories the steps already write (loaded with `load_exported`):

- `TwoTowerPyfunc` (registered as `ebr-two-tower`): `predict(df)` takes query rows (`query` required, the
  user / sequence columns of `ebr.models.inputs` optional; MLflow's schema holds no nulls in `user_id` or list
  columns: logged-out requests go in a batch without `user_id`, a missing list is []) and returns the query
  embeddings, float32 [n, dim].
- `CoarseRankerPyfunc` (registered as `ebr-coarse-ranker`): `predict(df)` takes (query row + `doc_id`) rows and
  returns the coarse score of each pair, float64 [n], NaN where the doc is not in the shipped doc matrix.

`log_and_register` saves the pyfunc locally, uploads it into the run's artifacts (through `MlflowClient`, no
global MLflow state), registers a version and points the `challenger` alias at it. Publishing moves `champion`
(`ebr.bundle.release`). torch and pandas are imported inside functions.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mlflow.pyfunc import PythonModel  # the wrappers subclass it; this module is imported only where MLflow is used

if TYPE_CHECKING:
    import pandas as pd

    from ebr.models.config import FeaturizerConfig
    from ebr.train.tracking import RunLogger

TWO_TOWER_MODEL = "ebr-two-tower"
COARSE_RANKER_MODEL = "ebr-coarse-ranker"
PYFUNC_ARTIFACT_PATH = "pyfunc"
CHALLENGER = "challenger"
CHAMPION = "champion"
MODEL_VERSION_TAG = "ebr.model_version"
EXAMPLE_QUERIES = ("red running shoes", "手机壳")
_BATCH = 1024


# ------------------------------------------------------------------------------------------ pyfunc models


def _query_rows(model_input: Any) -> pd.DataFrame:
    """The pyfunc input as a DataFrame with a default index (a list of dicts is accepted too)."""
    import pandas as pd

    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(list(model_input))
    frame = frame.reset_index(drop=True)
    # MLflow's schema enforcement turns an optional integer column with nulls into float: give ids back as ints.
    for col in ("user_id", "doc_id"):
        if col in frame.columns and frame[col].dtype.kind == "f":
            frame[col] = frame[col].astype("Int64")
    return frame.astype(object).where(frame.notna(), None)


def _encode(tower: Any, rows: pd.DataFrame, featurizer: FeaturizerConfig) -> np.ndarray:
    from ebr.models.inputs import featurize_queries

    out = np.zeros((len(rows), tower.output_dim), dtype=np.float32)
    for start in range(0, len(rows), _BATCH):
        part = rows.iloc[start : start + _BATCH]
        out[start : start + len(part)] = tower(featurize_queries(part, featurizer)).numpy()
    return out


class TwoTowerPyfunc(PythonModel):
    """Query rows -> query embeddings through the exported two-tower query tower (artifact `export`)."""

    def load_context(self, context: Any) -> None:
        from ebr.models.export import load_exported

        self.bundle = load_exported(context.artifacts["export"])
        if self.bundle.featurizer is None:
            raise ValueError(f"export {self.bundle.path} records no featurizer: not a two-tower export")

    def predict(self, context, model_input, params=None):  # noqa: ANN001 - MLflow reads type hints
        """float32 [n, dim] embeddings of the rows (same rows -> same vectors)."""
        return _encode(self.bundle["query_tower"], _query_rows(model_input), self.bundle.featurizer)


class CoarseRankerPyfunc(PythonModel):
    """(query row, doc_id) pairs -> coarse scores through the exported student and its offline doc matrix."""

    def load_context(self, context: Any) -> None:
        from ebr.models.export import load_exported

        self.bundle = load_exported(context.artifacts["export"])
        scorer = self.bundle["scorer"]
        if set(scorer.input_spec) != {"query", "doc"} or self.bundle.featurizer is None:
            raise ValueError("only a two-tower coarse ranker (scorer on query and doc vectors) can be served")
        ids = np.load(context.artifacts["doc_ids"], allow_pickle=False).astype(np.int64)
        vectors = np.load(context.artifacts["doc_vectors"], allow_pickle=False).astype(np.float32)
        order = np.argsort(ids, kind="stable")
        self.ids, self.vectors = ids[order], vectors[order]

    def predict(self, context, model_input, params=None):  # noqa: ANN001 - MLflow reads type hints
        """float64 [n] scores of the pairs, NaN for a doc_id missing from the doc matrix."""
        import torch

        rows = _query_rows(model_input)
        if "doc_id" not in rows.columns:
            raise ValueError("coarse ranker input needs a doc_id column")
        doc_ids = np.asarray([-1 if d is None else int(d) for d in rows["doc_id"]], dtype=np.int64)
        out = np.full(len(rows), np.nan, dtype=np.float64)
        if not len(rows) or not len(self.ids):
            return out
        pos = np.minimum(np.searchsorted(self.ids, doc_ids), len(self.ids) - 1)
        found = np.flatnonzero(self.ids[pos] == doc_ids)
        if not len(found):
            return out
        q = _encode(self.bundle["query_tower"], rows.iloc[found], self.bundle.featurizer)
        scores = self.bundle["scorer"]({"query": torch.from_numpy(q),
                                        "doc": torch.from_numpy(self.vectors[pos[found]])})
        out[found] = scores.reshape(-1).double().numpy()
        return out


# --------------------------------------------------------------------------------------------- signatures


def query_input_schema(featurizer: FeaturizerConfig, with_doc_id: bool = False) -> Any:
    """The input schema of a query row: `query` required, every other featurizer column optional."""
    from mlflow.types.schema import Array, ColSpec, Schema

    from ebr.models.config import SEQUENCE_WINDOWS

    cols = [ColSpec("string", "query")]
    if with_doc_id:
        cols.append(ColSpec("long", "doc_id"))
    cols += [ColSpec("long", "user_id", required=False), ColSpec("string", "user_gender", required=False),
             ColSpec("double", "user_age", required=False), ColSpec("string", "user_city", required=False),
             ColSpec(Array("string"), "user_profile_tags", required=False),
             ColSpec(Array("string"), "recent_queries", required=False)]
    kinds = {"doc_ids": "long", "categories": "string", "authors": "long", "event_types": "string"}
    cols += [ColSpec(Array(t), f"seq_{w}_{f}", required=False) for w in SEQUENCE_WINDOWS for f, t in kinds.items()]
    cols += [ColSpec("double", f.name, required=False) for f in featurizer.user_numeric]
    return Schema(cols)


def two_tower_signature(featurizer: FeaturizerConfig, dim: int) -> Any:
    """Query rows in, float32 [-1, dim] embeddings out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(inputs=query_input_schema(featurizer),
                          outputs=Schema([TensorSpec(np.dtype("float32"), (-1, dim), "embedding")]))


def coarse_ranker_signature(featurizer: FeaturizerConfig) -> Any:
    """(query row + doc_id) rows in, float64 [-1] scores out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(inputs=query_input_schema(featurizer, with_doc_id=True),
                          outputs=Schema([TensorSpec(np.dtype("float64"), (-1,), "score")]))


def query_example(doc_ids: np.ndarray | None = None) -> pd.DataFrame:
    """A small input example: two logged-in requests (with a doc_id each when given)."""
    import pandas as pd

    frame = pd.DataFrame({"query": list(EXAMPLE_QUERIES), "user_id": [1, 2]})
    if doc_ids is not None and len(doc_ids):
        frame.insert(1, "doc_id", [int(doc_ids[0]), int(doc_ids[min(1, len(doc_ids) - 1)])])
    return frame


def _requirements() -> list[str]:
    """Pinned pip requirements (no inference: it would import the model in a subprocess); ebr itself must be
    installed where the model is loaded."""
    out = []
    for name in ("mlflow", "torch", "numpy", "pandas", "pydantic"):
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out


# ------------------------------------------------------------------------------------------ log + register


def save_pyfunc(path: Path, python_model: Any, artifacts: Mapping[str, str | Path], signature: Any,
                input_example: Any) -> Path:
    """`mlflow.pyfunc.save_model` of `python_model` with its artifacts copied in, into `path` (must not exist)."""
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(str(path), python_model=python_model,
                             artifacts={k: str(v) for k, v in artifacts.items()}, signature=signature,
                             input_example=input_example, pip_requirements=_requirements())
    return path


def log_and_register(run: RunLogger, name: str, python_model: Any, artifacts: Mapping[str, str | Path],
                     signature: Any, input_example: Any, *, description: str | None = None,
                     tags: Mapping[str, str] | None = None) -> str:
    """Log the pyfunc under the run's `pyfunc/<name>/` artifacts, register it as a new version of `name`, tag it and
    move the `challenger` alias to it; returns the version number."""
    artifact_path = f"{PYFUNC_ARTIFACT_PATH}/{name}"
    tmp = Path(tempfile.mkdtemp(prefix="ebr-pyfunc-"))
    try:
        save_pyfunc(tmp / "model", python_model, artifacts, signature, input_example)
        run.log_artifacts(tmp / "model", artifact_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    version = run.register(name, artifact_path, description)
    for k, v in (tags or {}).items():
        run.client.set_model_version_tag(name, version, k, str(v))
    run.client.set_registered_model_alias(name, CHALLENGER, version)
    return version


def register_two_tower(run: RunLogger, name: str, export_dir: str | Path, model_version: str,
                       description: str | None = None) -> str:
    """The two-tower export as a pyfunc version of `name` (alias `challenger`); returns the version number."""
    from ebr.models.export import load_exported

    exported = load_exported(export_dir, only=())  # the manifest says all a signature needs
    if exported.featurizer is None:
        raise ValueError(f"export {export_dir} records no featurizer: not a two-tower export")
    dim = exported.output_dim("query_tower")
    return log_and_register(run, name, TwoTowerPyfunc(), {"export": export_dir},
                            two_tower_signature(exported.featurizer, dim), query_example(),
                            description=description, tags={MODEL_VERSION_TAG: model_version})


def register_coarse_ranker(run: RunLogger, name: str, model_dir: str | Path, model_version: str,
                           description: str | None = None) -> str:
    """A two-tower coarse ranker's export + doc matrix as a pyfunc version of `name` (alias `challenger`)."""
    from ebr.models.export import load_exported
    from ebr.train.rankers import DOC_IDS, DOC_VECTORS, EXPORT_DIR

    model_dir = Path(model_dir)
    exported = load_exported(model_dir / EXPORT_DIR, only=())
    if exported.featurizer is None:
        raise ValueError(f"export {model_dir / EXPORT_DIR} records no featurizer")
    doc_ids = np.load(model_dir / DOC_IDS, allow_pickle=False)
    artifacts = {"export": model_dir / EXPORT_DIR, "doc_ids": model_dir / DOC_IDS,
                 "doc_vectors": model_dir / DOC_VECTORS}
    return log_and_register(run, name, CoarseRankerPyfunc(), artifacts, coarse_ranker_signature(exported.featurizer),
                            query_example(doc_ids), description=description,
                            tags={MODEL_VERSION_TAG: model_version})
