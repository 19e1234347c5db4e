"""MLflow runs: one run per training run, continued after a resume; evaluations' metrics.

The driver creates (or reopens) the run before Ray starts, so every worker restart and every
`vfn train` re-run logs into the same run; rank 0 logs metrics through `MetricLogger`; the driver
adds artifacts and closes the run. Default store (`default_tracking_uri`):
`sqlite:///<output.root>/mlflow.db` (MLflow 3 puts the file store in maintenance mode and
recommends a database backend), artifacts in `<output.root>/mlartifacts`. `tracking.tracking_uri`
or `$MLFLOW_TRACKING_URI` selects a server.

MLflow's client does the work where it can: `log_batch` splits batches into the server's
per-request limits, `log_dict` logs the resolved config, `log_figure` logs plots (built as plain
matplotlib `Figure`s, no pyplot state) without temporary files of ours.

mlflow (~1.7 s of CPU to import) and matplotlib are imported where a run is logged, not with this
module: every Ray Train worker imports it for `MetricLogger`, and those of rank > 0 never log.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vfn.config.schema import ExperimentConfig
from vfn.errors import ConfigError
from vfn.runtime import storage

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow.tracking import MlflowClient

RUN_ID_FILE = "mlflow_run_id"
CONFIG_ARTIFACT = "config.yaml"  # the resolved config, logged to every run `start_run` creates or reopens


def default_tracking_uri(root: str | Path = ".") -> str:
    """The store used when no tracking URI is configured: `$MLFLOW_TRACKING_URI`, else the local
    SQLite store `sqlite:///<root>/mlflow.db` (what `vfn train` writes and `vfn compare` reads)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if storage.is_remote(str(root)):  # a SQLite file cannot live on object storage
        raise ConfigError(
            f"output.root={root} is on object storage, so MLflow needs a tracking server: set "
            "tracking.tracking_uri or MLFLOW_TRACKING_URI (the cluster's head runs one), or tracking.enabled=false"
        )
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def tracking_uri(cfg: ExperimentConfig) -> str:
    """`tracking.tracking_uri` when set, else `default_tracking_uri(output.root)`."""
    return cfg.tracking.tracking_uri or default_tracking_uri(cfg.output.root)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///PATH` URI (None for any other store), e.g. to say
    "no MLflow store at PATH" instead of letting MLflow create an empty one there."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


class TrackingServerUnreachable(ConfigError):
    """The configured MLflow server does not answer: reported before any training compute."""


def check_tracking_server(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one line, when an http(s) tracking URI does not answer MLflow's /health, or
    refuses the login (`check_tracking_login`).

    MLflow's own client retries for minutes with backoff before giving up; a run should not spend
    GPU hours (or even a Ray start) before learning that its metrics have nowhere to go.
    """
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
            if response.status == 200:
                check_tracking_login(uri)
                return
            problem = f"HTTP {response.status}"
    except urllib.error.HTTPError as e:
        problem = f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        problem = str(getattr(e, "reason", e))
    raise TrackingServerUnreachable(
        f"MLflow tracking server {uri} is unreachable ({problem}); start it, fix tracking.tracking_uri / "
        "MLFLOW_TRACKING_URI, or set tracking.enabled=false"
    )


class TrackingServerRefused(ConfigError):
    """The configured MLflow server answers but refuses these credentials (its basic-auth app)."""


REFUSALS = {
    401: "401 unauthorized: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLflow's credentials "
         "file, ~/.mlflow/credentials) to an account of the server",
    403: "403 forbidden: the account in MLFLOW_TRACKING_USERNAME may not read this server's experiments; ask its "
         "admin for READ (compare) or EDIT (train) permission",
}


def check_tracking_login(uri: str) -> None:
    """One authenticated request, with the credentials MLflow's client would send (environment or
    credentials file): a refused login is one line before Ray starts, not a 30-line traceback from
    rank 0 twenty seconds in."""
    if not uri.startswith(("http://", "https://")):
        return
    from mlflow.exceptions import MlflowException  # LAZY: see the module docstring

    try:
        mlflow_client(uri).search_experiments(max_results=1)
    except MlflowException as e:
        if (status := e.get_http_status_code()) in REFUSALS:
            raise TrackingServerRefused(f"tracking server {uri}: {REFUSALS[status]}") from None
        raise


def mlflow_client(uri: str) -> MlflowClient:
    """An `MlflowClient` of the store at `uri` (for the tracking package's own modules)."""
    from mlflow.tracking import MlflowClient  # LAZY: see the module docstring

    return MlflowClient(tracking_uri=uri)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def experiment_id(client, cfg: ExperimentConfig, uri: str) -> str:
    """The id of `tracking.experiment`, created when missing; with the default local store its
    artifacts go to `<output.root>/mlartifacts`."""
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///") and not cfg.tracking.tracking_uri:  # keep artifacts next to the local store
        location = (Path(cfg.output.root).resolve() / "mlartifacts").as_uri()
    # the MLflow UI then opens it as model training (metric charts first), not as GenAI development
    return client.create_experiment(cfg.tracking.experiment, artifact_location=location,
                                    tags={"mlflow.experimentKind": "custom_model_development"})


def start_run(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    *,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    run_name: str | None = None,
) -> str:
    """Create the MLflow run of a training run, or reopen it when `run_dir` already has one."""
    from mlflow.entities import Param, RunTag  # LAZY: see the module docstring
    from mlflow.exceptions import MlflowException  # LAZY: see the module docstring

    uri = tracking_uri(cfg)
    check_tracking_server(uri)
    client = mlflow_client(uri)
    id_file = storage.join(run_dir, RUN_ID_FILE)
    if (text := storage.read_text(id_file)) is not None:
        run_id = text.strip()
        try:
            client.get_run(run_id)
        except MlflowException:
            run_id = None  # the store was deleted or moved: start a new run
        if run_id:
            client.update_run(run_id, status="RUNNING")
            client.set_tag(run_id, "vfn.resumed", "true")
            client.log_dict(run_id, cfg.to_dict(), CONFIG_ARTIFACT)  # the config this part of the run uses
            return run_id
    parent = parent_run_id or cfg.tracking.parent_run_id
    all_tags = {
        "vfn.run_dir": storage.absolute(run_dir),
        "vfn.name": cfg.output.name or "",
        "model": cfg.model.name,
        "design": cfg.model.design,
        **({"git_commit": c} if (c := git_commit()) else {}),
        **cfg.tracking.tags,
        **(tags or {}),
    }
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    run = client.create_run(
        experiment_id(client, cfg, uri), run_name=run_name or cfg.tracking.run_name or cfg.output.name, tags=all_tags
    )
    run_id = run.info.run_id
    params = [Param(k, str(v)[:6000]) for k, v in cfg.flat().items()]
    params += [Param("derived.global_batch", str(cfg.global_batch)), Param("derived.lr", f"{cfg.scaled_lr:.6g}")]
    # log_batch splits into MLflow's per-request limits itself
    client.log_batch(run_id, params=params, tags=[RunTag("mlflow.source.name", "vfn train")])
    client.log_dict(run_id, cfg.to_dict(), CONFIG_ARTIFACT)
    storage.write_text(id_file, run_id + "\n")
    return run_id


class MetricLogger:
    """Rank 0's metric logging: buffered, flushed in batches (one round trip per flush).

    Every (metric, step) pair is logged once per run: a worker that restarts from a checkpoint (a
    lost worker, a killed driver run again) repeats the steps after that checkpoint, and MLflow
    keeps every point it is sent (it cannot delete one). So the logger first reads the last step
    already logged for each metric and skips what it would repeat.
    """

    def __init__(self, uri: str | None, run_id: str | None, flush_every: int = 50):
        self.client = mlflow_client(uri) if uri and run_id else None
        self.run_id = run_id
        self.flush_every = flush_every
        self._buffer: list = []
        self._logged_to = self._last_logged_steps() if self.client is not None else {}

    def _last_logged_steps(self) -> dict[str, int]:
        keys = self.client.get_run(self.run_id).data.metrics
        return {k: max(m.step for m in self.client.get_metric_history(self.run_id, k)) for k in keys}

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric  # LAZY: see the module docstring

        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, int(step)) for k, v in metrics.items()
                         if v is not None and step > self._logged_to.get(k, -1)]
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self.client is not None and self._buffer:
            self.client.log_batch(self.run_id, metrics=self._buffer)  # split into MLflow's limits by the client
            self._buffer = []


def finish_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    mlflow_client(uri).set_terminated(run_id, status)


def log_figure(uri: str, run_id: str, fig, artifact_file: str, *copies: str) -> None:
    """Log a matplotlib figure as `artifact_file` (and as each of `copies`, e.g. "best/x.png")
    through MLflow's `log_figure` (no temporary files of ours)."""
    client = mlflow_client(uri)
    for name in (artifact_file, *copies):
        client.log_figure(run_id, fig, name)


def log_confusion(uri: str, run_id: str, confusion, labels: list[str] | None, title: str, artifact_file: str,
                  *copies: str) -> None:
    """The confusion matrix as a figure of the run (`figures.plot_confusion`)."""
    from .figures import plot_confusion  # LAZY: matplotlib, see the module docstring

    log_figure(uri, run_id, plot_confusion(confusion, labels, title), artifact_file, *copies)


def log_dict(uri: str, run_id: str, data: dict, artifact_file: str) -> None:
    """A dict as a JSON or YAML artifact (by the file's suffix)."""
    mlflow_client(uri).log_dict(run_id, data, artifact_file)


def log_metrics_once(uri: str, run_id: str, metrics: dict[str, float], tags: dict[str, str], step: int = 0) -> None:
    """Metrics measured once (an evaluation's), in one request, with tags saying what they measured."""
    from mlflow.entities import Metric, RunTag  # LAZY: see the module docstring

    client = mlflow_client(uri)
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
                     tags=[RunTag(k, str(v)) for k, v in tags.items()])


def run_exists(uri: str, run_id: str | None) -> bool:
    """Whether the store at `uri` is reachable from here and holds the run (a missing local SQLite
    file is not created just to find out)."""
    from mlflow.exceptions import MlflowException  # LAZY: see the module docstring

    db = sqlite_path(uri)
    if not run_id or (db is not None and not db.is_file()):
        return False
    try:
        mlflow_client(uri).get_run(run_id)
        return True
    except MlflowException:
        return False


def learning_curves(uri: str, run_id: str) -> Figure:
    """The run's loss, learning rate and accuracies as logged so far (`figures.plot_learning_curves`)."""
    from .figures import plot_learning_curves  # LAZY: matplotlib, see the module docstring

    return plot_learning_curves(mlflow_client(uri), run_id)


def finish_training_run(uri: str, run_id: str, files: list[tuple[Path, str | None]], final: dict[str, Any]) -> None:
    """A finished training run's local `files` (path, artifact directory or None) and `final.*`
    tags; then the run is FINISHED (`start_run` logged the config)."""
    client = mlflow_client(uri)
    for path, artifact_dir in files:
        client.log_artifact(run_id, str(path), artifact_dir)
    for key, value in final.items():
        client.set_tag(run_id, f"final.{key}", f"{value:.6g}" if isinstance(value, float) else str(value))
    finish_run(uri, run_id, "FINISHED")
