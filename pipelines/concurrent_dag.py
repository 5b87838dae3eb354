"""Run a DAG's independent tasks at the same time on the KFP local runner.

KFP 2.17's local orchestrator (`kfp.local.orchestrator.enhanced_dag_orchestrator.run_enhanced_dag`) walks a DAG's
tasks one after another in topological order; only a ParallelFor's iterations run together. The daily DAG has
independent branches (the two-tower model and the fine ranker train on the same samples, the embeddings export
and index build do not wait for the rankers), and the training steps use one thread each, so on one machine a
core idles while each waits for the other. While `concurrent_tasks(n)` is active, that module's DAG loop starts
every task as soon as the tasks it depends on have finished, with at most `n` container tasks running at once.
What a task does is still KFP's own `execute_task` (caching, retries, the subprocess runner, nested DAGs,
ParallelFor, the exit handler); only the order changes, within what the DAG's dependencies allow. On a cluster
the KFP backend already runs independent tasks in parallel: this is the local runner catching up.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from ebr.cpu_limit import THREAD_ENV, visible_cores

DEFAULT_MAX_TASKS = 2  # the daily DAG's widest point: the two single-threaded training steps, one per core


def threads_per_task(max_tasks: int, cores: int | None = None) -> int:
    """The cores of this machine (its CPU affinity) shared out among `max_tasks` tasks, at least 1 each."""
    if cores is None:
        cores = visible_cores()
    return max(1, cores // check_max_tasks(max_tasks))


@contextlib.contextmanager
def task_threads(threads: int) -> Iterator[dict[str, str]]:
    """Within the block, task subprocesses size their thread pools to `threads` (the `THREAD_ENV` variables; one
    the caller already set is kept). Two tasks that each default to every core thrash: measured at `medium`, the
    distillation beside one busy core took 461 s with two threads and 221 s with one. Yields what was set."""
    import os

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    added = {name: str(threads) for name in THREAD_ENV if name not in os.environ}
    os.environ.update(added)
    try:
        yield added
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextlib.contextmanager
def concurrent_tasks(max_tasks: int) -> Iterator[None]:
    """Within the block, local DAG runs start independent tasks together, at most `max_tasks` container tasks at
    a time (1: KFP's own sequential loop, untouched), each with its share of the cores' threads
    (`threads_per_task`, `task_threads`). Restores KFP's functions and the environment on exit."""
    if check_max_tasks(max_tasks) == 1:
        yield
        return
    from kfp.local.orchestrator import enhanced_dag_orchestrator as edo
    from kfp.local.orchestrator import task_executor

    real_dag, real_task = edo.run_enhanced_dag, task_executor.execute_single_task
    slots = threading.BoundedSemaphore(max_tasks)

    def one_task(*args: Any, **kwargs: Any):
        # only container tasks hold a slot: a nested DAG or a ParallelFor waiting for its children holds none,
        # so no nesting can deadlock
        with slots:
            return real_task(*args, **kwargs)

    edo.run_enhanced_dag, task_executor.execute_single_task = run_dag, one_task
    try:
        with task_threads(threads_per_task(max_tasks)):
            yield
    finally:
        edo.run_enhanced_dag, task_executor.execute_single_task = real_dag, real_task


def check_max_tasks(max_tasks: int) -> int:
    """`max_tasks` when it is a usable limit, else a ValueError naming the parameter."""
    if isinstance(max_tasks, bool) or not isinstance(max_tasks, int) or max_tasks < 1:
        raise ValueError(f"max_parallel_tasks must be an integer >= 1, got {max_tasks!r}")
    return max_tasks


def run_dag(pipeline_resource_name: str, dag_component_spec: Any, executors: dict, components: dict,
            dag_arguments: dict, pipeline_root: str, runner: Any, unique_pipeline_id: str, fail_stack: list[str],
            parent_io_store: Any = None) -> tuple[dict, Any]:
    """`run_enhanced_dag` with the same arguments, results and failure rules, each task started once every
    task it depends on has finished instead of after every task before it in the topological order."""
    from kfp.local import io, status
    from kfp.local.orchestrator import enhanced_dag_orchestrator as edo
    from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils
    from kfp.pipeline_spec import pipeline_spec_pb2

    io_store = io.IOStore(parent=parent_io_store)
    for k, v in OrchestratorUtils.join_user_inputs_and_defaults(
            dag_arguments=dag_arguments, dag_inputs_spec=dag_component_spec.input_definitions).items():
        io_store.put_parent_input(k, v)
    all_completed = pipeline_spec_pb2.PipelineTaskSpec.TriggerPolicy.TriggerStrategy.ALL_UPSTREAM_TASKS_COMPLETED
    kinds, body, exit_tasks = _classify(dag_component_spec.dag.tasks, all_completed)
    common = dict(pipeline_resource_name=pipeline_resource_name, components=components, executors=executors,
                  io_store=io_store, pipeline_root=pipeline_root, runner=runner,
                  unique_pipeline_id=unique_pipeline_id, fail_stack=fail_stack)
    conditions, parallel_for = edo.ConditionEvaluator(), edo.ParallelExecutor()

    def execute(name: str) -> tuple[dict, Any] | bool:
        if kinds[name] == edo.TaskKind.PARALLEL_FOR:  # writes its own outputs; True = failed
            return edo._run_parallel_for_task(task_name=name, task_spec=body[name],
                                              parallel_executor=parallel_for, **common)
        return edo.execute_task(task_name=name, task_spec=body[name], **common)

    body_failed = _run_body(body, kinds, execute, io_store, conditions, all_completed, fail_stack)
    if body_failed and not exit_tasks:
        return {}, status.Status.FAILURE
    exit_failed = False
    for name, spec in exit_tasks:  # after the whole body, whatever its outcome, one by one as KFP does
        outputs, task_status = edo.execute_task(task_name=name, task_spec=spec, **common)
        ok = task_status == status.Status.SUCCESS
        io_store.put_task_status(name, "SUCCEEDED" if ok else "FAILED")
        if ok:
            for key, output in outputs.items():
                io_store.put_task_output(name, key, output)
        else:
            fail_stack.append(name)
            exit_failed = True
    if body_failed or exit_failed:
        return {}, status.Status.FAILURE
    return (OrchestratorUtils.get_dag_outputs(dag_outputs_spec=dag_component_spec.dag.outputs, io_store=io_store),
            status.Status.SUCCESS)


def _classify(tasks: Any, all_completed: int) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, Any]]]:
    """(kind of each body task, the body tasks, the exit tasks in KFP's order), by KFP's own rules: an exit task
    waits for all upstream tasks *and* takes the final status; the rest form the body."""
    from kfp.local.orchestrator import enhanced_dag_orchestrator as edo

    kinds, body, exit_tasks = {}, {}, []
    for name, spec in tasks.items():
        if spec.trigger_policy.strategy == all_completed and edo._has_task_final_status_input(spec):
            exit_tasks.append((name, spec))
        elif spec.trigger_policy.condition:
            kinds[name], body[name] = edo.TaskKind.CONDITION, spec
        elif spec.WhichOneof("iterator") and edo._has_valid_iterator(spec):
            kinds[name], body[name] = edo.TaskKind.PARALLEL_FOR, spec
        else:
            kinds[name], body[name] = edo.TaskKind.REGULAR, spec
    return kinds, body, exit_tasks


def _run_body(body: dict[str, Any], kinds: dict[str, Any], execute, io_store: Any, conditions: Any,
              all_completed: int, fail_stack: list[str]) -> bool:
    """Run the body tasks, each once its dependencies in this DAG have finished; True when any failed (or was
    skipped because an upstream task failed). Ties start in KFP's topological order."""
    from kfp.local import graph_utils, status
    from kfp.local.orchestrator import enhanced_dag_orchestrator as edo

    if not body:
        return False
    order = {name: i for i, name in enumerate(reversed(graph_utils.topological_sort_tasks(body)))}
    pending, finished, failed = set(body), set(), set()
    with cf.ThreadPoolExecutor(max_workers=len(body), thread_name_prefix="kfp-task") as pool:
        running: dict[cf.Future, str] = {}
        while pending or running:
            for name in sorted(pending, key=order.__getitem__):
                spec = body[name]
                deps = [d for d in spec.dependent_tasks if d in body]
                if any(d not in finished for d in deps):
                    continue
                pending.discard(name)
                upstream_failed = sorted(d for d in deps if d in failed)
                if upstream_failed and spec.trigger_policy.strategy != all_completed:
                    logging.info(f"Skipping task {name}: upstream task(s) {upstream_failed} failed.")
                    failed.add(name)
                    finished.add(name)
                    io_store.put_task_status(name, "FAILED")
                    continue
                if kinds[name] == edo.TaskKind.CONDITION and not conditions.evaluate_condition(
                        spec.trigger_policy.condition, io_store):
                    logging.info(f"Skipping conditional task {name} (condition evaluated to False)")
                    finished.add(name)
                    continue
                running[pool.submit(execute, name)] = name
            if not running:
                if pending:  # nothing runs and nothing can start: dependencies outside the DAG or a cycle
                    raise RuntimeError(f"DAG tasks {sorted(pending)} wait for tasks that never finish")
                break
            done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                finished.add(name)
                result = future.result()
                if kinds[name] == edo.TaskKind.PARALLEL_FOR:
                    if result:
                        failed.add(name)
                    continue
                outputs, task_status = result
                ok = task_status == status.Status.SUCCESS
                io_store.put_task_status(name, "SUCCEEDED" if ok else "FAILED")
                if not ok:
                    fail_stack.append(name)
                    failed.add(name)
                    continue
                for key, output in outputs.items():
                    io_store.put_task_output(name, key, output)
    return bool(failed)
