"""Tracking: runs of tasks that start side by side (the two trainings of a day) share one experiment."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from ebr.train.tracking import MlflowConfig, mlflow_run


class _LateLookup(MlflowClient):
    """A real client whose first lookup misses an experiment another task creates right after it: the window
    between `get_experiment_by_name` and `create_experiment` that two tasks starting together hit."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lookups = 0

    def get_experiment_by_name(self, name):
        self.lookups += 1
        if self.lookups == 1:
            MlflowClient(tracking_uri=self._tracking_client.tracking_uri).create_experiment(name)
            return None
        return super().get_experiment_by_name(name)


def test_an_experiment_created_beside_the_run_is_joined_not_an_error(tmp_path: Path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    clients: list[_LateLookup] = []

    def client(tracking_uri=None, **kwargs):
        clients.append(_LateLookup(tracking_uri=tracking_uri, **kwargs))
        return clients[-1]

    monkeypatch.setattr("mlflow.tracking.MlflowClient", client)
    with mlflow_run(MlflowConfig(tracking_uri=uri, experiment="daily"), "train_fine_ranker") as run:
        run.client.log_metric(run.run_id, "ndcg", 0.5)
    assert clients[0].lookups == 2  # missed once, then found the other task's experiment
    real = MlflowClient(tracking_uri=uri)
    exp = real.get_experiment_by_name("daily")
    runs = real.search_runs([exp.experiment_id])
    assert [r.data.metrics["ndcg"] for r in runs] == [0.5]
    assert runs[0].info.status == "FINISHED"
