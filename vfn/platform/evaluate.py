"""Multi-view evaluation: clips x crops per video, softmax-averaged, every video counted once.

The validation split is streamed to workers unevenly (`equal=False`, see `ray_setup.SplitDataConfig`), so no
video is dropped or duplicated to even out the shards, as a DistributedSampler would. Each worker
accumulates a confusion matrix and a per-video "seen" count indexed by the dataset's `index` column;
one all-reduce at the end sums them, and `EvalResult` checks that every video was counted exactly
once before reporting top-1, top-5 and mean class accuracy.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from .config import ConfigError, ExperimentConfig
from .data.clips import normalize


class EvaluationCountError(RuntimeError):
    """Some validation video was missed or counted twice (one-line message)."""


@dataclass
class EvalResult:
    top1: float
    top5: float
    mean_class_acc: float
    videos: int  # decoded and scored
    corrupt: int  # counted, not scored
    confusion: np.ndarray = field(repr=False)

    def metrics(self, prefix: str = "val_") -> dict[str, float]:
        return {
            f"{prefix}top1": self.top1,
            f"{prefix}top5": self.top5,
            f"{prefix}mean_class_acc": self.mean_class_acc,
            f"{prefix}videos": float(self.videos),
            f"{prefix}corrupt": float(self.corrupt),
        }

    def summary(self) -> str:
        return (
            f"top-1 {100 * self.top1:.2f}%  top-5 {100 * self.top5:.2f}%  mean class {100 * self.mean_class_acc:.2f}%"
            f"  ({self.videos} videos" + (f", {self.corrupt} corrupt skipped)" if self.corrupt else ")")
        )


class EvalAccumulator:
    def __init__(self, num_classes: int, num_videos: int, device: torch.device | str = "cpu"):
        self.num_classes, self.num_videos = num_classes, num_videos
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.top5 = torch.zeros((), dtype=torch.int64, device=device)
        self.seen = torch.zeros(num_videos, dtype=torch.int32, device=device)
        self.corrupt = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, probs: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, valid: torch.Tensor) -> None:
        """probs (B, C) averaged over views; labels, index, valid (B,)."""
        index = index.to(self.seen.device).long()
        if index.numel() and (index.min() < 0 or index.max() >= self.num_videos):
            raise EvaluationCountError(f"video index {int(index.max())} outside 0..{self.num_videos - 1}")
        self.seen.index_add_(0, index, torch.ones_like(index, dtype=torch.int32))
        valid = valid.to(self.seen.device).bool()
        self.corrupt += (~valid).sum()
        if not valid.any():
            return
        probs, labels = probs[valid.to(probs.device)].float(), labels.to(probs.device)[valid.to(probs.device)].long()
        pred = probs.argmax(1)
        flat = (labels * self.num_classes + pred).to(self.confusion.device)
        self.confusion += torch.bincount(flat, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)
        k = min(5, self.num_classes)
        self.top5 += (probs.topk(k, dim=1).indices == labels[:, None]).any(1).sum().to(self.top5.device)

    def all_reduce(self) -> None:
        if dist.is_available() and dist.is_initialized():
            for t in (self.confusion, self.top5, self.seen, self.corrupt):
                dist.all_reduce(t)

    def result(self) -> EvalResult:
        seen = self.seen.cpu()
        missing, twice = int((seen == 0).sum()), int((seen > 1).sum())
        if missing or twice:
            raise EvaluationCountError(
                f"evaluation covered the {self.num_videos} validation videos unevenly: {missing} never seen, "
                f"{twice} seen more than once"
            )
        cm = self.confusion.cpu().numpy()
        scored = int(cm.sum())
        support = cm.sum(1)
        per_class = np.divide(np.diag(cm), support, out=np.zeros(len(cm)), where=support > 0)
        return EvalResult(
            top1=float(np.trace(cm) / scored) if scored else 0.0,
            top5=float(self.top5.item() / scored) if scored else 0.0,
            mean_class_acc=float(per_class[support > 0].mean()) if (support > 0).any() else 0.0,
            videos=scored,
            corrupt=int(self.corrupt.item()),
            confusion=cm,
        )


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches, acc: EvalAccumulator, device: torch.device, autocast,
                     on_batch=None, pad_to: int | None = None) -> None:
    """Feed view batches {"video": uint8 (B, V, T, 3, S, S), "label", "index", "valid"} to `acc`.

    `model` is the bare module (not the DDP wrapper: no collectives per batch, as shards are uneven).
    `pad_to`: zero-pad shorter batches to this many views (a compiled model keeps one shape).
    """
    was_training = model.training
    model.eval()
    for batch in batches:
        video = batch["video"].to(device, non_blocking=True)
        b, v = video.shape[:2]
        x = normalize(video.flatten(0, 1))  # (B*V, T, 3, S, S)
        if pad_to is not None and len(x) < pad_to:
            x = torch.cat([x, x.new_zeros((pad_to - len(x), *x.shape[1:]))])
        with autocast():
            logits = model(x)[: b * v]
        probs = logits.float().softmax(-1).view(b, v, -1).mean(1)
        acc.update(probs, batch["label"], batch["index"], batch["valid"])
        if on_batch is not None:
            on_batch(b)
    model.train(was_training)


# -- `vfn eval`: a checkpoint on a validation/test split, distributed over Ray Train workers -------


@dataclass(frozen=True)
class EvalSource:
    """What `vfn eval` evaluates. `trained`: a vfn training checkpoint, whose header gives the
    config and MLflow run; else released weights or a plain state dict, described by an experiment
    file and/or `--model` plus overrides, and checked to fit before Ray starts."""

    cfg: ExperimentConfig
    weights: str  # the checkpoint file's location (path or URI)
    trained: bool
    mlflow_run_id: str | None = None
    origin: str | None = None  # what was given, when the weights were taken from it (an MLflow model URI)

    @property
    def views(self) -> str:
        return f"{self.cfg.eval.num_clips}x{self.cfg.eval.num_crops}"


def eval_source(checkpoint: str, data: str, overrides: list[str] | None = None, config_file: str | None = None,
                model: str | None = None, tracking_uri: str | None = None, workdir: str = ".") -> EvalSource:
    """Resolve a checkpoint (file, checkpoint or run directory, released weights, or an MLflow model
    URI in the store at `tracking_uri`) and its config."""
    from . import storage
    from .checkpoints import RunCheckpointError, find_checkpoint, read_header
    from .config import load_config, validate
    from .mlflow_models import is_model_uri

    data_keys = {"data.val": storage.absolute(data), "data.train": None}
    if is_model_uri(checkpoint):
        if config_file or model:
            raise ConfigError(f"{checkpoint} is a vfn model and carries its own config; --config and --model "
                              "describe released weights (override single keys instead)")
        return model_source(checkpoint, tracking_uri, workdir, [data_keys, *([overrides] if overrides else [])])
    try:
        path = find_checkpoint(checkpoint)
        header = read_header(path)
    except RunCheckpointError:
        if not storage.is_file(str(checkpoint)):
            raise
        cfg = load_config(config_file, [*([f"model.name={model}"] if model else []), *(overrides or [])])
        cfg = cfg.with_overrides(data_keys)
        check_weights_fit(cfg, str(checkpoint))
        return EvalSource(cfg, storage.absolute(checkpoint), trained=False)
    if config_file or model:
        raise ConfigError(f"{path} is a vfn training checkpoint and carries its own config; --config and --model "
                          "describe released weights (override single keys instead)")
    cfg = validate(header["config"], f"{path} (saved config)").with_overrides(data_keys)
    if overrides:
        cfg = cfg.with_overrides(overrides)
    return EvalSource(cfg, str(path), trained=True, mlflow_run_id=header.get("mlflow_run_id"))


def model_source(model_uri: str, tracking_uri: str | None, workdir: str, overrides: list) -> EvalSource:
    """An MLflow model's weights exported next to the evaluation's Ray storage (the workers load
    them as released weights), with the config from its metadata and the overrides applied."""
    from .mlflow_models import export_state_dict
    from .tracking import default_tracking_uri

    cfg, path = export_state_dict(model_uri, tracking_uri or default_tracking_uri(), Path(workdir) / "mlflow_models")
    for o in overrides:
        cfg = cfg.with_overrides(o)
    return EvalSource(cfg, str(path.resolve()), trained=False, origin=model_uri)


def check_weights_fit(cfg: ExperimentConfig, weights: str) -> None:
    """Weights that do not load strictly into the config's model: a one-line ConfigError naming the
    first key that does not fit (shapes only: the file is memory-mapped, the model built on `meta`)."""
    from vfn.model.weights import first_mismatch, read_state_dict

    from . import storage
    from .step import meta_state_dict

    sd = read_state_dict(storage.local_copy(weights), mmap=True)
    if problem := first_mismatch(meta_state_dict(cfg), sd):
        raise ConfigError(f"{weights} does not fit the config's model ({cfg.model.name}, design {cfg.model.design}, "
                          f"{cfg.data.num_classes} classes): {problem}")


def load_eval_weights(model: nn.Module, config: dict) -> None:
    """A worker's weights: the training checkpoint's model (or EMA) entry, or the whole state dict."""
    from vfn.model.weights import read_state_dict

    from . import storage
    from .checkpoints import load_state

    if config["trained"]:
        state = load_state(config["checkpoint"])
        sd = state["ema"] if config.get("use_ema") and state.get("ema") else state["model"]
    else:
        sd = read_state_dict(storage.local_copy(config["checkpoint"]))
    model.load_state_dict(sd)


def eval_loop_per_worker(config: dict) -> dict | None:
    """One evaluation worker: its uneven share of the videos, then one all-reduce. A counting error
    comes back as `{"error": ...}` (Ray would wrap an exception in a traceback) for the driver to raise."""
    import ray.train
    import ray.train.torch

    from .step import autocast_for, build_model, compile_for_eval, eval_batch_clips, resolve_precision

    cfg = ExperimentConfig.model_validate(config["cfg"])
    device = ray.train.torch.get_device()
    model = build_model(cfg, load_pretrained=False)
    load_eval_weights(model, config)
    model.to(device)
    autocast = autocast_for(resolve_precision(cfg, device), device)
    pad_to = None
    if cfg.model.compile:
        model, pad_to = compile_for_eval(model, cfg, device, autocast).module, eval_batch_clips(cfg)
    acc = EvalAccumulator(cfg.data.num_classes, config["num_videos"], device)
    evaluate_batches(model, ray.train.get_dataset_shard("val").iter_torch_batches(batch_size=cfg.eval.batch_size),
                     acc, device, autocast, pad_to=pad_to)
    acc.all_reduce()
    try:
        res = acc.result()
    except EvaluationCountError as e:
        return {"error": str(e)}
    if ray.train.get_context().get_world_rank() == 0:
        return {**res.metrics("eval_"), "confusion": res.confusion.tolist()}
    return None


def run_evaluation(
    checkpoint: str,
    data: str,
    *,
    overrides: list[str] | None = None,
    config_file: str | None = None,
    model: str | None = None,
    workdir: str = ".",
    num_workers: int | None = None,
    use_ema: bool = False,
    log_to_mlflow: bool = True,
    ray_init_kwargs: dict | None = None,
    tracking_uri: str | None = None,
) -> tuple[EvalResult, dict]:
    """Evaluate a training checkpoint, an MLflow model URI (`runs:/`, `models:/` in the store at
    `tracking_uri`), or released weights described by `config_file` / `model` and overrides, on
    Parquet shards. A training checkpoint's metrics go to its MLflow run when
    its store is reachable, else to a new run in `<workdir>/mlflow.db`; released weights get an
    evaluation run of their own in the config's store. Returns (result, info).

    The driver reads only a training checkpoint's small header (config, MLflow run id), and only
    the shapes of released weights; the workers load the weights, each on its own node."""
    source = eval_source(checkpoint, data, overrides, config_file, model, tracking_uri, workdir)
    if num_workers:
        source = replace(source, cfg=source.cfg.with_overrides({"scaling.num_workers": num_workers}))
    t0 = time.time()
    res = evaluate_on_ray(source, workdir, use_ema, ray_init_kwargs)
    info = {"checkpoint": source.weights, "seconds": time.time() - t0, "views": source.views}
    if log_to_mlflow and source.cfg.tracking.enabled:
        info.update(log_evaluation(source, res, data, workdir))
    return res, info


def evaluate_on_ray(source: EvalSource, workdir: str, use_ema: bool, ray_init_kwargs: dict | None) -> EvalResult:
    from ray.train import RunConfig
    from ray.train.torch import TorchTrainer

    from .data.pipeline import datasets_for
    from .data.shards import count_videos
    from .ray_setup import SplitDataConfig, check_resources, init_ray, quiet_ray_data, use_gpu, worker_scaling

    cfg = source.cfg
    num_videos = count_videos(cfg.data.val)
    fixed = init_ray(ray_init_kwargs)
    quiet_ray_data()
    gpu = use_gpu(cfg)
    check_resources(cfg, gpu, fixed)
    trainer = TorchTrainer(
        eval_loop_per_worker,
        train_loop_config=dict(cfg=cfg.to_dict(), checkpoint=source.weights, trained=source.trained,
                               num_videos=num_videos, use_ema=use_ema),
        scaling_config=worker_scaling(cfg, gpu),
        run_config=RunConfig(name=f"eval-{cfg.output.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                             storage_path=str(Path(workdir).resolve() / "runs")),
        datasets=datasets_for(cfg, splits=("val",)),
        dataset_config=SplitDataConfig(),
    )
    out = trainer.fit().return_value
    if out.get("error"):
        raise EvaluationCountError(out["error"])
    return EvalResult(top1=out["eval_top1"], top5=out["eval_top5"], mean_class_acc=out["eval_mean_class_acc"],
                      videos=int(out["eval_videos"]), corrupt=int(out["eval_corrupt"]),
                      confusion=np.asarray(out["confusion"], dtype=np.int64))


def log_evaluation(source: EvalSource, res: EvalResult, data: str, workdir: str) -> dict:
    """Log `eval_*` metrics and the confusion matrix: into the training run when its store is here;
    else into a new evaluation run (released weights: in the config's store, tagged with the
    source file and its sha256, so `vfn compare` shows them beside trained runs)."""
    from mlflow.entities import Metric

    from . import storage
    from .data.manifest import read_label_names
    from .tracking import finish_run, log_figure, mlflow_client, plot_confusion

    cfg = source.cfg
    uri, run_id, new_run = eval_run(source, workdir)
    client = mlflow_client(uri)
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in res.metrics("eval_").items()])
    client.set_tag(run_id, "eval.data", storage.absolute(data))
    client.set_tag(run_id, "eval.views", source.views)
    labels = read_label_names(cfg.data.labels) if cfg.data.labels and Path(cfg.data.labels).is_file() else None
    fig = plot_confusion(res.confusion, labels, f"eval {cfg.output.name}: top-1 {100 * res.top1:.1f}%")
    log_figure(uri, run_id, fig, "eval_confusion_matrix.png")
    if new_run:
        finish_run(uri, run_id)
    return {"mlflow_run_id": run_id, "tracking_uri": uri}


def eval_run(source: EvalSource, workdir: str) -> tuple[str, str, bool]:
    """(tracking URI, run id, whether the run is new) of the MLflow run an evaluation logs to."""
    from . import storage
    from .tracking import start_run, tracking_uri

    cfg = source.cfg
    if source.trained:
        if training_run_here(tracking_uri(cfg), source.mlflow_run_id):
            return tracking_uri(cfg), source.mlflow_run_id, False
        cfg = cfg.with_overrides({"output.root": str(Path(workdir).resolve()), "tracking.tracking_uri": None})
        tags = {"vfn.kind": "eval"}
    else:
        tags = {"vfn.kind": "eval", "source_checkpoint": source.origin or source.weights,
                "source_sha256": file_sha256(storage.local_copy(source.weights))}
    with tempfile.TemporaryDirectory() as d:
        name = f"eval {source.origin or Path(source.weights).name if not source.trained else cfg.output.name}"
        run_id = start_run(cfg, d, run_name=name, tags={**tags, "eval.views": source.views})
    return tracking_uri(cfg), run_id, True


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def training_run_here(uri: str, run_id: str | None) -> bool:
    """Whether the training run's MLflow store is reachable from here and holds the run (a
    missing local SQLite file is not created just to find out)."""
    from mlflow.exceptions import MlflowException

    from .tracking import mlflow_client, sqlite_path

    db = sqlite_path(uri)
    if not run_id or (db is not None and not db.is_file()):
        return False
    try:
        mlflow_client(uri).get_run(run_id)
        return True
    except MlflowException:
        return False
