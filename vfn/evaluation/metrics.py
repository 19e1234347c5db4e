"""Multi-view evaluation metrics: clips x crops per video, softmax-averaged, every video counted once.

Used by the training worker's validation and by `vfn eval`'s workers alike (torch only, no Ray).

The validation split is streamed to workers unevenly (`equal=False`, see `ray_setup.SplitDataConfig`), so no
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

from vfn.data.clips import normalize


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
