"""Components that train: the two-tower retrieval model, the fine ranker and the distilled coarse ranker."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.runtime import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train_two_tower(day: str, workspace: str, config: str, samples: Input[Dataset], features: Input[Artifact],
                    model: Output[Model]):
    """Train the two-tower model on the samples, warm-starting from the published champion when there is one;
    with `two_tower_job.enabled`, as a Kubeflow PyTorchJob of data-parallel ranks (ebr/train/pytorchjob.py)."""
    from components.runtime import step
    from ebr.bundle import champion_model_dir
    from ebr.train.featurized_cache import with_default_cache_dir
    from ebr.train.pytorchjob import run_two_tower_job
    from ebr.train.two_tower import easy_hard_line, train_two_tower

    with step("train_two_tower", workspace, day, config) as ctx:
        warm = champion_model_dir(ctx.ws.bundles)
        cfg = with_default_cache_dir(ctx.cfg.two_tower, ctx.ws.featurized)
        if ctx.cfg.two_tower_job.enabled:
            out = run_two_tower_job(samples.path, features.metadata["features_dir"], model.path, cfg,
                                    ctx.cfg.two_tower_job, day=day, staging_dir=ctx.ws.root / "jobs", warm_start=warm)
            ctx.info["pytorchjob"] = out["job"]["name"]
        else:
            out = train_two_tower(samples.path, features.metadata["features_dir"], model.path, cfg, warm_start=warm)
        model.metadata["model_version"] = out.get("model_version", "")
        ctx.info["model_version"] = out.get("model_version", "")
        if out.get("summary"):
            ctx.info["easy_hard"] = easy_hard_line(out["summary"])


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train_fine_ranker(day: str, workspace: str, config: str, samples: Input[Dataset], features: Input[Artifact],
                      teacher: Output[Model]):
    """Train the fine ranker (teacher) on the ranking samples, features from the feature store."""
    from components.runtime import step
    from ebr.train.rankers import train_fine_ranker

    with step("train_fine_ranker", workspace, day, config) as ctx:
        train_fine_ranker(samples.path, teacher.path, ctx.cfg.fine_ranker,
                          features_dir=features.metadata["features_dir"], rows_cache=ctx.ws.ranking_rows)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def distill_coarse_ranker(data_root: str, day: str, workspace: str, config: str, samples: Input[Dataset],
                          teacher: Input[Model], features: Input[Artifact], coarse: Output[Model],
                          model: Input[Model] | None = None):
    """Distil the teacher into the coarse ranker and evaluate teacher, distilled and plain students on `day`;
    `model` (wired only in a DAG compiled with `coarse_reads_retrieval_model`) is the day's two-tower retrieval
    model, whose cosine the coarse ranker reads when `coarse_ranker.model.retrieval_cosine` is on."""
    from components.runtime import step
    from ebr.train.rankers import distill_coarse_ranker

    with step("distill_coarse_ranker", workspace, day, config) as ctx:
        distill_coarse_ranker(samples.path, teacher.path, coarse.path, ctx.cfg.coarse_ranker, data_root=data_root,
                              eval_day=day, features_dir=features.metadata["features_dir"],
                              retrieval_model_dir=model.path if model is not None else None,
                              rows_cache=ctx.ws.ranking_rows)
