"""The daily DAG: fingerprint -> validate -> features -> samples -> train (the two-tower model beside the fine
ranker, then the coarse ranker, which waits for the two-tower model only when compiled to read its cosine) ->
embed (fanned out over shards) -> index -> evaluate -> gate -> publish + rollout, or keep the champion; an exit
handler records the run's final state. Compiled to pipelines/daily.yaml (committed) with the default
`ClusterOptions`.

`build(opts)` makes the two pipelines for one placement (pipelines/cluster.py): the workspace PVC and Secret,
resources, timeouts and retries. The local runner runs the same DAG (it ignores the Kubernetes placement).
"""

from kfp import dsl

from components.data import build_features, build_samples, data_fingerprint, validate_data, validate_samples
from components.index import build_index, export_embedding_shard, finalize_embeddings, plan_export_shards
from components.release import evaluate, keep_champion, publish, record_run_status
from components.rollout import rollout
from components.schedule import resolve_day
from components.train import distill_coarse_ranker, train_fine_ranker, train_two_tower
from pipelines.cluster import ClusterOptions, cheap_task_checks, place

PIPELINE_NAME = "ebr-daily"
SCHEDULED_NAME = "ebr-daily-scheduled"

# Steps whose outputs depend only on their inputs may be served from the KFP cache: validate-data (keyed on the
# data fingerprint as well as day and config) and validate-samples (keyed on the samples artifact). Every other
# step reads or writes workspace state (Feast store, MLflow registry, champion bundle, reports) and always runs.
CACHEABLE = {"validate-data", "validate-samples"}


def _build(opts: ClusterOptions):
    def put(task: dsl.PipelineTask, name: str) -> dsl.PipelineTask:
        task.set_caching_options(name in CACHEABLE)
        return place(task, name, opts)

    def body(data_root: str, day: str, workspace: str, config: str) -> None:
        common = {"day": day, "workspace": workspace, "config": config}
        fp = put(data_fingerprint(data_root=data_root, **common), "data-fingerprint")
        checked = put(validate_data(data_root=data_root, fingerprint=fp.output, **common), "validate-data")
        feats = put(build_features(data_root=data_root, validated=checked.outputs["report"], **common),
                    "build-features")
        samples = put(build_samples(data_root=data_root, features=feats.outputs["features"], **common),
                      "build-samples")
        samples_ok = put(validate_samples(samples=samples.outputs["samples"], **common), "validate-samples")

        model = put(train_two_tower(samples=samples.outputs["samples"], features=feats.outputs["features"],
                                    **common), "train-two-tower").after(samples_ok)
        teacher = put(train_fine_ranker(samples=samples.outputs["samples"], features=feats.outputs["features"],
                                        **common), "train-fine-ranker").after(samples_ok)
        # the two-tower model only where the coarse ranker reads its cosine: otherwise the distillation need not
        # wait for the two-tower training (the longest step) and runs beside it
        retrieval = {"model": model.outputs["model"]} if opts.coarse_reads_retrieval_model else {}
        coarse = put(distill_coarse_ranker(data_root=data_root, samples=samples.outputs["samples"],
                                           teacher=teacher.outputs["teacher"], features=feats.outputs["features"],
                                           **retrieval, **common), "distill-coarse-ranker")

        plan = put(plan_export_shards(data_root=data_root, **common), "plan-export-shards").after(model)
        with dsl.ParallelFor(plan.output, name="embedding-shards") as shard_no:
            shard = put(export_embedding_shard(data_root=data_root, shard_no=shard_no, model=model.outputs["model"],
                                               features=feats.outputs["features"], **common),
                        "export-embedding-shard")
        emb = put(finalize_embeddings(shards=dsl.Collected(shard.outputs["shard"]), model=model.outputs["model"],
                                      **common), "finalize-embeddings")
        idx = put(build_index(data_root=data_root, embeddings=emb.outputs["embeddings"], model=model.outputs["model"],
                              features=feats.outputs["features"], **common), "build-index")
        ev = put(evaluate(data_root=data_root, model=model.outputs["model"], embeddings=emb.outputs["embeddings"],
                          index=idx.outputs["index"], coarse=coarse.outputs["coarse"],
                          features=feats.outputs["features"], **common), "evaluate")
        with dsl.If(ev.outputs["publish"] == True):  # noqa: E712 - KFP condition syntax
            pub = put(publish(data_root=data_root, model=model.outputs["model"], index=idx.outputs["index"],
                              coarse=coarse.outputs["coarse"], report=ev.outputs["report"],
                              reason=ev.outputs["reason"], **common), "publish")
            put(rollout(bundle=pub.output, **common), "rollout")
        with dsl.Else():
            put(keep_champion(reason=ev.outputs["reason"], **common), "keep-champion")

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Daily EBR retrieval + coarse-ranker training, indexing and release")
    def daily(data_root: str, day: str, workspace: str = opts.workspace, config: str = ""):
        final = put(record_run_status(day=day, workspace=workspace), "record-run-status")
        with dsl.ExitHandler(final, name="daily-run"):
            body(data_root, day, workspace, config)

    @dsl.pipeline(name=SCHEDULED_NAME,
                  description="The daily run as a recurring run: D = the day before the trigger time")
    def daily_scheduled(data_root: str, workspace: str = opts.workspace, config: str = "", day: str = ""):
        d = put(resolve_day(day=day, scheduled_time=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER), "resolve-day")
        final = put(record_run_status(day=day, workspace=workspace,
                                      scheduled_time=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER),
                    "record-run-status")
        with dsl.ExitHandler(final, name="daily-run"):
            body(data_root, d.output, workspace, config)

    return daily, daily_scheduled


def build(opts: ClusterOptions | None = None):
    """The daily pipeline and its recurring-run wrapper, each task placed with `opts` (default: the committed
    placement). Returns `(daily, daily_scheduled)`."""
    with cheap_task_checks():
        return _build(opts or ClusterOptions())


daily, daily_scheduled = build()
