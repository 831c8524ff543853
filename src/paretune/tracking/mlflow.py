"""MLflow: a local SQLite store by default (`DIR/mlflow.db`), or `tracking.mlflow_uri` (a server
URL, `sqlite:///...`, or a `file:` store). Written through MlflowClient, never MLflow's global
active run, so the variants of a sweep in one process stay apart: each is its own run, in an
experiment named after the sweep and tagged `paretune.sweep`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from paretune.tracking.base import Backend, Where, flatten

MAX_PARAM = 500  # MLflow rejects longer parameter values


class MlflowTracker:
    def __init__(self, where: Where):
        from mlflow.tracking import MlflowClient

        where.dir.mkdir(parents=True, exist_ok=True)
        self.uri = where.mlflow_uri or f"sqlite:///{(where.dir / 'mlflow.db').resolve()}"
        self.client = MlflowClient(tracking_uri=self.uri)
        experiment = self.client.get_experiment_by_name(where.experiment)
        if experiment is None:
            # A local store keeps artifacts beside it; MLflow's default is ./mlruns in the cwd.
            local = self.uri.startswith(("sqlite:", "file:")) or "://" not in self.uri
            root = (where.dir / "mlartifacts").resolve().as_uri() if local else None
            experiment_id = self.client.create_experiment(where.experiment, artifact_location=root)
        else:
            experiment_id = experiment.experiment_id
        tags = {"mlflow.runName": where.run_name, **({"paretune.sweep": where.group} if where.group else {})}
        self.run_id = self.client.create_run(experiment_id, run_name=where.run_name, tags=tags).info.run_id

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        flat = [Param(k, str(v)[:MAX_PARAM]) for k, v in flatten(params).items()]
        for start in range(0, len(flat), 100):  # the store's batch limit
            self.client.log_batch(self.run_id, params=flat[start:start + 100])

    def metrics(self, values: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(name.replace("/", "."), value, now, step) for name, value in values.items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


BACKEND = Backend("mlflow", "mlflow", MlflowTracker, 'pip install "paretune[tracking]" (mlflow-skinny)')
