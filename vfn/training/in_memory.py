"""Training without Ray on synthetic clips held in memory: the harness of the learning tests, the
temporal-init study (`scripts/temporal_init_study.py`) and the encoding benchmark (`vfn bench encoding`).

It trains with the platform's own step (`step.TrainStep`, as the Ray worker does), either on rendered
uint8 frames (`Clips`: no MP4 round trip, so what it finds about a design, an init or a recipe is
about the model alone), or on encoded videos (`Videos`: the bytes a shard stores, decoded for every
step by the functions `vfn train`'s decode tasks call, `decode_train_clip` and `decode_test_views`),
so that what the encoding of the bytes costs in accuracy shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vfn.config.schema import ExperimentConfig
from vfn.data.clips import decode_test_views, decode_train_clip, normalize
from vfn.data.synth import SynthStyle, render_video
from vfn.data.video import AugmentSpec, ClipSpec
from vfn.training.step import Plan, TrainStep


@dataclass(frozen=True)
class Clips:
    """uint8 clips (N, T, 3, H, W) and their labels, split into training and held-out."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


@dataclass(frozen=True)
class Videos:
    """Encoded videos (the bytes a shard row holds) and their labels, training and held-out."""

    train: list[bytes]
    y_train: torch.Tensor
    val: list[bytes]
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
    """`steps` optimiser steps of `cfg`'s recipe on rendered clips (batches drawn with replacement,
    seeded by `cfg.seed`), then top-1 of the trained weights on the held-out clips. `stop_after`
    ends the run early, on the `steps`-step schedule (the same first steps as the whole run)."""
    def held_out(net: torch.nn.Module) -> float:
        return (net(normalize(clips.x_val)).argmax(1) == clips.y_val).float().mean().item()

    return run_steps(cfg, len(clips.y_train), len(clips.y_val), lambda idx: (clips.x_train[idx], clips.y_train[idx]),
                     held_out, steps, batch, stop_after)


def train_on_videos(cfg: ExperimentConfig, videos: Videos, steps: int, batch: int) -> InMemoryRun:
    """As `train_in_memory`, on encoded videos decoded as `vfn train` decodes them: every step's
    clips freshly sampled and augmented from the bytes (`decode_train_clip`, the experiment's
    `augment`, an rng seeded by `cfg.seed`), the held-out top-1 over the experiment's test views
    (`decode_test_views`, the logits averaged over views as `vfn eval` does)."""
    clip = ClipSpec.from_config(cfg.data)
    aug = AugmentSpec.from_config(cfg.augment)
    views = ClipSpec.from_config(cfg.data, cfg.eval)
    rng = np.random.default_rng([cfg.seed, 1])

    def decoded(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.stack([decode_train_clip(videos.train[i], clip, aug, rng) for i in idx.tolist()])
        return torch.from_numpy(x), videos.y_train[idx]

    def held_out(net: torch.nn.Module) -> float:
        correct = 0
        for data, label in zip(videos.val, videos.y_val.tolist()):
            x = torch.from_numpy(decode_test_views(data, views))  # (V, T, 3, S, S)
            correct += int(net(normalize(x)).softmax(-1).mean(0).argmax() == label)
        return correct / len(videos.val)

    return run_steps(cfg, len(videos.y_train), len(videos.val), decoded, held_out, steps, batch)


def run_steps(cfg: ExperimentConfig, train_videos: int, val_videos: int,
              batch_of: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
              held_out: Callable[[torch.nn.Module], float], steps: int, batch: int,
              stop_after: int | None = None) -> InMemoryRun:
    """The loop both harnesses share: `TrainStep` over batches of training indices drawn with
    replacement (seeded by `cfg.seed`), then `held_out` of the trained weights."""
    plan = Plan(train_videos=train_videos, val_videos=val_videos, micro_steps_per_epoch=steps,
                steps_per_epoch=steps, total_steps=steps, warmup_steps=steps // 10, lr=cfg.scaled_lr)
    step = TrainStep(cfg, plan, torch.device("cpu"))
    step.model.train()
    order = torch.Generator().manual_seed(cfg.seed)
    losses = []
    for i in range(min(steps, stop_after or steps)):
        x, y = batch_of(torch.randint(0, train_videos, (batch,), generator=order))
        losses.append(step(x, y, None, i).loss)
    step.bare.eval()
    with torch.no_grad():
        top1 = held_out(step.bare)
    return InMemoryRun(losses, top1)


def left_chance(losses: list[float], num_classes: int, window: int = 25) -> int | None:
    """The first step where the loss's `window`-step moving average is below 90% of the chance
    loss ln(num_classes): where learning visibly started (None: never)."""
    threshold = 0.9 * math.log(num_classes)
    for i in range(window, len(losses) + 1):
        if sum(losses[i - window:i]) / window < threshold:
            return i
    return None
