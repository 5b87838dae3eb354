"""Everything the run report shows, read from the workspace: the day's records (`<reports>/<day>/*.json`, the step
records) and the artifacts they lead to under the local pipeline root (`<workspace>/kfp/<run>/<task>/<artifact>/`):
the index manifest with its tuning sweep, the training histories and the validation results.

Every input may be missing (a failed or partial run): each one is None or empty then, never an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from ebr.report.steps import step_started
from ebr.workspace import Workspace

MAX_STEP_RECORDS = 1000  # a day's DAG has a few dozen steps
MAX_MANIFESTS = 20000  # artifact manifests scanned under the pipeline root
INDEX_FORMAT = "ebr.index/1"
TWO_TOWER_FORMAT = "ebr.two_tower/1"
RANKERS_FORMAT = "ebr.rankers/1"


@dataclass(frozen=True)
class Record:
    """One JSON record of the day and when it was written (its file's mtime, seconds since the epoch)."""

    data: dict[str, Any]
    path: Path
    written_at: float


@dataclass(frozen=True)
class Artifact:
    """An artifact directory of a run and its manifest."""

    path: Path
    manifest: dict[str, Any]
    written_at: float


@dataclass(frozen=True)
class Training:
    """The per-epoch history of one training step: {model name: [{epoch, metric: value, ...}]}."""

    title: str
    histories: dict[str, list[dict[str, float]]]
    source: Path | None


@dataclass(frozen=True)
class Validation:
    """A validation step: its record, its result.json (counts, checks) and the Data Docs index, when they exist."""

    step: dict[str, Any]
    report_md: Path | None
    result: dict[str, Any] | None
    data_docs: Path | None


@dataclass
class RunInputs:
    """The records and artifacts of one day's run in one workspace."""

    ws: Workspace
    day: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    started_at: float | None = None
    evaluation: Record | None = None
    decision: Record | None = None
    run_status: Record | None = None
    run: Record | None = None
    failure: str | None = None
    model_version: str | None = None
    index: Artifact | None = None
    trainings: list[Training] = field(default_factory=list)
    validations: list[Validation] = field(default_factory=list)

    def step(self, name: str) -> dict[str, Any] | None:
        """The record of step `name` in this run, None when it has none."""
        return next((s for s in self.steps if s.get("step") == name), None)

    def before_run(self, rec: Record | None) -> bool:
        """Whether `rec` was written before this run's first step started (left by an earlier run of the day)."""
        return rec is not None and self.started_at is not None and rec.written_at < self.started_at


def read_json(path: Path) -> Any:
    """The JSON content of `path`, None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _record(path: Path) -> Record | None:
    data = read_json(path)
    if not isinstance(data, dict):
        return None
    return Record(data, path, path.stat().st_mtime)


def _steps(steps_dir: Path) -> tuple[list[dict[str, Any]], float | None]:
    """The step records in the order the steps started, and when the first one started."""
    if not steps_dir.is_dir():
        return [], None
    found = []
    for path in islice(sorted(steps_dir.glob("*.json")), MAX_STEP_RECORDS):
        rec = read_json(path)
        if isinstance(rec, dict):
            rec.setdefault("step", path.stem)
            found.append((step_started(rec, path.stat().st_mtime), str(rec["step"]), rec))
    found.sort(key=lambda t: (t[0], t[1]))
    return [rec for _, _, rec in found], (found[0][0] if found else None)


def _run_dir(ws: Workspace, path: Any) -> Path | None:
    """The pipeline run directory (`<kfp>/<run>`) holding `path`, None when it is not under the pipeline root."""
    if not isinstance(path, str) or not path:
        return None
    try:
        rel = Path(path).resolve().relative_to(ws.kfp_root)
    except ValueError:
        return None
    return ws.kfp_root / rel.parts[0] if rel.parts else None


def _manifests(ws: Workspace, preferred: set[Path]) -> list[Artifact]:
    """Every artifact manifest under the pipeline root, this run's own directories first, then newest first
    (a step served from the cache keeps its outputs in the run that computed them)."""
    if not ws.kfp_root.is_dir():
        return []
    found = []
    for path in islice(ws.kfp_root.glob("*/*/*/manifest.json"), MAX_MANIFESTS):
        m = read_json(path)
        if isinstance(m, dict):
            found.append(Artifact(path.parent, m, path.stat().st_mtime))
    found.sort(key=lambda a: (a.path.parents[1] not in preferred, -a.written_at))
    return found


def _first(artifacts: list[Artifact], **want: Any) -> Artifact | None:
    return next((a for a in artifacts if all(a.manifest.get(k) == v for k, v in want.items())), None)


def _artifact_at(path: Any) -> Artifact | None:
    if not isinstance(path, str) or not path:
        return None
    m = read_json(Path(path) / "manifest.json")
    return Artifact(Path(path), m, (Path(path) / "manifest.json").stat().st_mtime) if isinstance(m, dict) else None


def _history(rows: Any) -> list[dict[str, float]]:
    """Plot-ready epochs: rows with a numeric `epoch`, numeric values only."""
    out = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        clean = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if "epoch" in clean:
            out.append(clean)
    return out


def _histories(raw: Any) -> dict[str, list[dict[str, float]]]:
    """{model: history} from a metrics.json `history`: a list (one model) or a mapping of model name to list."""
    if isinstance(raw, dict):
        return {str(k): h for k, v in raw.items() if (h := _history(v))}
    return {"model": h} if (h := _history(raw)) else {}


def _trainings(ws: Workspace, day: str, run: RunInputs, artifacts: list[Artifact]) -> list[Training]:
    """The training histories of the two-tower model, the fine ranker (teacher) and the coarse ranker."""
    out = []
    mv = run.model_version
    tower = (_first(artifacts, format=TWO_TOWER_FORMAT, model_version=mv) if mv else None) or _artifact_at(
        (run.step("finalize_embeddings") or {}).get("model_dir"))
    if tower is not None:
        metrics = read_json(tower.path / "metrics.json") or {}
        if h := _history(metrics.get("history")):
            out.append(Training(f"two-tower retrieval model {metrics.get('model_version') or mv or ''}".strip(),
                                {"two_tower": h}, tower.path / "metrics.json"))
    coarse = _first(artifacts, format=RANKERS_FORMAT, kind="coarse_ranker", day=day)
    teacher = _artifact_at(coarse.manifest.get("teacher_dir")) if coarse is not None else None
    teacher = teacher or _first(artifacts, format=RANKERS_FORMAT, kind="fine_ranker", day=day)
    if teacher is not None:
        hs = _histories((read_json(teacher.path / "metrics.json") or {}).get("history"))
        if hs:
            out.append(Training("fine ranker (teacher)", hs, teacher.path / "metrics.json"))
    evaluated = ((run.evaluation.data if run.evaluation else {}).get("rankers") or {}).get("history")
    coarse_src = coarse.path / "metrics.json" if coarse is not None else None
    hs = _histories((read_json(coarse_src) or {}).get("history")) if coarse_src else {}
    if not hs and evaluated:
        hs, coarse_src = _histories(evaluated), run.evaluation.path if run.evaluation else None
    if hs:
        out.append(Training("coarse ranker (distilled and plain students)", hs, coarse_src))
    return out


def _validations(steps: list[dict[str, Any]]) -> list[Validation]:
    """Steps that wrote a validation report (their record names its report.md)."""
    out = []
    for rec in steps:
        report = rec.get("report")
        if not isinstance(report, str) or not report.endswith(".md"):
            continue
        folder = Path(report).parent
        result = read_json(folder / "result.json")
        result = result if isinstance(result, dict) else None
        docs = (result or {}).get("data_docs_index")
        docs_path = folder / "data_docs" / "index.html"
        if isinstance(docs, str) and Path(docs).is_file():
            docs_path = Path(docs)
        out.append(Validation(rec, Path(report) if Path(report).is_file() else None, result,
                              docs_path if docs_path.is_file() else None))
    return out


def gather(ws: Workspace, day: str, failure: str | None = None) -> RunInputs:
    """Read every input of the report of `day`; with `failure` (the run's error) the run failed and run.json,
    if any, is an earlier run's and is not read."""
    reports = ws.reports(day)
    run = RunInputs(ws=ws, day=day, failure=failure)
    run.steps, run.started_at = _steps(reports / "steps")
    run.evaluation = _record(reports / "evaluation.json")
    run.decision = _record(reports / "decision.json")
    run.run_status = _record(reports / "run_status.json")
    run.run = None if failure else _record(reports / "run.json")
    evaluation = run.evaluation.data if run.evaluation else {}
    tower_dir = (run.step("finalize_embeddings") or {}).get("model_dir")
    tower = _artifact_at(tower_dir)
    run.model_version = (evaluation.get("model_version") or (run.step("train_two_tower") or {}).get("model_version")
                         or (tower.manifest.get("model_version") if tower else None)) or None
    paths = [evaluation.get("report_dir"), tower_dir, *(rec.get(k) for rec in run.steps for k in
                                                        ("report", "embeddings_dir", "model_dir"))]
    preferred = {d for p in paths if (d := _run_dir(ws, p)) is not None}
    artifacts = _manifests(ws, preferred)
    if run.model_version:
        run.index = _first(artifacts, format=INDEX_FORMAT, model_version=run.model_version)
    if run.index is None and run.decision is not None:
        bundled = _artifact_at(str(Path(str(run.decision.data.get("bundle") or "")) / "index")) \
            if run.decision.data.get("bundle") else None
        if bundled is not None and bundled.manifest.get("model_version") == run.model_version:
            run.index = bundled
    run.trainings = _trainings(ws, day, run, artifacts)
    run.validations = _validations(run.steps)
    return run
