"""One bundle in memory: the query tower, the Faiss index, the lexical (BM25) index, the docs' structured fields
and the coarse ranker.

`LoadedBundle.open` verifies the whole directory first (`ebr.bundle.verify_bundle`: checksums, no missing or
extra file, tower and index dimensions) and refuses anything inconsistent with a `BundleRefused` naming the
reason; parts are then loaded without re-hashing. A bundle assembled before the lexical channel has no
`lexical/` and loads with `lexical = None`; a bundle whose `lexical/` does not load is refused like any other part.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ebr.bundle import BundleError, verify_bundle
from ebr.bundle.layout import LEXICAL_DIR, QUERY_TOWER_EXPORT
from ebr.index import ShardedSearcher, load_index
from ebr.index.search import AllowedSet
from ebr.lexical import LexicalIndex, lexical_summary, load_lexical_index
from ebr.models.config import tower_reads
from ebr.models.export import ExportedModule, load_exported, recorded_query_tower
from serving.coarse_rescorer import CoarseRescorer
from serving.relevance_filter import DocFields, Expectation, constraint_key

if TYPE_CHECKING:
    from ebr.models.config import FeaturizerConfig

log = logging.getLogger(__name__)

REFUSAL_REASONS = ("checksum", "missing_file", "dimension", "invalid")


class BundleRefused(Exception):
    """A bundle that will not be served: `reason` is one of REFUSAL_REASONS, the message says what is wrong."""

    def __init__(self, version: str, reason: str, message: str) -> None:
        super().__init__(f"bundle {version} refused ({reason}): {message}")
        self.version = version
        self.reason = reason


def refusal_reason(message: str) -> str:
    """Classify a bundle verification message."""
    text = message.lower()
    if "checksum" in text:
        return "checksum"
    if "missing" in text:
        return "missing_file"
    if "dim" in text:
        return "dimension"
    return "invalid"


def _tower(path: Path, manifest: dict[str, Any], program: ExportedModule) -> ExportedModule:
    """The query tower the manifest chose: the ONNX Runtime session when the bundle ships one (checked at
    conversion against `program` within 1e-5), else the torch.export program. A host without onnxruntime
    serves the program and says so in the log."""
    if manifest.get("query_tower_runtime") != "onnxruntime":
        return program
    try:
        import onnxruntime  # noqa: F401 - only to know whether the runtime is installed
    except ImportError:
        log.warning("bundle %s ships an ONNX query tower but onnxruntime is not installed: serving the "
                    "torch.export program", manifest.get("version"))
        return program
    from ebr.models.runtime import load_query_tower_onnx

    return load_query_tower_onnx(path / QUERY_TOWER_EXPORT, verify=False)  # the bundle's checksums cover it


CONSTRAINT_CACHE_BYTES = 256 << 20  # allowed ids + bitmaps kept per bundle for repeated constraint sets


@dataclass(frozen=True)
class Constraint:
    """One constraint set's allowed docs: sorted ids and the index's per-shard selectors."""

    ids: np.ndarray
    selection: AllowedSet

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes) + self.selection.nbytes


@dataclass
class LoadedBundle:
    """Everything a request needs from one bundle version; immutable once switched in."""

    version: str
    path: Path
    manifest: dict[str, Any]
    tower: ExportedModule
    featurizer: FeaturizerConfig
    searcher: ShardedSearcher
    docs: DocFields
    rescorer: CoarseRescorer | None
    lexical: LexicalIndex | None = None  # `lexical.search(query, k)` -> (doc ids int64 [k], scores float32 [k])
    reads_user_features: bool = True  # the query tower reads a user input (profile, history, sequences)
    loaded_at: float = field(default_factory=time.time)
    _constraints: OrderedDict[tuple[Expectation, ...], Constraint] = field(
        default_factory=OrderedDict, repr=False, compare=False)
    _constraints_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def ntotal(self) -> int:
        return self.searcher.ntotal

    def constraint(self, expectations: list[Expectation]) -> Constraint:
        """The docs the expectations allow, as ids (for BM25) and as the index's prepared selectors; built once
        per constraint set and kept in a cache bounded by CONSTRAINT_CACHE_BYTES (least recently used first)."""
        key = constraint_key(expectations)
        with self._constraints_lock:
            hit = self._constraints.get(key)
            if hit is not None:
                self._constraints.move_to_end(key)
                return hit
        ids = self.docs.allowed(expectations)
        made = Constraint(ids, self.searcher.prepare(ids))
        with self._constraints_lock:
            self._constraints[key] = made
            total = sum(c.nbytes for c in self._constraints.values())
            while total > CONSTRAINT_CACHE_BYTES and len(self._constraints) > 1:
                total -= self._constraints.popitem(last=False)[1].nbytes
        return made

    @property
    def retrieval_defaults(self) -> dict[str, Any] | None:
        """The merge the bundle's evaluation chose ({"fusion", "lexical_weight"}), or None (an older bundle)."""
        info = self.manifest.get("info") or {}
        tuned = info.get("retrieval")
        return tuned if isinstance(tuned, dict) else None

    @classmethod
    def open(cls, path: str | Path, version: str | None = None) -> LoadedBundle:
        """Verify and load the bundle directory `path`; `version` (the name CURRENT gave) must match it."""
        path = Path(path)
        version = version or path.name
        try:
            manifest = verify_bundle(path)
        except BundleError as e:
            raise BundleRefused(version, refusal_reason(str(e).replace(str(path), "")), str(e)) from e
        if manifest.get("version") != version:
            raise BundleRefused(version, "invalid", f"manifest says version {manifest.get('version')!r}")
        try:
            exported = load_exported(path / QUERY_TOWER_EXPORT, verify=False)
            if "query_tower" not in exported.modules or exported.featurizer is None:
                raise BundleRefused(version, "invalid", f"{QUERY_TOWER_EXPORT} lacks the query tower or its featurizer")
            tower = _tower(path, manifest, exported["query_tower"])
            searcher = load_index(path / "index", verify=False, expected_dim=tower.output_dim)
            docs = DocFields(pd.read_parquet(path / "docs.parquet", columns=["doc_id", "category_leaf", "brand"]))
            index_ids = np.concatenate([
                np.load(path / "index" / s["doc_ids_file"], allow_pickle=False)
                for s in searcher.manifest["shards"]
            ]) if searcher.manifest else np.zeros(0, dtype=np.int64)  # fmt: skip
            unknown = docs.missing(index_ids)
            if len(unknown):
                raise BundleRefused(
                    version, "invalid",
                    f"docs.parquet lacks {len(unknown)} indexed doc ids, e.g. {unknown[:5].tolist()}",
                )
            lexical = None
            if "lexical" in manifest or (path / LEXICAL_DIR).exists():
                lexical = load_lexical_index(path / LEXICAL_DIR)
                summary = lexical_summary(lexical)
                stated = manifest.get("lexical") or {}
                if any(stated.get(k) != v for k, v in summary.items()):
                    raise BundleRefused(version, "invalid", f"manifest lexical entry {stated} disagrees with "
                                                            f"{LEXICAL_DIR}/ ({summary})")
                unknown = docs.missing(lexical.doc_ids)
                if len(unknown):
                    raise BundleRefused(
                        version, "invalid",
                        f"docs.parquet lacks {len(unknown)} lexical doc ids, e.g. {unknown[:5].tolist()}",
                    )
            rescorer = None
            if (path / "coarse_ranker").is_dir():
                rescorer = CoarseRescorer.open(path / "coarse_ranker")
        except BundleRefused:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to load means the bundle is not served
            raise BundleRefused(version, refusal_reason(str(e).replace(str(path), "")),
                                f"{type(e).__name__}: {e}") from e
        return cls(
            version=version,
            path=path,
            manifest=manifest,
            tower=tower,
            featurizer=exported.featurizer,
            searcher=searcher,
            docs=docs,
            rescorer=rescorer,
            lexical=lexical,
            reads_user_features=tower_reads(recorded_query_tower(exported.manifest)),
        )
