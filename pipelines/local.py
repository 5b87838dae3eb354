"""Run the daily DAG on this machine with the KFP local runner and gather its report."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ebr import rawfs
from ebr.bundle import current_version
from ebr.config import EbrConfig
from ebr.contract import list_days
from ebr.workspace import Workspace
from pipelines.concurrent_dag import DEFAULT_MAX_TASKS, check_max_tasks, concurrent_tasks


class PipelineFailed(RuntimeError):
    """A task of the daily DAG failed; the message names the task, the error and the log with every detail."""


def _failure(log_file: Path, error: BaseException, steps_dir: Path | None = None) -> PipelineFailed:
    """The failed task's own error (the last exception line of its log), not just the runner's summary, and the
    report of a failed validation step (the run stops there, before training)."""
    text = log_file.read_text(encoding="utf-8", errors="replace") if log_file.is_file() else ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    cause = next((ln for ln in reversed(lines) if re.match(r"^[A-Za-z_.]+(Error|Exception|Failed):", ln)), "")
    summary = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    reports = []
    for p in sorted(steps_dir.glob("*.json")) if steps_dir and steps_dir.is_dir() else []:
        step = json.loads(p.read_text(encoding="utf-8"))
        if step.get("status") == "failed" and step.get("report"):
            reports.append(f"\n  {step['step']} report: {step['report']}")
    return PipelineFailed(f"{summary}\n  cause: {cause or 'see log'}{''.join(reports)}\n  task logs: {log_file}")


def resolve_local_day(data_root: str | Path, day: str) -> str:
    """`day` checked against the data (`latest` = the newest search_requests partition); `data_root` is a
    local directory or an object-store URI (s3://, gs://)."""
    data_root = rawfs.check_root(data_root)
    if not rawfs.is_dir(data_root):
        raise FileNotFoundError(f"--data {data_root} is not a directory")
    days = list_days(data_root, "search_requests")
    if day == "latest" and days:
        return days[-1]
    if day not in days:
        span = f"{days[0]}..{days[-1]}" if days else "none"
        raise ValueError(f"--day {day}: no search_requests partition for it in {data_root} (days: {span})")
    return day


def run_local(data_root: str | Path, day: str, workspace: str | Path, cfg: EbrConfig | None = None,
              log_path: str | Path | None = None, caching: bool = True, progress: TextIO | None = None,
              max_parallel_tasks: int = DEFAULT_MAX_TASKS) -> Path:
    """Run the whole DAG for `day` with `kfp.local.SubprocessRunner(use_venv=False)`; returns the path of the
    run report JSON (every metric of every model and baseline, the gate decision, per-step wall time).

    Independent tasks run together, at most `max_parallel_tasks` at a time (pipelines/concurrent_dag.py; 1 =
    one after another, KFP's own loop): their peak memory adds up.

    The runner's verbose task logs go to `log_path` (default `<workspace>/reports/<day>/kfp.log`); with
    `progress` (e.g. sys.stdout), each step's start and finish and the running steps' progress bars are
    printed there as the run goes (pipelines/progress.py)."""
    from kfp import local

    cfg = cfg or EbrConfig()
    daily = daily_for(cfg)
    check_max_tasks(max_parallel_tasks)  # before anything runs
    root = rawfs.raw_root(data_root)
    data_root, ws = (root.resolve() if isinstance(root, Path) else root), Workspace.at(workspace)
    day = resolve_local_day(data_root, day)
    ws.root.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.rmtree(ws.reports(day) / "steps", ignore_errors=True)  # this run's records only
    log_file = Path(log_path) if log_path else ws.reports(day) / "kfp.log"
    if max_parallel_tasks > 1:
        _create_tracking_db(ws)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(ws.kfp_root),
               raise_on_error=True, enable_caching=caching, cache_root=str(ws.root / "kfp-cache"))
    t0 = time.perf_counter()
    watcher = None
    if progress is not None:
        from pipelines.progress import StepWatcher

        progress.write(f"running the daily DAG for {day}; task logs: {log_file}\n")
        watcher = StepWatcher(ws.reports(day) / "steps", log_file, progress)
        watcher.start()
    with open(log_file, "w", encoding="utf-8") as log, _captured(log):
        error: BaseException | None = None
        try:
            with concurrent_tasks(max_parallel_tasks):
                daily(data_root=str(data_root), day=day, workspace=str(ws.root), config=cfg.to_yaml())
        except BaseException as e:  # noqa: BLE001 - re-raised below with the log path
            error = e
    if watcher is not None:
        watcher.stop()
    if error is not None:
        failure = _failure(log_file, error, ws.reports(day) / "steps")
        raise _with_html_report(failure, ws, day) from error
    return write_run_report(ws, day, time.perf_counter() - t0, log_file)


def daily_for(cfg: EbrConfig):
    """The daily DAG in the shape `cfg` needs: the committed one, or, with the coarse ranker reading the retrieval
    cosine, the one whose distillation is given (and waits for) the day's two-tower model."""
    from pipelines.daily import build, daily

    if not cfg.coarse_ranker.model.retrieval_cosine:
        return daily
    from pipelines.cluster import ClusterOptions

    return build(ClusterOptions(coarse_reads_retrieval_model=True))[0]


def _create_tracking_db(ws: Workspace) -> None:
    """Create the workspace's SQLite tracking database (when the steps track there) before tasks run side by
    side: MLflow creates a new database's tables on first use, and two processes doing it at once collide."""
    if not ws.tracking_uri.startswith("sqlite:"):
        return
    from mlflow.tracking import MlflowClient

    quiet = logging.getLogger("mlflow.store.db.utils")  # "Creating initial MLflow database tables..." on a new one
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        MlflowClient(tracking_uri=ws.tracking_uri).search_experiments(max_results=1)
    finally:
        quiet.setLevel(level)


def _with_html_report(failure: PipelineFailed, ws: Workspace, day: str) -> PipelineFailed:
    """The failed run's HTML report written too, its path as the failure message's last line; a report that
    cannot be written is named there instead and never hides the run's own error."""
    from ebr.report import write_html_report

    try:
        line = f"report: {write_html_report(ws, day, failure=str(failure))}"
    except Exception as e:  # noqa: BLE001 - the run's failure is what must reach the user
        line = f"report: not written ({type(e).__name__}: {e})"
    return PipelineFailed(f"{failure}\n  {line}")


@contextlib.contextmanager
def _captured(stream):
    """Send stdout, stderr and the root logger to `stream` (the KFP runner prints every task's logs)."""
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    saved = root.handlers[:]
    root.handlers = [handler]
    try:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield
    finally:
        root.handlers = saved
        sys.stdout.flush()


def write_run_report(ws: Workspace, day: str, wall_s: float, log_file: Path) -> Path:
    """Gather step timings, the evaluation metrics and the gate decision into `<reports>/<day>/run.json`, and the
    page a person reads into `<reports>/<day>/index.html` (ebr/report)."""
    steps_dir = ws.reports(day) / "steps"
    steps = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(steps_dir.glob("*.json"))}
    report: dict[str, Any] = {
        "day": day,
        "wall_s": round(wall_s, 1),
        "steps": steps,
        "evaluation": ws.read(day, "evaluation"),
        "decision": ws.read(day, "decision"),
        "run_status": ws.read(day, "run_status"),  # written by the DAG's exit handler
        "bundle": {"current": current_version(ws.bundles), "root": str(ws.bundles)},
        "kfp_log": str(log_file),
    }
    path = ws.record(day, "run", report)
    from ebr.report import write_html_report

    try:
        html = write_html_report(ws, day)
    except Exception:  # noqa: BLE001 - the run succeeded; a page that cannot be written is only a warning
        logging.getLogger(__name__).warning("run report %s/index.html not written", ws.reports(day), exc_info=True)
        return path
    try:
        _log_report_to_mlflow(report["evaluation"], html)
    except Exception:  # noqa: BLE001 - the page is on disk; a tracking server that refuses it is only a warning
        logging.getLogger(__name__).warning("run report %s not logged to MLflow", html, exc_info=True)
    return path


def _log_report_to_mlflow(evaluation: dict[str, Any] | None, html: Path) -> None:
    """Attach the run report page to the evaluation's MLflow run (artifact `run_report/index.html`), when tracked."""
    if not evaluation or not evaluation.get("mlflow_run_id") or not evaluation.get("mlflow_tracking_uri"):
        return
    from mlflow import MlflowClient

    from ebr.train.tracking import using_tracking_uri

    uri = evaluation["mlflow_tracking_uri"]
    with using_tracking_uri(uri):  # a proxied `mlflow-artifacts:` store resolves its host from the active URI
        MlflowClient(tracking_uri=uri).log_artifact(evaluation["mlflow_run_id"], str(html), "run_report")
