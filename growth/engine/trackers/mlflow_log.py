"""logger=mlflow: a run in an MLflow tracking store, by default a sqlite file (nothing to start).

Through MlflowClient (no global active run, so two jobs in one process do not share one): params once,
scalars at the global step, growth events as growth/* metrics, and at the end the run record files and
the fused deploy model as artifacts. A relative sqlite path is made absolute from the directory the job
was started in, so every job of a sweep writes to the same database."""
import math
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from growth.engine.trackers.base import Tracker, event_line, event_scalars

BATCH = 100  # MLflow's most params (and a safe number of metrics) per log_batch
PARAM_CHARS = 6000  # MLflow's longest param value
STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}


def absolute_uri(uri: str) -> str:
    """sqlite:///outputs/mlflow.db (relative) -> sqlite:////abs/outputs/mlflow.db, its folder made."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return uri
    path = Path(uri[len(prefix):])
    path = path if uri.startswith(prefix + "/") else Path.cwd() / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{prefix}{path.resolve()}"


class MlflowTracker(Tracker):
    name = "mlflow"

    def start(self, state, step) -> None:
        self.uri = (state or {}).get("tracking_uri") or absolute_uri(str(self.cfg.get("tracking_uri")))
        self.client = MlflowClient(tracking_uri=self.uri)
        if state is not None:  # the same MLflow run goes on
            self.run_id = state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.cfg.get("experiment") or self.run.group or "growth"
        found = self.client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found else self.client.create_experiment(experiment, **self._artifacts())
        tags = {"growth.run_dir": str(self.run.run_dir), **({"growth.group": self.run.group} if self.run.group else {})}
        self.run_id = self.client.create_run(exp_id, run_name=self.run.name, tags=tags).info.run_id
        params = [Param(k, str(v)[:PARAM_CHARS]) for k, v in self.run.params.items()]
        for i in range(0, len(params), BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + BATCH])

    def _artifacts(self) -> dict:
        """Artifacts beside a sqlite database (mlartifacts/), not in whatever directory a job runs in."""
        if not self.uri.startswith("sqlite:///"):
            return {}
        return {"artifact_location": (Path(self.uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()}

    def scalars(self, values, step) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        for i in range(0, len(metrics), BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + BATCH])

    def event(self, row, step) -> None:
        self.scalars(event_scalars(row), step)
        self.client.set_tag(self.run_id, f"growth.event.{row['step']}.{row['kind']}", event_line(row)[:5000])

    def finish(self, summary, files) -> None:
        numbers = {f"summary/{k}": v for k, v in summary.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        self.scalars(numbers, int(summary.get("steps_done") or 0))
        if self.cfg.get("artifacts", True):
            for path in files:
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, STATUS.get(summary.get("status"), "FAILED"))

    def close(self) -> None:
        self.client.set_terminated(self.run_id, "KILLED")  # a resume sets it RUNNING again

    def state_dict(self) -> dict:
        return {"run_id": self.run_id, "tracking_uri": self.uri}


TRACKER = MlflowTracker
