"""Training without Ray on synthetic clips held in memory: the harness of the learning tests and
the temporal-init study (`scripts/temporal_init_study.py`).

It trains with the platform's own step (`step.TrainStep`, as the Ray worker does) on rendered uint8
frames (no MP4 round trip, as decode tasks deliver them), so what it finds about a design, an init
or a recipe holds for `vfn train`; it only leaves out the data path, which other tests cover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vfn.platform.config import ExperimentConfig
from vfn.platform.data.clips import normalize
from vfn.platform.data.synth import SynthStyle, render_video
from vfn.platform.step import Plan, TrainStep


@dataclass(frozen=True)
class Clips:
    """uint8 clips (N, T, 3, H, W) and their labels, split into training and held-out."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@dataclass(frozen=True)
class InMemoryRun:
    losses: list[float]  # training loss of every step
    val_top1: float


def render_clips(style: SynthStyle, num_classes: int, train: int, val: int, size: int, frames: int,
                 data_seed: int = 0) -> Clips:
    """`train + val` rendered clips; label i % num_classes keeps the classes balanced."""
    video = np.stack([render_video(i % num_classes, np.random.default_rng([data_seed, i]), size, frames, style)
                      for i in range(train + val)])
    x = torch.from_numpy(video).permute(0, 1, 4, 2, 3).contiguous()
    y = torch.arange(train + val) % num_classes
    return Clips(x[:train], y[:train], x[train:], y[train:])


def train_in_memory(cfg: ExperimentConfig, clips: Clips, steps: int, batch: int,
                    stop_after: int | None = None) -> InMemoryRun:
    """`steps` optimiser steps of `cfg`'s recipe (batches drawn with replacement, seeded by
    `cfg.seed`), then top-1 of the trained weights on the held-out clips. `stop_after` ends the
    run early, on the `steps`-step schedule (the same first steps as the whole run)."""
    plan = Plan(train_videos=len(clips.y_train), val_videos=len(clips.y_val), micro_steps_per_epoch=steps,
                steps_per_epoch=steps, total_steps=steps, warmup_steps=steps // 10, lr=cfg.scaled_lr)
    step = TrainStep(cfg, plan, torch.device("cpu"))
    step.model.train()
    order = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for i in range(min(steps, stop_after or steps)):
        idx = torch.randint(0, len(clips.y_train), (batch,), generator=order)
        losses.append(step(clips.x_train[idx], clips.y_train[idx], None, i).loss)
    step.bare.eval()
    with torch.no_grad():
        top1 = (step.bare(normalize(clips.x_val)).argmax(1) == clips.y_val).float().mean().item()
    return InMemoryRun(losses, top1)


def left_chance(losses: list[float], num_classes: int, window: int = 25) -> int | None:
    """The first step where the loss's `window`-step moving average is below 90% of the chance
    loss ln(num_classes): where learning visibly started (None: never)."""
    threshold = 0.9 * math.log(num_classes)
    for i in range(window, len(losses) + 1):
        if sum(losses[i - window:i]) / window < threshold:
            return i
    return None
