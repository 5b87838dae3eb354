"""Components that embed the corpus (fanned out over shards) and index it."""

from typing import List  # noqa: UP035 - KFP reads the component signature and wants typing.List

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.runtime import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def plan_export_shards(data_root: str, day: str, workspace: str, config: str) -> List[int]:  # noqa: UP006
    """The shard numbers of the doc-embedding export: the items of the DAG's ParallelFor."""
    from components.runtime import step
    from ebr.index.export import plan_export_shards

    with step("plan_export_shards", workspace, day, config) as ctx:
        shards = plan_export_shards(data_root, day, ctx.cfg.export)
        ctx.info["shards"] = len(shards)
    return shards


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def export_embedding_shard(data_root: str, day: str, workspace: str, config: str, shard_no: int,
                           model: Input[Model], features: Input[Artifact], shard: Output[Artifact]):
    """Doc-tower inference over one shard of `day`'s corpus (one pod per shard under ParallelFor)."""
    from components.runtime import step
    from ebr.index.export import export_one_shard

    with step(f"export_embedding_shard_{shard_no}", workspace, day, config) as ctx:
        out = export_one_shard(model.path, features.metadata["features_dir"], data_root, day, shard_no,
                               shard.path, ctx.cfg.export)
        shard.metadata["count"] = out["count"]
        ctx.info.update(out)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def finalize_embeddings(day: str, workspace: str, config: str, shards: Input[List[Artifact]],  # noqa: UP006
                        model: Input[Model], embeddings: Output[Artifact]):
    """Gather the shards of the fan-out into one embeddings directory, checking each came from this model."""
    from components.runtime import step
    from ebr.index.export import finalize_shard_dirs

    with step("finalize_embeddings", workspace, day, config) as ctx:
        out = finalize_shard_dirs([s.path for s in shards], model.path, embeddings.path)
        ctx.info.update(shard_counts=out["shard_counts"], embeddings_dir=embeddings.path, model_dir=model.path)
        embeddings.metadata["count"] = int(sum(out["shard_counts"]))


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def build_index(data_root: str, day: str, workspace: str, config: str, embeddings: Input[Artifact],
                model: Input[Model], features: Input[Artifact], index: Output[Artifact]):
    """Faiss index over the embeddings, its search parameters tuned to the target ANN recall on query-tower
    vectors of a sample of the day's requests (index.tune_on: queries) and measured against exact search."""
    from components.runtime import step
    from ebr.evaluate.day_queries import encode_day_queries
    from ebr.index import build_index

    with step("build_index", workspace, day, config) as ctx:
        cfg = ctx.cfg.index
        queries = None
        if cfg.tune_on == "queries":
            queries = encode_day_queries(model.path, features.metadata["features_dir"], data_root, day,
                                         cfg.num_eval_queries, cfg.seed, ctx.cfg.evaluation.batch_size)
        manifest = build_index(embeddings.path, index.path, cfg, query_vectors=queries)
        index.metadata["ann_recall"] = manifest.get("ann_recall")
        index.metadata["tuned_on"] = manifest.get("tuned_on")
        ctx.info.update(factory=manifest.get("factory"), ann_recall=manifest.get("ann_recall"),
                        tuned_on=manifest.get("tuned_on"), tuning_queries=manifest["tuning"]["num_queries"],
                        search_params=manifest.get("search_params"))
