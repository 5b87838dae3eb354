"""The local runner's concurrent DAG loop (pipelines/concurrent_dag.py) on small pipelines through the real KFP
compiler and `kfp.local.SubprocessRunner`: independent tasks run together, dependents wait, failures skip only
what depends on them, the exit handler still runs last, and never more than N container tasks run at once.
(No `from __future__ import annotations` here: KFP reads the components' annotations as types.)"""

from pathlib import Path

import pytest
from kfp import dsl, local

from pipelines.concurrent_dag import (
    DEFAULT_MAX_TASKS,
    THREAD_ENV,
    check_max_tasks,
    concurrent_tasks,
    task_threads,
    threads_per_task,
)

BASE = "python:3.11"  # the local runner uses this interpreter (use_venv=False); the image is never pulled


@dsl.component(base_image=BASE, install_kfp_package=False)
def meet(marker_dir: str, me: str, other: str) -> str:
    """Mark this task started, then wait (bounded) for `other` to start: only tasks running together return."""
    import pathlib
    import time

    d = pathlib.Path(marker_dir)
    (d / f"started-{me}").write_text("1")
    deadline = time.monotonic() + 120
    while not (d / f"started-{other}").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} did not start while {me} ran")
        time.sleep(0.05)
    return me


@dsl.component(base_image=BASE, install_kfp_package=False)
def write(marker_dir: str, name: str, text: str):
    import pathlib

    (pathlib.Path(marker_dir) / name).write_text(text)


@dsl.component(base_image=BASE, install_kfp_package=False)
def fail(marker_dir: str) -> str:
    raise ValueError("this task fails on purpose")


@dsl.component(base_image=BASE, install_kfp_package=False)
def crowd(marker_dir: str, me: str):
    """Count the tasks running beside this one (their `running-*` markers) while it runs."""
    import pathlib
    import time

    d = pathlib.Path(marker_dir)
    mine = d / f"running-{me}"
    mine.write_text("1")
    seen = 0
    for _ in range(20):  # 1 s
        seen = max(seen, len(list(d.glob("running-*"))))
        time.sleep(0.05)
    mine.unlink()
    (d / f"seen-{me}").write_text(str(seen))


@dsl.component(base_image=BASE, install_kfp_package=False)
def final(marker_dir: str, status: dsl.PipelineTaskFinalStatus):
    import pathlib

    (pathlib.Path(marker_dir) / "exit").write_text(status.state)


@dsl.component(base_image=BASE, install_kfp_package=False)
def threads_seen(marker_dir: str, me: str):
    """Record the thread-pool sizes this task's libraries would read from the environment."""
    import json
    import os
    import pathlib

    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    (pathlib.Path(marker_dir) / f"threads-{me}").write_text(json.dumps({n: os.environ.get(n) for n in names}))


@dsl.pipeline
def pair(marker_dir: str):
    threads_seen(marker_dir=marker_dir, me="a")
    threads_seen(marker_dir=marker_dir, me="b")


@dsl.pipeline
def diamond(marker_dir: str):
    with dsl.ExitHandler(final(marker_dir=marker_dir)):
        b = meet(marker_dir=marker_dir, me="b", other="c")
        c = meet(marker_dir=marker_dir, me="c", other="b")
        write(marker_dir=marker_dir, name="joined", text=f"{b.output}+{c.output}")
        with dsl.If(b.output == "nobody"):
            write(marker_dir=marker_dir, name="never", text="x")


@dsl.pipeline
def broken(marker_dir: str):
    with dsl.ExitHandler(final(marker_dir=marker_dir)):
        bad = fail(marker_dir=marker_dir)
        write(marker_dir=marker_dir, name="after-failure", text=bad.output)
        write(marker_dir=marker_dir, name="independent", text="ran")


@dsl.pipeline
def three(marker_dir: str):
    with dsl.ExitHandler(final(marker_dir=marker_dir)):
        for name in ("x", "y", "z"):
            crowd(marker_dir=marker_dir, me=name)


@pytest.fixture
def runner(tmp_path: Path) -> Path:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True, enable_caching=False)
    markers = tmp_path / "markers"
    markers.mkdir()
    return markers


def test_independent_tasks_run_together_and_dependents_wait_for_both(runner: Path):
    with concurrent_tasks(DEFAULT_MAX_TASKS):
        diamond(marker_dir=str(runner))
    # b and c each waited for the other to start: sequentially the first would have timed out
    assert (runner / "joined").read_text() == "b+c"
    assert not (runner / "never").exists()  # the condition is still evaluated, after its upstream task
    assert (runner / "exit").read_text() == "SUCCEEDED"


def test_a_failure_skips_only_its_dependents_and_the_exit_handler_still_runs(runner: Path):
    with concurrent_tasks(2), pytest.raises(RuntimeError, match="fail"):
        broken(marker_dir=str(runner))
    assert not (runner / "after-failure").exists()
    assert (runner / "independent").read_text() == "ran"
    assert (runner / "exit").read_text() == "FAILED"


def test_never_more_than_n_container_tasks_at_once(runner: Path):
    with concurrent_tasks(2):
        three(marker_dir=str(runner))
    seen = {p.name: int(p.read_text()) for p in runner.glob("seen-*")}
    assert sorted(seen) == ["seen-x", "seen-y", "seen-z"]
    assert max(seen.values()) <= 2, seen
    assert not list(runner.glob("running-*"))


def test_one_task_at_a_time_keeps_kfps_own_loop_and_every_patch_is_undone():
    from kfp.local.orchestrator import enhanced_dag_orchestrator as edo
    from kfp.local.orchestrator import task_executor

    real_dag, real_task = edo.run_enhanced_dag, task_executor.execute_single_task
    with concurrent_tasks(1):
        assert edo.run_enhanced_dag is real_dag and task_executor.execute_single_task is real_task
    with pytest.raises(KeyError), concurrent_tasks(2):
        assert edo.run_enhanced_dag is not real_dag and task_executor.execute_single_task is not real_task
        raise KeyError("the block fails")
    assert edo.run_enhanced_dag is real_dag and task_executor.execute_single_task is real_task


def test_tasks_run_together_share_the_cores_threads_and_a_users_setting_is_kept(runner: Path, monkeypatch):
    import json
    import os

    for name in THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # the user's own choice
    with concurrent_tasks(2):
        pair(marker_dir=str(runner))
    share = str(threads_per_task(2))
    for me in ("a", "b"):
        seen = json.loads((runner / f"threads-{me}").read_text())
        assert seen == {"OMP_NUM_THREADS": share, "MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": share}
    # restored after the run: nothing set that was not set before, the user's value untouched
    assert "OMP_NUM_THREADS" not in os.environ and os.environ["MKL_NUM_THREADS"] == "3"
    with concurrent_tasks(1):  # one task at a time: every task may use every core, nothing is set
        pair(marker_dir=str(runner))
    assert json.loads((runner / "threads-a").read_text())["OMP_NUM_THREADS"] is None


def test_threads_per_task_shares_the_cores_and_bad_values_are_refused():
    assert threads_per_task(2, cores=2) == 1 and threads_per_task(2, cores=16) == 8
    assert threads_per_task(4, cores=2) == 1 and threads_per_task(1, cores=6) == 6
    with pytest.raises(ValueError, match="max_parallel_tasks"):
        threads_per_task(0, cores=2)
    with pytest.raises(ValueError, match="threads must be an integer >= 1, got 0"), task_threads(0):
        pass


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_a_limit_below_one_or_not_an_integer_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="max_parallel_tasks"):
        check_max_tasks(bad)


def test_run_local_refuses_a_bad_limit_before_writing_anything(tmp_path: Path):
    from pipelines.local import run_local

    with pytest.raises(ValueError, match="max_parallel_tasks must be an integer >= 1, got 0"):
        run_local(tmp_path / "no-data", "latest", tmp_path / "ws", max_parallel_tasks=0)
    assert not (tmp_path / "ws").exists()


def test_the_workspaces_tracking_database_is_created_before_any_task_and_quietly(tmp_path: Path, monkeypatch, capfd):
    import sqlite3

    from ebr.workspace import Workspace
    from pipelines.local import _create_tracking_db

    monkeypatch.delenv("EBR_MLFLOW_TRACKING_URI", raising=False)
    ws = Workspace.at(tmp_path / "ws")
    ws.root.mkdir()
    _create_tracking_db(ws)
    with sqlite3.connect(ws.mlflow_db) as db:
        tables = {name for (name,) in db.execute("select name from sqlite_master where type = 'table'")}
    assert {"experiments", "runs", "registered_models"} <= tables
    assert "database tables" not in capfd.readouterr().err
    # tracked on a server: nothing is created in the workspace
    monkeypatch.setenv("EBR_MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    other = Workspace.at(tmp_path / "other")
    _create_tracking_db(other)
    assert not other.mlflow_db.exists()
