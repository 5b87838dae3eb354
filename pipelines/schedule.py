"""Create the daily recurring run on a Kubeflow Pipelines cluster through `kfp.Client`."""

from __future__ import annotations

from pathlib import Path


def create_daily_schedule(host: str, package: str | Path, cron: str = "0 0 2 * * *",
                          experiment: str = "ebr-daily", job_name: str = "ebr-daily",
                          params: dict | None = None, max_concurrency: int = 1) -> str:
    """Register a recurring run of the compiled pipeline `package` with a 6-field cron (seconds first).

    Returns the recurring run id. The run's `day` defaults to the scheduled time (the pipeline derives D-1)."""
    import kfp

    fields = cron.split()
    if len(fields) != 6:
        raise ValueError(f"--cron {cron!r}: KFP takes a 6-field cron expression (seconds first), got {len(fields)}")
    if not Path(package).is_file():
        raise FileNotFoundError(f"compiled pipeline {package} does not exist; run `ebr pipeline compile` first")
    client = kfp.Client(host=host)
    try:
        exp = client.get_experiment(experiment_name=experiment)
    except ValueError:
        exp = client.create_experiment(name=experiment)
    run = client.create_recurring_run(
        experiment_id=exp.experiment_id,
        job_name=job_name,
        pipeline_package_path=str(package),
        cron_expression=cron,
        params=params or {},
        max_concurrency=max_concurrency,
        enable_caching=True,
    )
    return run.recurring_run_id
