"""Searching a built index: `ShardedSearcher` (top-k and range search over shards, merged by score)
and `load_index` (reads an index directory, verifying checksums and dimensions).

Each shard is its own Faiss index whose labels are positions; a per-shard int64 array maps positions
to doc ids. On a cluster the export and build steps fan out over shards with KFP `dsl.ParallelFor`
and a server loads all shards (or one server per shard behind a merger); merging is by score, so the
merged top-k equals the top-k of one index over all docs whenever each shard's search is exact.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from ebr.artifacts.checksums import verify_checksums
from ebr.index.evaluate import merge_topk
from ebr.index.factory import IndexLayout, inspect_index, vector_bytes
from ebr.index.filtered import (
    AllowedPositions,
    ExactSubset,
    ensure_direct_map,
    filtered_params,
    list_assignment,
    positions_mask,
    reconstruct_positions,
    stores_exact_vectors,
)
from ebr.index.manifest import MANIFEST_NAME, ManifestError, read_manifest

RANGE_EMULATION_START_K = 64


def search_params_string(params: Mapping[str, float]) -> str:
    """The faiss.ParameterSpace string of search parameters, e.g. "nprobe=32,k_factor_rf=4"."""
    return ",".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                    for name, value in params.items())


def _applies(space: faiss.ParameterSpace, index: faiss.Index, name: str, value: float) -> bool:
    try:
        space.set_index_parameter(index, name, float(value))
    except RuntimeError:
        return False
    return True


@dataclass(frozen=True)
class AllowedSet:
    """Allowed doc ids prepared for one searcher: a bitmap selector per shard (None: no allowed doc there).
    The selectors keep their bitmaps alive; Faiss does not own them."""

    shards: list[AllowedPositions | None]
    count: int
    searcher: Any = field(repr=False, compare=False)

    @property
    def nbytes(self) -> int:
        """Memory held by the bitmaps."""
        return sum(s.nbytes for s in self.shards if s is not None)


class ShardedSearcher:
    """Top-k and range search with doc ids over one or more Faiss index shards of the same dimension.

    Query vectors must be L2-normalized float rows [nq, d] (a single [d] row is accepted); scores are
    inner products (cosine). Missing results (fewer than k docs reachable) are padded with id -1 and
    score -inf.
    """

    def __init__(
        self,
        indexes: Sequence[faiss.Index],
        doc_ids: Sequence[np.ndarray],
        *,
        search_params: Mapping[str, float] | None = None,
        manifest: dict[str, Any] | None = None,
    ) -> None:
        if not indexes:
            raise ValueError("ShardedSearcher needs at least one index shard")
        if len(indexes) != len(doc_ids):
            raise ValueError(f"{len(indexes)} index shards but {len(doc_ids)} doc-id arrays")
        dims = {int(ix.d) for ix in indexes}
        if len(dims) != 1:
            raise ValueError(f"index shards have different dimensions {sorted(dims)}")
        self._indexes = list(indexes)
        self._doc_ids = [np.ascontiguousarray(ids, dtype=np.int64) for ids in doc_ids]
        for i, (ix, ids) in enumerate(zip(self._indexes, self._doc_ids, strict=True)):
            if ix.ntotal != ids.shape[0]:
                raise ValueError(f"shard {i}: index holds {ix.ntotal} vectors but {ids.shape[0]} doc ids")
        self._sorted: list[tuple[np.ndarray, np.ndarray]] | None = None  # per shard (sorted ids, argsort)
        self._lists: list[np.ndarray | None] | None = None  # per shard: position -> IVF list (None: no IVF)
        self._init_lock = threading.Lock()
        self.layout: IndexLayout = inspect_index(self._indexes[0])
        self.manifest = manifest
        self.search_params: dict[str, float] = {}
        if search_params:
            self.set_search_params(search_params)

    @property
    def dim(self) -> int:
        return int(self._indexes[0].d)

    @property
    def ntotal(self) -> int:
        return sum(int(ix.ntotal) for ix in self._indexes)

    @property
    def num_shards(self) -> int:
        return len(self._indexes)

    @property
    def vector_bytes(self) -> dict[str, int]:
        """Resident bytes per vector by part (code, list ids, graph, refine, doc id; see factory.vector_bytes)."""
        return vector_bytes(self._indexes[0])

    def set_search_params(self, params: Mapping[str, float]) -> None:
        """Set Faiss search parameters (nprobe, efSearch, k_factor_rf, ...) on every shard in one
        faiss.ParameterSpace.set_index_parameters call ("nprobe=32,k_factor_rf=4")."""
        if not params:
            return
        space = faiss.ParameterSpace()
        for name, value in params.items():
            if not isinstance(value, int | float | np.integer | np.floating) or isinstance(value, bool):
                raise ValueError(f"search parameter {name}={value!r} must be a number")
        text = search_params_string(params)
        for ix in self._indexes:
            try:
                space.set_index_parameters(ix, text)
            except RuntimeError as e:
                bad = next((n for n, v in params.items() if not _applies(space, ix, n, v)), None)
                what = f"{bad}={params[bad]}" if bad is not None else text
                raise ValueError(
                    f"search parameter {what} does not apply to this index: {str(e).splitlines()[0]}"
                ) from e
        self.search_params.update(params)

    def _queries(self, query_vectors: np.ndarray) -> np.ndarray:
        q = np.asarray(query_vectors)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(
                f"query_vectors has shape {np.shape(query_vectors)}; the index expects [nq, {self.dim}]"
            )
        if not (np.issubdtype(q.dtype, np.floating) or np.issubdtype(q.dtype, np.integer)):
            raise ValueError(f"query_vectors must be numeric, got dtype {q.dtype}")
        q = np.ascontiguousarray(q, dtype=np.float32)
        if not np.isfinite(q).all():
            raise ValueError("query_vectors contain NaN or infinite values")
        return q

    def _map_ids(self, shard: int, scores: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = self._doc_ids[shard]
        valid = pos >= 0
        mapped = np.where(valid, ids[np.where(valid, pos, 0)], -1) if ids.size else np.full_like(pos, -1)
        return np.where(valid, scores, -np.inf).astype(np.float32), mapped.astype(np.int64)

    def search(self, query_vectors: np.ndarray, k: int, allowed: np.ndarray | AllowedSet | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores [nq, k] descending, doc ids [nq, k]) over all shards; with `allowed` (doc ids, or the
        `prepare`d set of them, which a caller reusing one constraint should keep), the top k among those docs
        only, the constraint applied inside the search (ebr.index.filtered)."""
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        q = self._queries(query_vectors)
        if allowed is None:
            parts = [self._map_ids(i, *ix.search(q, int(k))) for i, ix in enumerate(self._indexes)]
        else:
            prepared = allowed if isinstance(allowed, AllowedSet) else self.prepare(allowed)
            parts = self._filtered(q, int(k), prepared)
        if len(parts) == 1:
            return parts[0]
        return merge_topk(
            np.concatenate([p[0] for p in parts], 1), np.concatenate([p[1] for p in parts], 1), int(k)
        )

    def prepare(self, allowed: np.ndarray) -> AllowedSet:
        """The per-shard selectors of `allowed` doc ids (unknown ids ignored): build once per constraint."""
        ids = np.asarray(allowed, dtype=np.int64)
        if len(ids) > 1 and not bool((ids[1:] > ids[:-1]).all()):  # sorted and unique already: skip the sort
            ids = np.unique(ids)
        sorted_ids = self._sorted_ids()
        if self._lists is None:
            self._lists = [list_assignment(ix) for ix in self._indexes]
        shards: list[AllowedPositions | None] = []
        for i, ix in enumerate(self._indexes):
            mask = positions_mask(self._doc_ids[i], *sorted_ids[i], ids)
            if not mask.any():
                shards.append(None)
                continue
            sel = AllowedPositions(mask, self._lists[i])
            if ExactSubset.worth_it(ix, sel, self.search_params):
                with self._init_lock:  # the first call makes the IVF's direct map
                    ExactSubset.attach(ix, sel, mask)
            shards.append(sel)
        return AllowedSet(shards, int(sum(s.count for s in shards if s is not None)), self)

    @property
    def stores_exact_vectors(self) -> bool:
        """Every shard keeps its vectors as added (Flat / IVF-Flat, inner product): `stored_vectors` can answer."""
        return all(stores_exact_vectors(ix) for ix in self._indexes)

    def _sorted_ids(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per shard (doc ids sorted, their argsort), built once."""
        with self._init_lock:
            if self._sorted is None:
                self._sorted = [(ids_[order], order) for ids_ in self._doc_ids
                                for order in [np.argsort(ids_, kind="stable")]]
            return self._sorted

    def stored_vectors(self, doc_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vectors float32 [n, dim], found bool [n]) of `doc_ids` read back from the shards (rows of unknown ids
        are 0); only for an index that `stores_exact_vectors`, where a read-back vector is the vector itself."""
        if not self.stores_exact_vectors:
            raise ValueError("this index does not store exact vectors (only Flat / IVF-Flat under inner product)")
        ids = np.asarray(doc_ids, dtype=np.int64)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        found = np.zeros(len(ids), dtype=bool)
        for ix, (sorted_ids, order) in zip(self._indexes, self._sorted_ids(), strict=True):
            if not len(sorted_ids) or not len(ids):
                continue
            at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
            hit = (sorted_ids[at] == ids) & ~found
            if hit.any():
                with self._init_lock:  # the first read makes an IVF's direct map
                    ensure_direct_map(ix)
                out[hit] = reconstruct_positions(ix, order[at[hit]])
                found |= hit
        return out, found

    def _filtered(self, q: np.ndarray, k: int, allowed: AllowedSet) -> list[tuple[np.ndarray, np.ndarray]]:
        if allowed.searcher is not self:
            raise ValueError("allowed set was prepared by another searcher (another bundle's index)")
        parts = []
        for i, ix in enumerate(self._indexes):
            sel = allowed.shards[i]
            if sel is None:
                parts.append((np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)))
                continue
            if sel.exact is not None:
                scores, pos = sel.exact.search(q, k)
            else:
                scores, pos = ix.search(q, k, params=filtered_params(ix, sel, self.search_params, q))
            parts.append(self._map_ids(i, scores, pos))
        return parts

    def range_search(
        self,
        query_vectors: np.ndarray,
        radius: float,
        *,
        method: Literal["auto", "native", "emulate"] = "auto",
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, (scores, doc ids) of all docs with score >= radius, highest first.

        "native" uses Faiss range_search (approximate like top-k: IVF scans nprobe lists); "emulate"
        repeats top-k search doubling k until the k-th score drops below radius; "auto" uses native
        search and falls back to emulation for index types without range search.
        """
        if method not in ("auto", "native", "emulate"):
            raise ValueError(f"range_search method must be auto, native or emulate, got {method!r}")
        q = self._queries(query_vectors)
        if not np.isfinite(radius):
            raise ValueError(f"radius must be finite, got {radius}")
        per_query: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(q.shape[0])]
        for shard, ix in enumerate(self._indexes):
            if ix.ntotal == 0:
                continue
            found = None
            if method in ("auto", "native"):
                try:
                    found = self._native_range(shard, q, radius)
                except RuntimeError as e:
                    if method == "native":
                        raise ValueError(
                            f"index shard {shard} does not support native range search: {e}"
                        ) from e
            if found is None:
                found = self._emulated_range(shard, q, radius)
            for i, hit in enumerate(found):
                per_query[i].append(hit)
        out = []
        for hits in per_query:
            s = np.concatenate([h[0] for h in hits]) if hits else np.empty(0, np.float32)
            d = np.concatenate([h[1] for h in hits]) if hits else np.empty(0, np.int64)
            order = np.argsort(-s, kind="stable")
            out.append((s[order], d[order]))
        return out

    def _native_range(self, shard: int, q: np.ndarray, radius: float) -> list[tuple[np.ndarray, np.ndarray]]:
        # Faiss keeps inner products strictly above the radius: step one float32 ulp down for ">=".
        below = float(np.nextafter(np.float32(radius), np.float32(-np.inf)))
        lims, scores, pos = self._indexes[shard].range_search(q, below)
        res = []
        for i in range(q.shape[0]):
            s, ids = self._map_ids(shard, scores[lims[i] : lims[i + 1]], pos[lims[i] : lims[i + 1]])
            keep = (s >= radius) & (ids >= 0)
            res.append((s[keep], ids[keep]))
        return res

    def _emulated_range(
        self, shard: int, q: np.ndarray, radius: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        ix = self._indexes[shard]
        n = int(ix.ntotal)
        res: list[tuple[np.ndarray, np.ndarray] | None] = [None] * q.shape[0]
        todo = np.arange(q.shape[0])
        k = min(n, RANGE_EMULATION_START_K)
        while todo.size:
            s, ids = self._map_ids(shard, *ix.search(q[todo], k))
            done = (s[:, -1] < radius) | (ids[:, -1] < 0) | (k >= n)
            for row in np.flatnonzero(done):
                keep = (s[row] >= radius) & (ids[row] >= 0)
                res[todo[row]] = (s[row][keep], ids[row][keep])
            todo = todo[~done]
            k = min(n, 2 * k)
        return [r for r in res if r is not None]


def load_index(
    directory: str | Path, *, verify: bool = True, expected_dim: int | None = None
) -> ShardedSearcher:
    """Load an index directory written by build_index into a ShardedSearcher with the tuned search params.

    With verify=True every file's sha256 is checked against manifest.json first (ChecksumError names the
    file); shard dimensions and sizes are always checked against the manifest.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    src = f"{directory / MANIFEST_NAME}"
    if verify:
        verify_checksums(directory, manifest["files"], MANIFEST_NAME)
    d = int(manifest["d"])
    if expected_dim is not None and d != expected_dim:
        raise ManifestError(f"{src}: index dimension d={d} but the caller expects {expected_dim}")
    indexes, doc_ids = [], []
    for shard in manifest["shards"]:
        index_path = directory / shard["index_file"]
        ids_path = directory / shard["doc_ids_file"]
        for p in (index_path, ids_path):
            if not p.is_file():
                raise ManifestError(f"{p}: file listed in {src} is missing")
        try:
            ix = faiss.read_index(str(index_path))
        except RuntimeError as e:
            raise ManifestError(f"{index_path}: not a readable Faiss index ({str(e).splitlines()[0]})") from e
        try:
            ids = np.load(ids_path, allow_pickle=False)
        except ValueError as e:
            raise ManifestError(f"{ids_path}: not a readable .npy file ({e})") from e
        if ix.d != d:
            raise ManifestError(f"{index_path}: dimension {ix.d} but {src} says d={d}")
        if ix.ntotal != int(shard["count"]) or ids.shape != (ix.ntotal,):
            raise ManifestError(
                f"{index_path}: holds {ix.ntotal} vectors, {ids_path.name} {ids.shape[0]} ids, "
                f"{src} says {shard['count']}"
            )
        indexes.append(ix)
        doc_ids.append(ids)
    total = sum(int(ix.ntotal) for ix in indexes)
    if total != int(manifest["n"]):
        raise ManifestError(f"{src}: shards hold {total} vectors but n={manifest['n']}")
    return ShardedSearcher(indexes, doc_ids, search_params=manifest["search_params"], manifest=manifest)
