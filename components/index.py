"""Components that embed the corpus and index it."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output

from components.runtime import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def export_doc_embeddings(data_root: str, day: str, workspace: str, config: str, model: Input[Model],
                          features: Input[Artifact], embeddings: Output[Artifact]):
    """Doc-tower inference over the whole corpus of `day`, in shards."""
    from components.runtime import step
    from ebr.index.export import export_doc_embeddings as run

    with step("export_doc_embeddings", workspace, day, config) as ctx:
        run(model.path, features.metadata["features_dir"], data_root, day, embeddings.path, ctx.cfg.export)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def build_index(day: str, workspace: str, config: str, embeddings: Input[Artifact], index: Output[Artifact]):
    """Faiss index over the embeddings, tuned to the target ANN recall and measured against exact search."""
    from components.runtime import step
    from ebr.index import build_index as run

    with step("build_index", workspace, day, config) as ctx:
        manifest = run(embeddings.path, index.path, ctx.cfg.index)
        index.metadata["ann_recall"] = manifest.get("ann_recall")
        ctx.info["factory"] = manifest.get("factory")
