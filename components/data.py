"""Components of the data half of the DAG: validate, features, samples, sample validation."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components.runtime import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def data_fingerprint(data_root: str, day: str, workspace: str, config: str) -> str:
    """sha256 of the names, sizes and mtimes of the raw partitions up to `day`: an input of validate-data, so its
    cache key changes when data is re-delivered. Never cached itself."""
    from components.runtime import step
    from ebr.contract.fingerprint import data_fingerprint

    with step("data_fingerprint", workspace, day, config) as ctx:
        ctx.info["fingerprint"] = data_fingerprint(data_root, day)
    return ctx.info["fingerprint"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def validate_data(data_root: str, day: str, workspace: str, config: str, fingerprint: str,
                  report: Output[Artifact]):
    """Great Expectations suites over the raw tables of `day`; fails the run (before training) on a violation.
    `fingerprint` (of the partitions it reads) is only there to key the KFP cache on the data's contents."""
    from components.runtime import step
    from ebr.validation import validate_raw

    with step("validate_data", workspace, day, config) as ctx:
        ctx.info["fingerprint"] = fingerprint
        ctx.info["report"] = f"{report.path}/report.md"
        res = validate_raw(data_root, day, report.path, ctx.cfg.validation)
        report.metadata["success"] = bool(res.success)
        ctx.info["verdict"] = f"PASSED: {len(res.checks)} checks, {len(res.warnings)} warnings"


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def build_features(data_root: str, day: str, workspace: str, config: str, validated: Input[Artifact],
                   features: Output[Artifact]):
    """Derived feature tables for `day`, Feast apply and materialize into the workspace's store."""
    import json
    import os

    from components.runtime import step
    from ebr.features import build_features

    with step("build_features", workspace, day, config) as ctx:
        out = build_features(data_root, day, ctx.ws.features, ctx.cfg.features)
        os.makedirs(features.path, exist_ok=True)
        with open(os.path.join(features.path, "features.json"), "w", encoding="utf-8") as f:
            json.dump({"features_dir": str(ctx.ws.features), **out}, f, default=str, indent=2)
        features.metadata["features_dir"] = str(ctx.ws.features)
        ctx.info["rows"] = {name: v["rows"] for name, v in out["views"].items()}


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def build_samples(data_root: str, day: str, workspace: str, config: str, features: Input[Artifact],
                  samples: Output[Dataset]):
    """Exposure-aware retrieval and ranking samples of days [D-k, D-1], features joined point-in-time;
    hard negatives are mined with the published champion's index when there is one."""
    from components.runtime import step
    from ebr.bundle import champion_miner
    from ebr.samples import build_samples

    with step("build_samples", workspace, day, config) as ctx:
        prev_index, encode = champion_miner(ctx.ws.bundles)
        out = build_samples(data_root, day, samples.path, ctx.cfg.samples,
                            features_dir=features.metadata["features_dir"], prev_index=prev_index,
                            encode_queries=encode)
        ctx.info["rows"] = {name: t["rows"] for name, t in out["tables"].items()}
        samples.metadata["rows"] = ctx.info["rows"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def validate_samples(day: str, workspace: str, config: str, samples: Input[Dataset], report: Output[Artifact]):
    """Great Expectations suites over the sample tables; fails the run before training on a violation."""
    from components.runtime import step
    from ebr.validation import validate_samples

    with step("validate_samples", workspace, day, config) as ctx:
        ctx.info["report"] = f"{report.path}/report.md"
        res = validate_samples(samples.path, report.path, ctx.cfg.validation)
        report.metadata["success"] = bool(res.success)
        ctx.info["verdict"] = f"PASSED: {len(res.checks)} checks, {len(res.warnings)} warnings"
