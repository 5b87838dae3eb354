"""The component that rolls the query-tower Deployment onto the bundle `publish` just switched CURRENT to."""

from kfp import dsl

from components.runtime import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def rollout(day: str, workspace: str, config: str, bundle: str) -> str:
    """Annotate the query-tower pod template with the bundle version and wait until every replica serves it.

    `bundle` is the published bundle's path (the output of `publish`); its directory name is the version.
    Returns the outcome as JSON, or `{"skipped": ...}` when `rollout.enabled` is false."""
    import json
    from pathlib import PurePath

    from components.runtime import step
    from ebr.rollout import rollout

    with step("rollout", workspace, day, config) as ctx:
        version = PurePath(bundle.rstrip("/")).name
        if not ctx.cfg.rollout.enabled:
            ctx.info["skipped"] = "rollout.enabled is false"
            return json.dumps({"skipped": "rollout.enabled is false", "bundle_version": version})
        outcome = rollout(version, ctx.cfg.rollout)
        ctx.info.update(outcome)
    return json.dumps(outcome)
