"""Components that decide and release: evaluate against baselines and the champion, then publish or keep."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from components.runtime import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate(data_root: str, day: str, workspace: str, config: str, model: Input[Model],
             embeddings: Input[Artifact], index: Input[Artifact], coarse: Input[Model], features: Input[Artifact],
             report: Output[Artifact], metrics: Output[Metrics], html: Output[HTML],
             ) -> NamedTuple("Gate", [("publish", bool), ("reason", str)]):
    """Evaluate the model, baselines, champion and rankers on `day`; decide whether the gate opens: the model is
    not worse than the champion, and the index's ann_recall@K on the day's requests reaches index.min_ann_recall.
    The Kubeflow UI shows the key metrics (`metrics`) and the run report page as of this step (`html`)."""
    from collections import namedtuple
    from pathlib import Path

    from components.runtime import step
    from ebr.bundle import champion_model_dir
    from ebr.evaluate.day import evaluate_day
    from ebr.evaluate.gate import ann_gate_from_dirs, combine
    from ebr.evaluate.two_tower import REPORT_DIR
    from ebr.report import kfp_metrics, write_html_report

    with step("evaluate", workspace, day, config) as ctx:
        decision = evaluate_day(data_root, day, ctx.ws, ctx.cfg.evaluation,
                                champion_dir=champion_model_dir(ctx.ws.bundles), model_dir=model.path,
                                embeddings_dir=embeddings.path, index_dir=index.path, coarse_dir=coarse.path,
                                features_dir=features.metadata["features_dir"], out_dir=report.path)
        ann = ann_gate_from_dirs(Path(report.path) / REPORT_DIR, index.path, ctx.cfg.index.min_ann_recall,
                                 ctx.cfg.index.recall_k)
        decision = combine(decision, ann)
        ctx.info["publish"] = decision.publish
        ctx.info["ann_gate"] = ann.reasons[0]
        for name, value in kfp_metrics(ctx.ws, day, decision.publish).items():
            metrics.log_metric(name, value)
        write_html_report(ctx.ws, day, out=html.path)
    return namedtuple("Gate", ["publish", "reason"])(decision.publish, "; ".join(decision.reasons))


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def publish(data_root: str, day: str, workspace: str, config: str, model: Input[Model], index: Input[Artifact],
            coarse: Input[Model], report: Input[Artifact], reason: str) -> str:
    """Assemble the bundle, verify it, switch CURRENT to it and mark the model version `champion`."""
    from components.runtime import step
    from ebr.bundle.release import publish_day

    with step("publish", workspace, day, config) as ctx:
        path = publish_day(data_root, day, ctx.ws, ctx.cfg, model_dir=model.path, index_dir=index.path,
                           coarse_dir=coarse.path, report_dir=report.path, reason=reason)
        ctx.info["bundle"] = str(path)
    return str(path)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def keep_champion(day: str, workspace: str, config: str, reason: str) -> str:
    """The gate stayed closed: record why; the champion keeps serving."""
    from components.runtime import step
    from ebr.bundle.release import keep_day

    with step("keep_champion", workspace, day, config) as ctx:
        keep_day(day, ctx.ws, reason)
    return reason


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def record_run_status(day: str, workspace: str, status: dsl.PipelineTaskFinalStatus, scheduled_time: str = "") -> str:
    """The DAG's exit handler: write `<workspace>/reports/<day>/run_status.json` with the run's final state and,
    when it failed, its error, so a failed scheduled run is visible in the workspace report. An exit task may
    not depend on other tasks, so a recurring run passes its trigger time and the day is derived here again."""
    from ebr.dates import day_before
    from ebr.workspace import Workspace

    day = day or day_before(scheduled_time)

    doc = {"day": day, "state": status.state, "run": status.pipeline_job_resource_name,
           "error_code": status.error_code, "error_message": status.error_message}
    Workspace.at(workspace).record(day, "run_status", doc)
    return status.state
