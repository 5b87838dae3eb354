"""`ebr pipeline run|compile|schedule`: registered into the `ebr` CLI through the `ebr.commands` entry point."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from ebr.config import load_ebr_config
    from ebr.report import REPORT_HTML
    from pipelines.local import PipelineFailed, run_local
    from pipelines.summary import render_run

    if not args.local:
        raise ValueError("only --local runs are started from here; on a cluster use `ebr pipeline schedule` "
                         "or submit pipelines/daily.yaml")
    cfg = load_ebr_config(args.config, args.overrides)
    try:
        report = run_local(args.data, args.day, args.workspace, cfg, caching=not args.no_cache,
                           progress=None if args.quiet else sys.stdout, max_parallel_tasks=args.max_parallel_tasks)
    except PipelineFailed as e:
        print(f"ebr pipeline run: {e}")
        return 1
    print(render_run(json.loads(report.read_text(encoding="utf-8")), args.data))
    print(f"\nrun report: {report}")
    html = report.parent / REPORT_HTML
    if html.is_file():
        print(f"report: {html}")
    return 0


def _compile(args: argparse.Namespace) -> int:
    from pipelines.cluster import ClusterOptions
    from pipelines.compile import compile_daily

    opts = ClusterOptions(workspace_pvc=args.workspace_pvc or None, mount_path=args.mount_path,
                          secret=args.secret or None, image=args.image,
                          coarse_reads_retrieval_model=args.coarse_reads_retrieval_model)
    if args.resources:
        opts = opts.with_resources_file(args.resources)
    print(compile_daily(args.out, opts=opts))
    print(compile_daily(args.scheduled_out, scheduled=True, opts=opts))
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from pipelines.schedule import create_daily_schedule

    params = {"data_root": args.data, "workspace": args.workspace, "day": args.day, "config": ""}
    done = create_daily_schedule(args.host, args.package, cron=args.cron, experiment=args.experiment,
                                 job_name=args.job_name, params=params, namespace=args.namespace)
    print(f"recurring run {done.recurring_run_id} created on {done.endpoint} ({done.source}) "
          f"with cron {args.cron!r}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `pipeline` with its run/compile/schedule sub-commands to the `ebr` parser."""
    from ebr.images import COMPONENT_IMAGE
    from pipelines.cluster import ClusterOptions
    from pipelines.compile import DEFAULT_PACKAGE, SCHEDULED_PACKAGE
    from pipelines.concurrent_dag import DEFAULT_MAX_TASKS

    p = sub.add_parser("pipeline", help="run, compile or schedule the daily Kubeflow pipeline")
    ps = p.add_subparsers(dest="pipeline_command", required=True)

    r = ps.add_parser("run", help="run the whole daily DAG")
    r.add_argument("--local", action="store_true", help="with the KFP local runner on this machine")
    r.add_argument("--data", required=True,
                   help="raw-log root following the data contract: a directory or an s3://, gs:// URI")
    r.add_argument("--day", required=True,
                   help="the day D to evaluate on (trains on the days before it); `latest` = newest day in --data")
    r.add_argument("--workspace", type=Path, default=Path("data/workspace"),
                   help="persistent state across days: features, MLflow, bundles, reports")
    r.add_argument("--no-cache", action="store_true", help="do not reuse cached outputs of cacheable steps")
    r.add_argument("--max-parallel-tasks", type=int, default=DEFAULT_MAX_TASKS, metavar="N",
                   help="run up to N independent tasks at once, each with cores/N threads (default: "
                        "%(default)s; 1 = one after another; their peak memory adds up)")
    r.add_argument("--quiet", action="store_true", help="no live step progress, only the summary at the end")
    r.add_argument("--config", help="YAML config file")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    r.set_defaults(func=_run)

    c = ps.add_parser("compile", help="compile the DAG to YAML")
    c.add_argument("--out", type=Path, default=DEFAULT_PACKAGE, help="the DAG with an explicit day")
    c.add_argument("--scheduled-out", type=Path, default=SCHEDULED_PACKAGE,
                   help="the recurring-run wrapper (day = the day before the trigger time)")
    c.add_argument("--workspace-pvc", default=ClusterOptions.workspace_pvc, metavar="NAME",
                   help="ReadWriteMany PVC mounted on every task for the shared workspace (default: %(default)s; "
                        "'' compiles without volumes, for the local runner only)")
    c.add_argument("--mount-path", default=ClusterOptions.mount_path,
                   help="where the PVC is mounted; the `workspace` parameter defaults to MOUNT/workspace")
    c.add_argument("--secret", default=ClusterOptions.secret, metavar="NAME",
                   help="Kubernetes Secret whose keys become optional env vars (S3 and MLflow credentials; "
                        "default: %(default)s; '' for none)")
    c.add_argument("--image", default=COMPONENT_IMAGE, help="components image (default: %(default)s)")
    c.add_argument("--resources", type=Path, metavar="FILE.yaml",
                   help="per-step overrides of requests/limits/timeouts/retries, e.g. `train-two-tower: "
                        "{memory_limit: 32Gi}`")
    c.add_argument("--coarse-reads-retrieval-model", action="store_true",
                   help="wire the day's two-tower model into the distillation (needed with "
                        "coarse_ranker.model.retrieval_cosine on; the distillation then waits for the two-tower "
                        "training)")
    c.set_defaults(func=_compile)

    s = ps.add_parser("schedule", help="create a recurring run on a Kubeflow Pipelines cluster")
    s.add_argument("--host", default=None,
                   help="KFP API endpoint, e.g. http://ml-pipeline-ui.kubeflow; default: $KF_PIPELINES_ENDPOINT, "
                        "else in a pod the in-cluster ml-pipeline service with the service-account token, "
                        "else the kubeconfig's API server proxy")
    s.add_argument("--cron", default="0 0 2 * * *", help="6-field cron, seconds first (default: 02:00 daily)")
    s.add_argument("--package", type=Path, default=SCHEDULED_PACKAGE)
    s.add_argument("--data", required=True, help="raw-log root URI/path as seen by the pipeline pods")
    s.add_argument("--workspace", default=ClusterOptions().workspace,
                   help="workspace path as seen by the pipeline pods (default: %(default)s, on the PVC)")
    s.add_argument("--day", default="", help="fixed day (default: empty = the day before the scheduled time)")
    s.add_argument("--namespace", default=None,
                   help="profile namespace of multi-user Kubeflow (the experiment and runs live there); "
                        "default: none, for standalone Kubeflow Pipelines")
    s.add_argument("--experiment", default="ebr-daily")
    s.add_argument("--job-name", default="ebr-daily")
    s.set_defaults(func=_schedule)
