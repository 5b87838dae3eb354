"""The daily DAG: validate -> features -> samples -> train (two-tower, fine, coarse) -> embed -> index ->
evaluate -> gate -> publish or keep the champion. Compiled to pipelines/daily.yaml (committed)."""

from kfp import dsl

from components.data import build_features, build_samples, validate_data, validate_samples
from components.index import build_index, export_doc_embeddings
from components.release import evaluate, keep_champion, publish
from components.schedule import resolve_day
from components.train import distill_coarse_ranker, train_fine_ranker, train_two_tower

PIPELINE_NAME = "ebr-daily"
SCHEDULED_NAME = "ebr-daily-scheduled"

# Steps whose outputs depend only on their inputs may be served from the KFP cache. Steps that read or
# write workspace state (Feast store, champion bundle, MLflow registry) always run.
CACHEABLE = {"validate-data", "validate-samples"}


def _cache(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
    task.set_caching_options(name in CACHEABLE)
    return task


@dsl.pipeline(name=PIPELINE_NAME, description="Daily EBR retrieval + coarse-ranker training, indexing and release")
def daily(data_root: str, day: str, workspace: str, config: str = ""):
    common = {"day": day, "workspace": workspace, "config": config}
    checked = _cache(validate_data(data_root=data_root, **common), "validate-data")
    feats = _cache(build_features(data_root=data_root, validated=checked.outputs["report"], **common), "")
    samples = _cache(build_samples(data_root=data_root, features=feats.outputs["features"], **common), "")
    samples_ok = _cache(validate_samples(samples=samples.outputs["samples"], **common), "validate-samples")

    model = _cache(train_two_tower(samples=samples.outputs["samples"], features=feats.outputs["features"],
                                   **common), "")
    model.after(samples_ok)
    teacher = _cache(train_fine_ranker(data_root=data_root, samples=samples.outputs["samples"], **common), "")
    teacher.after(samples_ok)
    coarse = _cache(distill_coarse_ranker(data_root=data_root, samples=samples.outputs["samples"],
                                          teacher=teacher.outputs["teacher"], **common), "")

    emb = _cache(export_doc_embeddings(data_root=data_root, model=model.outputs["model"],
                                       features=feats.outputs["features"], **common), "")
    idx = _cache(build_index(embeddings=emb.outputs["embeddings"], **common), "")
    ev = _cache(evaluate(data_root=data_root, model=model.outputs["model"], embeddings=emb.outputs["embeddings"],
                         index=idx.outputs["index"], coarse=coarse.outputs["coarse"],
                         features=feats.outputs["features"], **common), "")
    with dsl.If(ev.outputs["publish"] == True):  # noqa: E712 - KFP condition syntax
        _cache(publish(data_root=data_root, model=model.outputs["model"], index=idx.outputs["index"],
                       coarse=coarse.outputs["coarse"], report=ev.outputs["report"], reason=ev.outputs["reason"],
                       **common), "")
    with dsl.Else():
        _cache(keep_champion(reason=ev.outputs["reason"], **common), "")


@dsl.pipeline(name=SCHEDULED_NAME, description="The daily run as a recurring run: D = the day before the trigger time")
def daily_scheduled(data_root: str, workspace: str, config: str = "", day: str = ""):
    d = resolve_day(day=day, scheduled_time=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER)
    d.set_caching_options(False)
    daily(data_root=data_root, day=d.output, workspace=workspace, config=config)
