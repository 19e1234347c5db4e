"""MLflow tracking: one run per training run, continued after a resume.

The driver creates (or reopens) the run before Ray starts, so every worker restart and every
`vfn train` re-run logs into the same run; rank 0 logs metrics through `MetricLogger`; the driver
adds artifacts and closes the run. Default store: `sqlite:///<output.root>/mlflow.db` (MLflow 3
puts the file store in maintenance mode and recommends a database backend), artifacts in
`<output.root>/mlartifacts`. `tracking.tracking_uri` or `$MLFLOW_TRACKING_URI` selects a server.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from . import storage
from .config import ConfigError, ExperimentConfig

RUN_ID_FILE = "mlflow_run_id"


def tracking_uri(cfg: ExperimentConfig) -> str:
    if cfg.tracking.tracking_uri:
        return cfg.tracking.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if storage.is_remote(cfg.output.root):  # a SQLite file cannot live on object storage
        raise ConfigError(
            f"output.root={cfg.output.root} is on object storage, so MLflow needs a tracking server: set "
            "tracking.tracking_uri or MLFLOW_TRACKING_URI (the cluster's head runs one), or tracking.enabled=false"
        )
    return f"sqlite:///{Path(cfg.output.root).resolve() / 'mlflow.db'}"


class TrackingServerUnreachable(ConfigError):
    """The configured MLflow server does not answer: reported before any training compute."""


def check_tracking_server(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one line, when an http(s) tracking URI does not answer MLflow's /health.

    MLflow's own client retries for minutes with backoff before giving up; a run should not spend
    GPU hours (or even a Ray start) before learning that its metrics have nowhere to go.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
            if response.status == 200:
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


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _experiment_id(client, cfg: ExperimentConfig, uri: str) -> str:
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///") and not cfg.tracking.tracking_uri:  # keep artifacts next to the local store
        location = (Path(cfg.output.root).resolve() / "mlartifacts").as_uri()
    return client.create_experiment(cfg.tracking.experiment, artifact_location=location)


def start_run(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    *,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    run_name: str | None = None,
) -> str:
    """Create the MLflow run of a training run, or reopen it when `run_dir` already has one."""
    from mlflow.entities import Param, RunTag
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(cfg)
    check_tracking_server(uri)
    client = _client(uri)
    id_file = storage.join(run_dir, RUN_ID_FILE)
    if (text := storage.read_text(id_file)) is not None:
        run_id = text.strip()
        try:
            client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
            client.set_tag(run_id, "vfn.resumed", "true")
            return run_id
        except MlflowException:
            pass  # the store was deleted or moved: start a new run
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
        _experiment_id(client, cfg, uri), run_name=run_name or cfg.tracking.run_name or cfg.output.name, tags=all_tags
    )
    run_id = run.info.run_id
    params = [Param(k, str(v)[:6000]) for k, v in cfg.flat().items()]
    params += [Param("derived.global_batch", str(cfg.global_batch)), Param("derived.lr", f"{cfg.scaled_lr:.6g}")]
    for i in range(0, len(params), 100):  # MLflow's batch limit
        client.log_batch(run_id, params=params[i : i + 100])
    client.log_batch(run_id, tags=[RunTag("mlflow.source.name", "vfn train")])
    storage.write_text(id_file, run_id + "\n")
    return run_id


class MetricLogger:
    """Rank 0's metric logging: buffered, flushed in batches (one round trip per flush)."""

    def __init__(self, uri: str | None, run_id: str | None, flush_every: int = 50):
        self.client = _client(uri) if uri and run_id else None
        self.run_id = run_id
        self.flush_every = flush_every
        self._buffer: list = []

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._buffer += [Metric(k, float(v), now, int(step)) for k, v in metrics.items() if v is not None]
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def set_tags(self, tags: dict[str, Any]) -> None:
        if self.client is not None:
            for k, v in tags.items():
                self.client.set_tag(self.run_id, k, str(v))

    def flush(self) -> None:
        if self.client is not None and self._buffer:
            for i in range(0, len(self._buffer), 1000):
                self.client.log_batch(self.run_id, metrics=self._buffer[i : i + 1000])
            self._buffer = []


def log_artifact(uri: str, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
    _client(uri).log_artifact(run_id, str(path), artifact_path)


def finish_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    _client(uri).set_terminated(run_id, status)


def plot_confusion(confusion, labels: list[str] | None, path: str | Path, title: str = "confusion matrix") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cm = np.asarray(confusion, dtype=np.float64)
    n = cm.shape[0]
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)  # rows: true class, as recall
    size = min(4 + 0.35 * n, 40)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= 60:
        names = labels if labels and len(labels) == n else [str(i) for i in range(n)]
        ax.set_xticks(range(n), names, rotation=90, fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_learning_curves(uri: str, run_id: str, path: str | Path) -> Path:
    """Loss and learning rate per step, accuracies per epoch, read back from the MLflow run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    client = _client(uri)

    def series(key):
        h = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
        return [m.step for m in h], [m.value for m in h]

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key in ("train/loss",):
        axes[0].plot(*series(key), label=key, lw=1)
    axes[0].set_xlabel("optimiser step")
    axes[0].set_title("training loss")
    axes[1].plot(*series("train/lr"), lw=1)
    axes[1].set_xlabel("optimiser step")
    axes[1].set_title("learning rate")
    for key in ("epoch/train_top1", "epoch/val_top1", "epoch/val_top5"):
        steps, values = series(key)
        if steps:
            axes[2].plot(steps, [100 * v for v in values], marker="o", label=key.split("/")[1])
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("%")
    axes[2].set_title("accuracy")
    axes[2].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
