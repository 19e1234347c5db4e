"""Multi-view evaluation: clips x crops per video, softmax-averaged, every video counted once.

The validation split is streamed to workers unevenly (`equal=False`, see `train.SplitConfig`), so no
video is dropped or duplicated to even out the shards, as a DistributedSampler would. Each worker
accumulates a confusion matrix and a per-video "seen" count indexed by the dataset's `index` column;
one all-reduce at the end sums them, and `EvalResult` checks that every video was counted exactly
once before reporting top-1, top-5 and mean class accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn


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
def evaluate_batches(model: nn.Module, batches, acc: EvalAccumulator, device: torch.device, autocast, on_batch=None) -> None:
    """Feed view batches {"video": uint8 (B, V, T, 3, S, S), "label", "index", "valid"} to `acc`.

    `model` is the bare module (not the DDP wrapper: no collectives per batch, as shards are uneven).
    """
    from .data.clips import normalize

    was_training = model.training
    model.eval()
    for batch in batches:
        video = batch["video"].to(device, non_blocking=True)
        b, v = video.shape[:2]
        x = normalize(video.flatten(0, 1))  # (B*V, T, 3, S, S)
        with autocast():
            logits = model(x)
        probs = logits.float().softmax(-1).view(b, v, -1).mean(1)
        acc.update(probs, batch["label"], batch["index"], batch["valid"])
        if on_batch is not None:
            on_batch(b)
    model.train(was_training)


# -- `vfn eval`: a checkpoint on a validation/test split, distributed over Ray Train workers -------


def eval_loop_per_worker(config: dict) -> dict | None:
    import ray.train
    import ray.train.torch

    from .checkpoints import load_state
    from .config import ExperimentConfig
    from .train import autocast_for, build_model, resolve_precision

    cfg = ExperimentConfig.model_validate(config["cfg"])
    device = ray.train.torch.get_device()
    model = build_model(cfg, load_pretrained=False)
    state = load_state(config["checkpoint"])
    model.load_state_dict(state["ema"] if config.get("use_ema") and state.get("ema") else state["model"])
    model.to(device)
    autocast = autocast_for(resolve_precision(cfg, device), device)
    acc = EvalAccumulator(cfg.data.num_classes, config["num_videos"], device)
    evaluate_batches(model, ray.train.get_dataset_shard("val").iter_torch_batches(batch_size=cfg.eval.batch_size),
                     acc, device, autocast)
    acc.all_reduce()
    res = acc.result()
    if ray.train.get_context().get_world_rank() == 0:
        return {**res.metrics("eval_"), "confusion": res.confusion.tolist()}
    return None


def run_evaluation(
    checkpoint: str,
    data: str,
    *,
    overrides: list[str] | None = None,
    workdir: str = ".",
    num_workers: int | None = None,
    use_ema: bool = False,
    log_to_mlflow: bool = True,
    ray_init_kwargs: dict | None = None,
) -> tuple[EvalResult, dict]:
    """Evaluate a training checkpoint on Parquet shards; logs to the checkpoint's MLflow run when
    its store is reachable, else to a new run in `<workdir>/mlflow.db`. Returns (result, info)."""
    import time
    from pathlib import Path

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from . import storage
    from .checkpoints import find_checkpoint, load_state
    from .config import validate
    from .data.shards import count_videos
    from .train import _init_ray, _split_config, build_datasets, check_resources

    path = find_checkpoint(checkpoint)  # workers read it from there (any node), the driver too
    state = load_state(path)
    cfg = validate(state["config"], f"{path} (saved config)")
    cfg = cfg.with_overrides({"data.val": storage.absolute(data), "data.train": None})
    if overrides:
        cfg = cfg.with_overrides(overrides)
    if num_workers:
        cfg = cfg.with_overrides({"scaling.num_workers": num_workers})
    num_videos = count_videos(cfg.data.val)
    fixed = _init_ray(ray_init_kwargs)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    use_gpu = cfg.scaling.use_gpu if isinstance(cfg.scaling.use_gpu, bool) else ray.cluster_resources().get("GPU", 0) >= 1
    check_resources(cfg, ray.cluster_resources(), use_gpu, fixed)
    runs = Path(workdir).resolve() / "runs"
    t0 = time.time()
    trainer = TorchTrainer(
        eval_loop_per_worker,
        train_loop_config=dict(cfg=cfg.to_dict(), checkpoint=str(path), num_videos=num_videos, use_ema=use_ema),
        scaling_config=ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cfg.scaling.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}),
        run_config=RunConfig(name=f"eval-{cfg.output.name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(runs)),
        datasets=build_datasets(cfg, splits=("val",)),
        dataset_config=_split_config(),
    )
    out = trainer.fit().return_value
    confusion = np.asarray(out.pop("confusion"), dtype=np.int64)
    res = EvalResult(top1=out["eval_top1"], top5=out["eval_top5"], mean_class_acc=out["eval_mean_class_acc"],
                     videos=int(out["eval_videos"]), corrupt=int(out["eval_corrupt"]), confusion=confusion)
    info = {"checkpoint": str(path), "seconds": time.time() - t0, "views": f"{cfg.eval.num_clips}x{cfg.eval.num_crops}"}
    if log_to_mlflow and cfg.tracking.enabled:
        info.update(_log_evaluation(cfg, state, res, data, workdir))
    return res, info


def _log_evaluation(cfg, state: dict, res: EvalResult, data: str, workdir: str) -> dict:
    import tempfile
    from pathlib import Path

    from mlflow.exceptions import MlflowException

    from . import storage
    from .data.manifest import read_label_names
    from .tracking import _client, plot_confusion, start_run, tracking_uri

    uri, run_id = tracking_uri(cfg), state.get("mlflow_run_id")
    local_db = uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file()
    client = None
    if run_id and not local_db:
        try:
            client = _client(uri)
            client.get_run(run_id)
        except MlflowException:
            client = None
    if client is None:  # the training store is not here: a new run in the work directory's store
        cfg = cfg.with_overrides({"output.root": str(Path(workdir).resolve()), "tracking.tracking_uri": None})
        uri = tracking_uri(cfg)
        with tempfile.TemporaryDirectory() as d:
            run_id = start_run(cfg, d, run_name=f"eval {cfg.output.name}", tags={"vfn.kind": "eval"})
        client = _client(uri)
    from mlflow.entities import Metric

    import time

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in res.metrics("eval_").items()])
    client.set_tag(run_id, "eval.data", storage.absolute(data))
    labels = read_label_names(cfg.data.labels) if cfg.data.labels and Path(cfg.data.labels).is_file() else None
    with tempfile.TemporaryDirectory() as d:
        png = plot_confusion(res.confusion, labels, Path(d) / "eval_confusion_matrix.png",
                             f"eval {cfg.output.name}: top-1 {100 * res.top1:.1f}%")
        client.log_artifact(run_id, str(png))
    return {"mlflow_run_id": run_id, "tracking_uri": uri}
