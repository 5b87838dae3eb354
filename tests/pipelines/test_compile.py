"""The compiled DAG as a Kubeflow cluster reads it (the real KFP compiler and kfp-kubernetes): the committed
YAML equals a fresh compile, every executor mounts the workspace PVC and has requests and limits, the export
fans out under a ParallelFor, retries sit on the I/O steps only, and an exit handler records the run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components.schedule import resolve_day
from ebr.cli import main
from ebr.images import COMPONENT_IMAGE
from pipelines.cluster import DISPLAY_NAMES, RESOURCES, ClusterOptions
from pipelines.compile import DEFAULT_PACKAGE, SCHEDULED_PACKAGE, compile_daily

IO_STEPS = {"build-features", "build-samples", "plan-export-shards", "export-embedding-shard",
            "finalize-embeddings", "publish"}


def _load(path: Path) -> tuple[dict, dict]:
    """(pipeline spec, platform spec) of a compiled package; the platform spec is {} without one."""
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    return docs[0], (docs[1] if len(docs) > 1 else {})


def _all_tasks(spec: dict) -> dict[str, dict]:
    """Every task of the DAG, whatever group (exit handler, loop, condition) it sits in."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


@pytest.mark.parametrize(("package", "scheduled"), [(DEFAULT_PACKAGE, False), (SCHEDULED_PACKAGE, True)])
def test_committed_pipeline_matches_a_fresh_compile(tmp_path: Path, package: Path, scheduled: bool):
    fresh = compile_daily(tmp_path / "p.yaml", scheduled=scheduled).read_text(encoding="utf-8")
    assert fresh == package.read_text(encoding="utf-8"), (
        f"{package.name} is stale: run `ebr pipeline compile` and commit it")


def test_scheduled_run_evaluates_the_day_before_its_trigger_time():
    assert resolve_day.python_func(day="", scheduled_time="2026-11-24T02:00:00Z") == "2026-11-23"
    assert resolve_day.python_func(day="2026-11-01", scheduled_time="2026-11-24T02:00:00Z") == "2026-11-01"
    with pytest.raises(ValueError, match="RFC 3339"):
        resolve_day.python_func(day="", scheduled_time="yesterday")
    spec, _ = _load(SCHEDULED_PACKAGE)
    tasks = _all_tasks(spec)
    assert "schedule_time" in yaml.safe_dump(tasks["resolve-day"])
    # the exit handler cannot depend on resolve-day, so it derives the day from the trigger time itself
    assert "schedule_time" in yaml.safe_dump(tasks["record-run-status"])
    assert tasks["validate-data"]["inputs"]["parameters"]["day"] == {
        "componentInputParameter": "pipelinechannel--resolve-day-Output"}


def test_compiled_dag_has_every_step_and_the_gate():
    spec, _ = _load(DEFAULT_PACKAGE)
    tasks = _all_tasks(spec)
    assert set(DISPLAY_NAMES) - {"resolve-day"} == set(tasks) - {"exit-handler-1", "for-loop-2", "condition-4",
                                                                 "condition-5", "condition-branches-3"}
    branches = spec["components"]["comp-condition-branches-3"]["dag"]["tasks"]
    conditions = [t["triggerPolicy"]["condition"] for t in branches.values()]
    assert any("evaluate-publish" in c and "== true" in c for c in conditions)
    assert any("evaluate-publish" in c and "!(" in c for c in conditions)
    # training waits for both validations (data and samples); rollout follows publish in the publish branch
    assert "validate-samples" in tasks["train-two-tower"]["dependentTasks"]
    assert tasks["rollout"]["dependentTasks"] == ["publish"]
    assert tasks["rollout"]["inputs"]["parameters"]["bundle"]["taskOutputParameter"]["producerTask"] == "publish"


def test_the_distillation_waits_for_the_two_tower_model_only_when_compiled_to_read_its_cosine(tmp_path: Path):
    from kfp import compiler

    from ebr.config import EbrConfig, load_ebr_config
    from pipelines.local import daily_for

    default = _all_tasks(_load(DEFAULT_PACKAGE)[0])["distill-coarse-ranker"]
    assert "train-two-tower" not in default["dependentTasks"] and "model" not in default["inputs"].get("artifacts")
    assert "train-fine-ranker" in default["dependentTasks"]
    assert main(["pipeline", "compile", "--out", str(tmp_path / "d.yaml"), "--scheduled-out",
                 str(tmp_path / "s.yaml"), "--coarse-reads-retrieval-model"]) == 0
    for path in (tmp_path / "d.yaml", tmp_path / "s.yaml"):
        wired = _all_tasks(_load(path)[0])["distill-coarse-ranker"]
        assert "train-two-tower" in wired["dependentTasks"]
        assert wired["inputs"]["artifacts"]["model"]["taskOutputArtifact"]["producerTask"] == "train-two-tower"
    # the local run picks the shape its config needs
    cosine = load_ebr_config(overrides=["coarse_ranker.model.retrieval_cosine=true"])
    assert daily_for(EbrConfig()) is daily_for(EbrConfig())  # the committed DAG, not a rebuild
    compiled = {}
    for name, cfg in (("plain", EbrConfig()), ("cosine", cosine)):
        compiler.Compiler().compile(daily_for(cfg), str(tmp_path / f"{name}.yaml"))
        compiled[name] = _all_tasks(_load(tmp_path / f"{name}.yaml")[0])["distill-coarse-ranker"]["dependentTasks"]
    assert "train-two-tower" not in compiled["plain"] and "train-two-tower" in compiled["cosine"]


def test_only_validation_is_cached_and_its_key_covers_the_data_fingerprint():
    spec, _ = _load(DEFAULT_PACKAGE)
    tasks = _all_tasks(spec)
    cached = {name for name, t in tasks.items() if t.get("cachingOptions", {}).get("enableCache")}
    assert cached == {"validate-data", "validate-samples"}
    fp = tasks["validate-data"]["inputs"]["parameters"]["fingerprint"]["taskOutputParameter"]
    assert fp["producerTask"] == "data-fingerprint"


def test_default_compile_mounts_the_workspace_pvc_and_sizes_every_executor():
    spec, platform = _load(DEFAULT_PACKAGE)
    executors = spec["deploymentSpec"]["executors"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(k8s) == set(executors), "every executor has a Kubernetes placement"
    for name, ex in executors.items():
        res = ex["container"]["resources"]
        for key in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit"):
            assert res.get(key), f"{name}: no {key}"
        assert ex["container"]["image"] == COMPONENT_IMAGE
        place = k8s[name]
        assert place["pvcMount"] == [{"constant": "ebr-workspace", "mountPath": "/mnt/ebr",
                                      "pvcNameParameter": {"runtimeValue": {"constant": "ebr-workspace"}}}]
        (secret,) = place["secretAsEnv"]
        assert secret["secretName"] == "ebr-credentials" and secret["optional"] is True
        assert {"AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL_S3", "EBR_MLFLOW_TRACKING_URI"} <= {
            kv["envVar"] for kv in secret["keyToEnv"]}
        step = name.removeprefix("exec-")
        assert int(place["activeDeadlineSeconds"]) == RESOURCES[step].timeout_s
    assert spec["root"]["inputDefinitions"]["parameters"]["workspace"]["defaultValue"] == "/mnt/ebr/workspace"


def test_io_steps_retry_with_backoff_and_validation_does_not():
    spec, _ = _load(DEFAULT_PACKAGE)
    tasks = _all_tasks(spec)
    for name in IO_STEPS:
        policy = tasks[name]["retryPolicy"]
        assert policy["maxRetryCount"] >= 2 and policy["backoffDuration"] == "60s", name
        assert policy["backoffFactor"] == 2.0
    for name in ("validate-data", "validate-samples", "train-two-tower", "evaluate"):
        assert "retryPolicy" not in tasks[name], name
    for name, task in tasks.items():
        if not name.startswith(("exit-handler", "for-loop", "condition")):
            assert task["taskInfo"]["name"] == DISPLAY_NAMES[name]


def test_export_fans_out_under_a_parallel_for_and_is_collected():
    spec, _ = _load(DEFAULT_PACKAGE)
    tasks = _all_tasks(spec)
    loop = tasks["for-loop-2"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--plan-export-shards-Output"
    assert set(spec["components"]["comp-for-loop-2"]["dag"]["tasks"]) == {"export-embedding-shard"}
    shards = tasks["finalize-embeddings"]["inputs"]["artifacts"]["shards"]
    assert shards["taskOutputArtifact"]["producerTask"] == "for-loop-2"
    assert spec["components"]["comp-finalize-embeddings"]["inputDefinitions"]["artifacts"]["shards"]["isArtifactList"]
    assert "plan-export-shards" in loop["dependentTasks"]


def test_an_exit_handler_records_the_final_state():
    spec, _ = _load(DEFAULT_PACKAGE)
    final = spec["root"]["dag"]["tasks"]["record-run-status"]
    assert final["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert final["inputs"]["parameters"]["status"]["taskFinalStatus"]["producerTask"] == "exit-handler-1"


def test_record_run_status_writes_the_failure_into_the_workspace_report(tmp_path: Path):
    from kfp.dsl import PipelineTaskFinalStatus

    from components.release import record_run_status
    from ebr.workspace import Workspace

    status = PipelineTaskFinalStatus(state="FAILED", pipeline_job_resource_name="runs/42", pipeline_task_name="x",
                                     error_code=9, error_message="build-samples: disk full")
    assert record_run_status.python_func(day="", workspace=str(tmp_path), status=status,
                                         scheduled_time="2026-11-24T02:00:00Z") == "FAILED"
    doc = Workspace.at(tmp_path).read("2026-11-23", "run_status")
    assert doc["state"] == "FAILED" and doc["error_message"] == "build-samples: disk full"
    assert doc["run"] == "runs/42"


def test_compile_cli_places_tasks_on_the_named_pvc_image_and_resources(tmp_path: Path, capsys):
    res = tmp_path / "res.yaml"
    res.write_text("train-two-tower: {memory_limit: 48Gi, cpu_limit: '12'}\n", encoding="utf-8")
    out, sched = tmp_path / "d.yaml", tmp_path / "s.yaml"
    assert main(["pipeline", "compile", "--out", str(out), "--scheduled-out", str(sched), "--workspace-pvc",
                 "team-ws", "--mount-path", "/data/ebr", "--image", "reg.local/me/ebr:7", "--resources",
                 str(res)]) == 0
    for path in (out, sched):
        spec, platform = _load(path)
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        assert {m["constant"] for p in k8s.values() for m in p["pvcMount"]} == {"team-ws"}
        assert {m["mountPath"] for p in k8s.values() for m in p["pvcMount"]} == {"/data/ebr"}
        assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {
            "reg.local/me/ebr:7"}
        assert spec["root"]["inputDefinitions"]["parameters"]["workspace"]["defaultValue"] == "/data/ebr/workspace"
    spec, _ = _load(out)
    train = spec["deploymentSpec"]["executors"]["exec-train-two-tower"]["container"]["resources"]
    assert train["resourceMemoryLimit"] == "48Gi" and train["resourceCpuLimit"] == "12"
    assert str(out) in capsys.readouterr().out


def test_compile_without_a_pvc_has_no_platform_spec(tmp_path: Path):
    out = compile_daily(tmp_path / "d.yaml", opts=ClusterOptions(workspace_pvc=None, secret=None))
    spec, platform = _load(out)
    assert platform == {}
    assert all(e["container"]["resources"].get("resourceMemoryLimit")
               for e in spec["deploymentSpec"]["executors"].values())


@pytest.mark.parametrize(("text", "match"), [
    ("train-3-tower: {cpu_limit: '2'}", "unknown step 'train-3-tower'"),
    ("publish: {gpu: 1}", r"publish: unknown field\(s\) \['gpu'\]"),
    ("- publish", "expected a mapping of step name"),
])
def test_bad_resources_file_is_refused_by_name(tmp_path: Path, text: str, match: str):
    f = tmp_path / "r.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        ClusterOptions().with_resources_file(f)


def test_cheap_task_checks_name_the_same_caller_and_restore_kfp():
    """Inside the block KFP's container-spec check still names the method a graph task was wrongly given."""
    import inspect

    from kfp import dsl
    from kfp.dsl import pipeline_task

    from pipelines.cluster import cheap_task_checks

    @dsl.component
    def step():  # no annotations: this file's `from __future__ import annotations` would make them strings
        pass

    def misuse() -> str:
        @dsl.pipeline(name="inner")
        def inner():
            step()

        with pytest.raises(ValueError) as err:

            @dsl.pipeline(name="outer")
            def outer():
                inner().set_cpu_request("1")

        return str(err.value)

    plain = misuse()
    with cheap_task_checks():
        assert pipeline_task.inspect is not inspect
        cheap = misuse()
    assert pipeline_task.inspect is inspect
    assert cheap == plain and cheap.startswith("set_cpu_request can only be used on single-step components")
