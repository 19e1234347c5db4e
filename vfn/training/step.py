"""One training step for every caller, with no Ray inside.

The Ray Train worker, the no-Ray learning test, `vfn bench train` and `scripts/gpu_check.py` all
build a `TrainStep` from an `ExperimentConfig` and call it once per micro-batch, so a change to the
step (precision, mixup, accumulation, clipping, EMA, schedule) reaches all of them at once.

One precision path, as nanoGPT has it: autocast to the chosen dtype (a no-op in fp32) and a
`GradScaler` that is enabled only for fp16. Gradient accumulation averages `accum_steps`
micro-batches (a short last group of an epoch averages what it has) and skips DDP's all-reduce on
all but the last micro-batch of a group.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn
from timm.loss import SoftTargetCrossEntropy
from timm.utils import ModelEmaV3

from vfn.config.schema import ExperimentConfig
from vfn.data.clips import VideoMixup, normalize
from vfn.data.device_augment import DeviceAugment
from vfn.errors import ConfigError
from vfn.model.compiling import compile_ahead

from .build import build_model, build_optimizer, compile_for_eval


@dataclass
class Plan:
    """The schedule, fixed before any worker starts so every attempt of a run agrees on it."""

    train_videos: int
    val_videos: int
    micro_steps_per_epoch: int  # batches per worker per epoch (equal shards, drop_last)
    steps_per_epoch: int  # optimiser steps per epoch
    total_steps: int
    warmup_steps: int
    lr: float


def resolve_precision(cfg: ExperimentConfig, device: torch.device) -> str:
    """fp32 / bf16 / fp16 for this device; `auto` is bf16 where supported, fp16 on older GPUs."""
    p = cfg.optim.precision
    if device.type != "cuda":
        if p in ("bf16", "fp16"):
            raise ConfigError(f"optim.precision={p} needs a GPU; this worker runs on {device.type} (use auto or fp32)")
        return "fp32"
    if p == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return p


def autocast_for(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """A context-manager factory: autocast to the precision's dtype, disabled for fp32."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    return lambda: torch.autocast(device_type=device.type, dtype=dtype, enabled=precision != "fp32")


@dataclass
class EpochCounters:
    """Per-epoch sums of one worker; `all_reduce` sums them over workers."""

    loss_sum: float = 0.0
    correct: float = 0.0  # against the un-mixed labels
    scored: float = 0.0
    corrupt: float = 0.0
    data_wait_s: float = 0.0
    wall_s: float = 0.0

    def add(self, out: StepOutput) -> None:
        self.loss_sum += out.loss * out.scored
        self.correct += out.correct
        self.scored += out.scored
        self.corrupt += out.corrupt

    def all_reduce(self, device: torch.device) -> EpochCounters:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self
        t = torch.tensor([getattr(self, f.name) for f in fields(self)], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)  # gloo / nccl: sum over workers
        return EpochCounters(*t.cpu().tolist())


@dataclass
class StepOutput:
    loss: float  # mean loss of the scored clips (0.0 when none were)
    correct: int
    scored: int
    corrupt: int
    stepped: bool  # this micro-batch closed an accumulation group: the optimiser stepped


def accumulation_group(i: int, micro_steps: int, accum_steps: int) -> tuple[int, bool]:
    """(size of the group micro-batch `i` belongs to, whether `i` closes it)."""
    start = i - i % accum_steps
    size = min(accum_steps, micro_steps - start)
    return size, i + 1 == start + size


class TrainStep:
    """Model, optimiser, schedule, scaler, EMA and mixup of one training process.

    `wrap` turns the model into what trains (DDP under Ray Train: `ray.train.torch.prepare_model`);
    `self.model` is what `wrap` returned, `self.bare` the module underneath (for checkpoints, EMA
    and evaluation). `augment` crops, flips and colours batches that carry `aug_params`
    (`augment.on_device`: the decode tasks shipped windows); batches without them are used as they are.
    """

    def __init__(self, cfg: ExperimentConfig, plan: Plan, device: torch.device,
                 wrap: Callable[[nn.Module], nn.Module] | None = None, augment: DeviceAugment | None = None):
        o, a = cfg.optim, cfg.augment
        self.plan, self.device, self.accum_steps, self.clip_grad = plan, device, o.accum_steps, o.clip_grad
        torch.manual_seed(cfg.seed)  # same initial weights in every process (DDP also broadcasts them)
        bare = build_model(cfg).to(device)
        self.ema = ModelEmaV3(bare, decay=o.ema_decay) if o.ema else None
        self.model = wrap(bare) if wrap else bare
        self.bare = getattr(self.model, "module", self.model)
        self.optimizer, self.scheduler = build_optimizer(cfg, self.bare, plan.lr, plan.total_steps, plan.warmup_steps)
        self.precision = resolve_precision(cfg, device)
        self.autocast = autocast_for(self.precision, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.mixup = VideoMixup(mixup_alpha=a.mixup_alpha, cutmix_alpha=a.cutmix_alpha, prob=a.mixup_prob,
                                label_smoothing=a.label_smoothing, num_classes=cfg.data.num_classes)
        self.criterion = SoftTargetCrossEntropy()
        self.augment = augment
        self.global_step = 0
        self.eval_nets = {"val_": self.bare, "val_ema_": self.ema.module if self.ema is not None else None}
        self.compile_s: float | None = None  # seconds spent compiling ahead (model.compile), else None
        if cfg.model.compile:
            self.compile_models(cfg)

    def compile_models(self, cfg: ExperimentConfig) -> None:
        """`model.compile`: compile the training model on a batch of the training shape (its backward
        too) and the evaluation nets on one of the validation shape, before the first epoch, so that
        no epoch pays for compilation; a failure leaves the step eager (one warning)."""
        def warm_train(model: nn.Module) -> None:
            x = torch.zeros(cfg.optim.batch_size, cfg.data.num_frames, 3, cfg.data.input_size, cfg.data.input_size,
                            device=self.device)
            with self.autocast():
                loss = model.train()(x).float().sum()
            loss.backward()  # under DDP an all-reduce, as every worker warms up alike
            self.optimizer.zero_grad(set_to_none=True)

        train = compile_ahead(self.model, warm_train, cfg.model.compile_mode)
        self.model, self.compile_s = train.module, train.seconds
        if self.plan.val_videos and train.compiled:
            for prefix, net in self.eval_nets.items():
                if net is not None:
                    compiled = compile_for_eval(net, cfg, self.device, self.autocast)
                    self.eval_nets[prefix], self.compile_s = compiled.module, self.compile_s + compiled.seconds

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def __call__(self, video: torch.Tensor, label: torch.Tensor, valid: torch.Tensor | None, i: int,
                 aug_params: torch.Tensor | None = None) -> StepOutput:
        """Micro-batch `i` (0-based, within the epoch) of uint8 clips (B, T, 3, H, W); `valid`
        marks clips that decoded (None: all did); `aug_params` (B, PARAMS_SIZE) come with windows
        to augment here (`augment.on_device`). Steps the optimiser when `i` closes a group.
        The model must be in training mode (`step.model.train()` once per epoch)."""
        group_size, last = accumulation_group(i, self.plan.micro_steps_per_epoch, self.accum_steps)
        # counted on the host tensor the loader gives: no device round trip per micro-batch
        corrupt = 0 if valid is None else len(label) - int(valid.sum())
        x = self.prepare(video, aug_params)
        y = label.to(self.device, non_blocking=True)
        keep = valid.bool().to(self.device, non_blocking=True) if 0 < corrupt < len(label) else None
        sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
        with sync:
            loss, correct, scored = self._forward(x, y, keep, nothing_valid=corrupt == len(label))
            self.scaler.scale(loss / group_size).backward()
        if last:
            self._optimizer_step()
        return StepOutput(loss=loss.item() if scored else 0.0, correct=correct, scored=scored, corrupt=corrupt,
                          stepped=last)

    def prepare(self, video: torch.Tensor, aug_params: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 clips (or, with `aug_params`, windows) -> normalised float32 clips on the device."""
        x = video.to(self.device, non_blocking=True)
        if aug_params is not None:
            if self.augment is None:
                raise ValueError("the batch carries aug_params (augment.on_device) but this TrainStep has no "
                                 "DeviceAugment: pass augment=DeviceAugment(cfg.data.input_size)")
            x = self.augment(x, aug_params)  # float32, the CPU path's uint8 values
        return normalize(x)

    def _forward(self, x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor | None,
                 nothing_valid: bool) -> tuple[torch.Tensor, int, int]:
        if nothing_valid:  # only corrupt clips: a zero-loss pass keeps DDP's collectives in step
            with self.autocast():
                return self.model(x).float().sum() * 0.0, 0, 0
        if keep is not None:
            x, y = x[keep], y[keep]
        x_mixed, target = self.mixup(x, y)
        with self.autocast():
            logits = self.model(x_mixed)
        loss = self.criterion(logits.float(), target)
        return loss, int((logits.argmax(1) == y).sum()), len(y)

    def _optimizer_step(self) -> None:
        if self.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.bare.parameters(), self.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        self.scheduler.step_update(self.global_step)
        if self.ema is not None:
            self.ema.update(self.bare, step=self.global_step)

    def state_dict(self) -> dict[str, Any]:
        """Everything the step needs to continue exactly where it stopped."""
        return {
            "model": self.bare.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "global_step": self.global_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bare.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.module.load_state_dict(state["ema"])
        self.global_step = state["global_step"]
