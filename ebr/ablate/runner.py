"""Prepare one day once, then train and evaluate the two-tower model for every ablation row and seed.

Preparation reuses what the workspace holds: the feature store when it was built for the day with the same
features config, and samples of the day with the same samples config (the ablation's own cache under
`<workspace>/ablate/<day>/samples/<hash>`, or a daily run's `build-samples` artifact under the KFP root); otherwise
it runs the daily steps' own functions (`build_features`, `build_samples`, mining hard negatives with the
published champion when there is one). Rows whose samples section differs get their samples built once per
distinct section (the hash ignores the ranking samples, which the two-tower model never reads).

Each run trains with `fit_two_tower` (the loop of `train_two_tower`, without writing a model directory or
registering an MLflow version) and is scored the way `evaluate_two_tower` scores the exported model: every request
of the day with its query features from the Feast offline store, exact inner-product search over the corpus as of
the day (`flat_search`), and `evaluate_systems`. The day's evaluation set, query features and doc features are
read once. torch is imported inside functions.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import pandas as pd
from pydantic import ValidationError

from ebr.ablate.rows import BASELINE, METRICS, NEEDS_HARD_NEGATIVES, QUICK_ROWS, AblationRow, select_rows
from ebr.config import EbrConfig
from ebr.settings import ConfigError, parse_override
from ebr.train.two_tower_config import TEMPERATURE_FIELDS, deep_merge
from ebr.workspace import Workspace

if TYPE_CHECKING:
    from ebr.judgements.corpus import Corpus
    from ebr.judgements.evalset import EvalSet
    from ebr.models.config import FeaturizerConfig
    from ebr.models.two_tower import TwoTowerModel
    from ebr.train.retrieval_data import TrainingData

ABLATE_DIR = "ablate"
SAMPLES_MANIFEST = "manifest.json"
MAX_KFP_MANIFESTS = 5000  # artifact manifests looked at under the KFP root when searching for reusable samples
DEFAULT_SEEDS = (0, 1, 2)
QUICK_SEEDS = (0, 1)
EVAL_KS = (10, 100)  # the cut-offs of METRICS; added to the evaluation's own ks

# --quick: a small model and one short epoch (the sizes the two-tower tests use), for CI on the tiny data.
QUICK_CONFIG: dict[str, Any] = {
    "two_tower": {
        "model": {
            "featurizer": {
                "vocab": {"unigram": 2000, "bigram": 4000, "word": 4000, "user_id": 1000, "doc_id": 2000,
                          "author_id": 500, "brand": 500, "attribute": 1000, "tag": 500, "category": 200},
                "max_len": {"seq_rt": 6, "seq_st": 10, "seq_lt": 10, "recent_queries": 4, "title_words": 16},
            },
            "query_tower": {"hidden_dim": 16, "out_dim": 16, "num_heads": 2},
            "doc_tower": {"hidden_dim": 16, "out_dim": 16, "mlp_dims": [32]},
        },
        "loss": {"num_hard_negatives": 8},
        "negatives": {"random_negatives": 32},
        "train": {"epochs": 1, "batch_size": 64, "num_threads": 1, "early_stopping_patience": 0, "valid_k": 50},
    },
}  # fmt: skip
# Ranking samples are not read by the two-tower model: samples the ablation builds skip their costly parts.
LEAN_RANKING = {"include_preranked": False, "include_ranked": False, "random_same_category": 0,
                "random_other_category": 0}


# ------------------------------------------------------------------------------------------------- configs


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: override {dotted!r}: {p!r} is not a section")
    node[parts[-1]] = value


def config_tree(cfg: EbrConfig) -> dict[str, Any]:
    """The config as a plain tree that validates back to an equal config (the loss's temperature fields left out:
    the model's temperature is the one switch)."""
    return cfg.model_dump(mode="json", exclude={"two_tower": {"loss": set(TEMPERATURE_FIELDS)}})


def apply_overrides(cfg: EbrConfig, overrides: Sequence[str], where: str) -> EbrConfig:
    """`cfg` with `section.field=value` overrides applied and validated; errors name `where` (the row)."""
    tree = config_tree(cfg)
    for text in overrides:
        try:
            key, value = parse_override(text)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from e
        _set_dotted(tree, key, value, where)
    try:
        return EbrConfig.model_validate(tree)
    except ValidationError as e:
        msgs = [f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError(f"{where}: overrides {list(overrides)} give an invalid configuration: "
                          + "; ".join(msgs)) from e


def base_config(cfg: EbrConfig | None, quick: bool) -> EbrConfig:
    """The config every row starts from: the given one (or defaults); with `quick`, the quick sizes under every
    value where the given config departs from the defaults (a `--set` or `--config` value wins); no progress bars
    (the runner prints its own lines), and evaluation cut-offs that include those of the reported metrics."""
    tree = config_tree(cfg or EbrConfig())
    if quick:
        defaults = config_tree(EbrConfig())
        tree = deep_merge(deep_merge(defaults, QUICK_CONFIG), _changed(tree, defaults))
    tree = deep_merge(tree, {"two_tower": {"train": {"progress": False}}, "evaluation": {"progress": False}})
    ks = sorted(set(tree["evaluation"]["evaluate"]["ks"]) | set(EVAL_KS))
    tree["evaluation"]["evaluate"]["ks"] = ks
    return EbrConfig.model_validate(tree)


def _changed(tree: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The leaves of `tree` that differ from `defaults` (nested dicts compared key by key, other values whole)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        d = defaults.get(k)
        if isinstance(v, dict) and isinstance(d, dict):
            sub = _changed(v, d)
            if sub:
                out[k] = sub
        elif v != d:
            out[k] = v
    return out


def row_config(base: EbrConfig, row: AblationRow, seed: int) -> EbrConfig:
    """The config of one run: the row's overrides on the base, and `seed` for the model's initial weights and the
    training loop (row order, negatives, dropout, mixing)."""
    return apply_overrides(base, (*row.overrides, f"two_tower.model.seed={seed}", f"two_tower.train.seed={seed}"),
                           f"ablation row {row.name!r}")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def samples_key(cfg: EbrConfig) -> str:
    """Hash of the samples section, ranking samples left out (the two-tower model does not read them)."""
    return _digest(cfg.samples.model_dump(mode="json", exclude={"ranking"}))


def data_key(cfg: EbrConfig) -> str:
    """Hash of everything `load_training_data` reads from the config, with the samples it reads them from."""
    tt = cfg.two_tower
    return _digest({"samples": samples_key(cfg), "featurizer": tt.model.featurizer.model_dump(mode="json"),
                    "features_as_of": tt.features_as_of, "data": tt.data.model_dump(mode="json"),
                    "hard": tt.negatives.hard_negatives, "exposed": tt.negatives.use_exposed_unclicked})


# ------------------------------------------------------------------------------------------------- prepare


def resolve_day(data_root: str | Path, day: str) -> str:
    """`day`, or the newest search_requests partition for `latest`; a day without requests is a ValueError."""
    from ebr.contract import list_days

    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root} is not a directory")
    days = list_days(root, "search_requests")
    if day == "latest" and days:
        return days[-1]
    if day not in days:
        span = f"{days[0]}..{days[-1]}" if days else "none"
        raise ValueError(f"--day {day}: no search_requests partition for it in {root} (days: {span})")
    return day


def ensure_features(data_root: Path, day: str, ws: Workspace, cfg: EbrConfig, say: _Say) -> dict[str, Any]:
    """The workspace's feature store, built for `day` by `build_features` unless it already holds the day's
    partitions with this features config and a registry."""
    from ebr.features import build_features
    from ebr.features.partitions import built_days, fingerprint
    from ebr.features.store import REGISTRY

    fdir = ws.features
    if (fdir / REGISTRY).is_file() and day in built_days(fdir, fingerprint(cfg.features)):
        say(f"features: reusing {fdir} (built for {day})")
        return {"features_dir": str(fdir), "reused": True}
    t0 = time.perf_counter()
    say(f"features: building {day} into {fdir}")
    build_features(data_root, day, fdir, cfg.features)
    say(f"features: built in {time.perf_counter() - t0:.1f}s")
    return {"features_dir": str(fdir), "reused": False, "seconds": round(time.perf_counter() - t0, 1)}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _same_samples(manifest: Any, day: str, key: str, need_hard: bool = False) -> bool:
    if not isinstance(manifest, dict) or manifest.get("day") != day or "retrieval" not in manifest.get("tables", {}):
        return False
    config = manifest.get("config")
    if not isinstance(config, dict):
        return False
    if need_hard and not int(manifest["tables"].get("hard_negatives", {}).get("rows", 0)):
        return False
    from ebr.samples import SamplesConfig

    try:
        parsed = SamplesConfig.model_validate(config)
    except ValidationError:
        return False
    return _digest(parsed.model_dump(mode="json", exclude={"ranking"})) == key


def find_samples(ws: Workspace, day: str, key: str, need_hard: bool = False) -> Path | None:
    """Samples of `day` with samples-config hash `key` in the workspace: the ablation's cache first, then the
    newest matching `build-samples` artifact of a daily run under the KFP root. `need_hard`: only samples that
    hold offline hard negatives (a champion can mine them, so samples built before it existed do not count)."""
    own = ws.root / ABLATE_DIR / day / "samples" / key
    if _same_samples(_read_json(own / SAMPLES_MANIFEST), day, key, need_hard):
        return own
    # an entry cached under another key whose config reads the same now (a field added since, at its default)
    for path in sorted(own.parent.glob(f"*/{SAMPLES_MANIFEST}")):
        if _same_samples(_read_json(path), day, key, need_hard):
            return path.parent
    if not ws.kfp_root.is_dir():
        return None
    found = []
    for path in islice(ws.kfp_root.glob(f"*/*/*/{SAMPLES_MANIFEST}"), MAX_KFP_MANIFESTS):
        if _same_samples(_read_json(path), day, key, need_hard):
            found.append((path.stat().st_mtime, str(path.parent)))
    return Path(max(found)[1]) if found else None


def ensure_samples(data_root: Path, day: str, ws: Workspace, cfg: EbrConfig, features_dir: str,
                   say: _Say) -> dict[str, Any]:
    """Samples of `day` for this samples section: found in the workspace, or built by `build_samples` (hard
    negatives mined with the published champion when the workspace has one)."""
    from ebr.bundle import champion_miner, current_version
    from ebr.samples import SamplesConfig, build_samples

    key = samples_key(cfg)
    prev_index, encode = champion_miner(ws.bundles)
    found = find_samples(ws, day, key, need_hard=prev_index is not None and cfg.samples.hard_negatives.enabled)
    if found is not None:
        manifest = _read_json(found / SAMPLES_MANIFEST)
        say(f"samples {key}: reusing {found}")
        info: dict[str, Any] = {"dir": str(found), "reused": True}
    else:
        out = ws.root / ABLATE_DIR / day / "samples" / key
        mining = prev_index is not None and cfg.samples.hard_negatives.enabled
        champion = current_version(ws.bundles) if mining else None
        scfg = SamplesConfig.model_validate(deep_merge(cfg.samples.model_dump(mode="json"), {"ranking": LEAN_RANKING}))
        how = (f"hard negatives mined with champion {champion}" if champion else
               "samples.hard_negatives.enabled=false: no hard negatives" if prev_index is not None else
               "no champion: no hard negatives")
        say(f"samples {key}: building into {out} ({how})")
        t0 = time.perf_counter()
        manifest = build_samples(data_root, day, out, scfg, features_dir=features_dir, prev_index=prev_index,
                                 encode_queries=encode)
        info = {"dir": str(out), "reused": False, "champion": champion,
                "seconds": round(time.perf_counter() - t0, 1)}
    tables = manifest.get("tables", {})
    info.update(key=key, rows={name: int(t.get("rows", 0)) for name, t in tables.items()},
                hard_negative_rows=int(tables.get("hard_negatives", {}).get("rows", 0)),
                notes=list(manifest.get("notes", [])))
    return info


# ------------------------------------------------------------------------------------------------ evaluate


@dataclass
class EvalContext:
    """The day's evaluation inputs, read once: requests and labels, corpus, query and doc feature rows."""

    evalset: EvalSet
    corpus: Corpus
    query_rows: pd.DataFrame
    doc_table: pd.DataFrame
    ks: list[int]
    batch_size: int
    _arrays: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = field(default_factory=dict)

    @classmethod
    def load(cls, data_root: Path, day: str, features_dir: str, cfg: EbrConfig) -> EvalContext:
        """What `evaluate_two_tower` and the embedding export read for `day`, once."""
        from ebr.evaluate.two_tower import query_feature_rows
        from ebr.features import open_store
        from ebr.features.doc_features import corpus_docs, doc_feature_table
        from ebr.judgements.corpus import load_corpus
        from ebr.judgements.evalset import build_evalset

        ec = cfg.evaluation.evaluate
        corpus = load_corpus(data_root, day)
        evalset = build_evalset(data_root, day, ec.label_days, corpus, ec.max_requests)
        if evalset.n_requests == 0:
            raise ValueError(f"no request on {day} under {data_root}: nothing to evaluate")
        store = open_store(features_dir)
        rows = query_feature_rows(features_dir, evalset.frame, store=store)
        docs = corpus_docs(data_root, day, cfg.export.include_day)
        table = doc_feature_table(features_dir, docs, day, cfg.export.features_as_of, store=store)
        return cls(evalset, corpus, rows, table.reset_index(drop=True), list(ec.ks), cfg.evaluation.batch_size)

    def _featurized(self, featurizer: FeaturizerConfig) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        from ebr.models.inputs import doc_arrays, query_arrays

        key = _digest(featurizer.model_dump(mode="json"))
        if key not in self._arrays:
            self._arrays = {key: (query_arrays(self.query_rows, featurizer), doc_arrays(self.doc_table, featurizer))}
        return self._arrays[key]

    def _encode(self, fn: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        n = len(next(iter(arrays.values())))
        out = []
        for start in range(0, n, self.batch_size):
            part = {k: torch.from_numpy(np.ascontiguousarray(v[start : start + self.batch_size], dtype=np.int64))
                    for k, v in arrays.items()}
            out.append(fn(part).numpy())
        return np.concatenate(out).astype(np.float32)

    def search(self, model: TwoTowerModel, featurizer: FeaturizerConfig) -> np.ndarray:
        """Exact top-max(ks) doc ids of every request of the day under `model` (eval mode, no gradients)."""
        import torch

        from ebr.evaluate.two_tower import flat_search

        q_arrays, d_arrays = self._featurized(featurizer)
        model.eval()
        with torch.no_grad():
            queries = self._encode(model.encode_queries, q_arrays)
            docs = self._encode(model.encode_docs, d_arrays)
        return flat_search(self.doc_table["doc_id"].to_numpy(dtype=np.int64), docs, queries, max(self.ks))

    def metrics(self, systems: dict[str, np.ndarray]) -> dict[str, dict[str, float | None]]:
        """The reported metrics (METRICS) of each system's retrieved ids; None where a metric is not measured."""
        from ebr.evaluate.report import evaluate_systems

        report = evaluate_systems(self.evalset, systems, self.ks, self.corpus)
        out = {}
        for name in systems:
            got = report.system(name)
            out[name] = {m: (None if m not in got or not np.isfinite(got[m].value) else float(got[m].value))
                         for m in METRICS}
        return out


def reference_systems(data_root: Path, ev: EvalContext, cfg: EbrConfig) -> dict[str, dict[str, float | None]]:
    """The popularity and BM25 baselines of the evaluation on the same requests (context for the table)."""
    from ebr.evaluate.baselines import baseline_systems

    return ev.metrics(baseline_systems(data_root, ev.evalset, max(ev.ks), ev.corpus, cfg.evaluation.evaluate))


# ---------------------------------------------------------------------------------------------------- runs


class _Say:
    """Progress lines (`ablate: ...`) on a stream, with the time since the run started."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream, self.t0 = stream, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def __call__(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(f"ablate [{self.elapsed():7.1f}s] {text}\n")
            self.stream.flush()


def train_and_score(data: TrainingData, cfg: EbrConfig, ev: EvalContext) -> dict[str, Any]:
    """Train one model with `fit_two_tower` (initial weights from two_tower.model.seed) and score it on the day."""
    from ebr.models.two_tower import TwoTowerModel
    from ebr.train.threads import torch_settings
    from ebr.train.two_tower import fit_two_tower

    tt = cfg.two_tower
    t0 = time.perf_counter()
    model = TwoTowerModel(tt.model)
    history, summary = fit_two_tower(model, data, tt)
    train_s = time.perf_counter() - t0
    with torch_settings(tt.train.num_threads, False):
        ids = ev.search(model, tt.model.featurizer)
    metrics = ev.metrics({"model": ids})["model"]
    valid = summary.get(f"best_valid_click_recall_at_{tt.train.valid_k}")  # the trainer's own quality check
    return {"metrics": metrics, "valid_click_recall": None if valid is None else float(valid),
            "valid_k": tt.train.valid_k, "best_epoch": int(summary["best_epoch"]),
            "epochs_run": int(summary["epochs_run"]),
            "train_seconds": round(train_s, 2), "seconds": round(time.perf_counter() - t0, 2),
            "final_train_loss": history[-1].get("train_loss"),
            # the easy:hard ratio the run trained at (None without hard negatives) and how full its hard slots were
            "effective_easy_hard_ratio": summary.get("effective_easy_hard_ratio"),
            "hard_slots_filled": summary.get("hard_slots_filled")}


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    if any(s < 0 for s in seeds):
        raise ValueError(f"--seeds: seeds must be >= 0, got {seeds}")
    return seeds


def default_command(data_root: str | Path, day: str, workspace: str | Path, rows: Sequence[str] | None,
                    seeds: Sequence[int], out_dir: str | Path, quick: bool) -> str:
    """The `ebr ablate` command line that reruns this ablation with the default config."""
    parts = ["ebr", "ablate", "--data", str(data_root), "--day", day, "--workspace", str(workspace)]
    if rows:
        parts += ["--rows", *rows]
    parts += ["--seeds", *(str(s) for s in seeds)]
    if quick:
        parts.append("--quick")
    parts += ["--out", str(out_dir)]
    return " ".join(parts)


def run_ablation(
    data_root: str | Path,
    day: str,
    workspace: str | Path,
    rows: Sequence[str] | None,
    seeds: Sequence[int] | None,
    out_dir: str | Path,
    quick: bool = False,
    cfg: EbrConfig | None = None,
    *,
    command: str | None = None,
    progress: TextIO | None = sys.stderr,
) -> dict[str, Any]:
    """Train and evaluate every row (default: all; `quick`: baseline + one) for every seed (default 0 1 2; quick
    0 1) on one prepared day; write `ablations.json` and the results section of `ablations.md` into `out_dir`.

    Rows and overrides are checked before anything is built. Returns the JSON document (see `ebr.ablate.report`)."""
    from ebr.ablate.report import build_document, write_outputs
    from ebr.train.retrieval_data import load_training_data

    chosen = select_rows(list(rows) if rows else (list(QUICK_ROWS) if quick else None))
    seeds = _check_seeds(seeds if seeds else (QUICK_SEEDS if quick else DEFAULT_SEEDS))
    base = base_config(cfg, quick)
    configs = {r.name: {s: row_config(base, r, s) for s in seeds} for r in chosen}  # every override checked now
    data_root = Path(data_root).resolve()
    day = resolve_day(data_root, day)
    ws = Workspace.at(workspace)
    ws.root.mkdir(parents=True, exist_ok=True)
    say = _Say(progress)
    say(f"{len(chosen)} row(s) x {len(seeds)} seed(s) on {day} ({'quick' if quick else 'full'}); workspace {ws.root}")

    features = ensure_features(data_root, day, ws, base, say)
    samples: dict[str, dict[str, Any]] = {}
    for r in chosen:
        c = configs[r.name][seeds[0]]
        if samples_key(c) not in samples:
            samples[samples_key(c)] = ensure_samples(data_root, day, ws, c, features["features_dir"], say)
    t0 = time.perf_counter()
    ev = EvalContext.load(data_root, day, features["features_dir"], base)
    say(f"evaluation set: {ev.evalset.n_requests} requests, {len(ev.doc_table)} docs "
        f"({time.perf_counter() - t0:.1f}s)")
    references = reference_systems(data_root, ev, base)

    results: dict[str, dict[str, Any]] = {}
    runnable = []
    for r in chosen:
        info = samples[samples_key(configs[r.name][seeds[0]])]
        if NEEDS_HARD_NEGATIVES in r.needs and info["hard_negative_rows"] == 0:
            results[r.name] = {"status": "not run", "reason": (
                "the prepared samples hold no offline hard negatives: the workspace has no published champion to "
                "mine them with (run the daily pipeline for an earlier day first, so that this day's samples are "
                "mined with its model)")}
            say(f"{r.name}: not run (no hard negatives in the samples)")
        else:
            runnable.append(r)
    # Rows that read the same training data run together: each distinct data is loaded and featurized once.
    groups: dict[str, list[AblationRow]] = {}
    for r in runnable:
        groups.setdefault(data_key(configs[r.name][seeds[0]]), []).append(r)
    total, done = len(runnable) * len(seeds), 0
    for group in groups.values():
        first = configs[group[0].name][seeds[0]]
        t1 = time.perf_counter()
        data = load_training_data(samples[samples_key(first)]["dir"], features["features_dir"], first.two_tower)
        say(f"training data for {', '.join(r.name for r in group)}: {data.counts['train_rows']} rows "
            f"({time.perf_counter() - t1:.1f}s)")
        for r in group:
            runs = []
            for s in seeds:
                run = {"seed": s, **train_and_score(data, configs[r.name][s], ev)}
                runs.append(run)
                done += 1
                m = run["metrics"]
                say(f"{r.name} seed {s} ({done}/{total}) in {run['seconds']:.1f}s: click_recall@100 "
                    f"{_fmt(m.get('click_recall@100'))} true_recall@100 {_fmt(m.get('true_recall@100'))} "
                    f"p_good@100 {_fmt(m.get('p_good@100'))}")
            results[r.name] = {"status": "ok", "runs": runs}
        del data

    meta = {
        "day": day, "data_root": str(data_root), "workspace": str(ws.root), "seeds": seeds, "quick": quick,
        "command": command or default_command(data_root, day, ws.root, [r.name for r in chosen]
                                              if rows or quick else None, seeds, out_dir, quick),
        "features": features, "samples": samples, "baseline_has_hard_negatives":
            samples[samples_key(configs[BASELINE][seeds[0]])]["hard_negative_rows"] > 0,
        "n_requests": ev.evalset.n_requests, "corpus_docs": len(ev.doc_table),
        "config": config_tree(base), "elapsed_s": round(say.elapsed(), 1),
    }
    doc = build_document(chosen, results, references, meta)
    paths = write_outputs(doc, out_dir)
    say(f"wrote {paths['json']} and {paths['markdown']}")
    return doc


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"
