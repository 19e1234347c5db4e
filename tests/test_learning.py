"""The laptop design ablation in miniature, without Ray: on the synthetic order-sensitive classes the
quickstart's model learns the motion cue, and the `spatial` design (time only at the final average)
cannot. Fails if a temporal branch stops carrying frame order, or the `simple` style stops being
learnable from scratch. It trains with the platform's own step (`step.TrainStep`), as the Ray
worker does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vfn.platform.commands.quickstart import SYNTH_FRAMES, SYNTH_SIZE, SYNTH_STYLE, build_config
from vfn.platform.data.clips import normalize
from vfn.platform.data.synth import render_video
from vfn.platform.step import Plan, TrainStep

NUM_CLASSES, TRAIN, VAL, STEPS, BATCH = 4, 960, 160, 400, 16


@pytest.fixture(scope="module")
def clips():
    # rendered uint8 frames (no MP4 round trip), as decode tasks deliver them; label i % 4 keeps
    # the classes balanced
    frames = np.stack([render_video(i % NUM_CLASSES, np.random.default_rng([0, i]), SYNTH_SIZE, SYNTH_FRAMES,
                                    SYNTH_STYLE) for i in range(TRAIN + VAL)])
    x = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).contiguous()
    y = torch.arange(TRAIN + VAL) % NUM_CLASSES
    return x[:TRAIN], y[:TRAIN], x[TRAIN:], y[TRAIN:]


def train_and_validate(design: str, clips, tmp_path) -> float:
    """The quickstart recipe through the platform's training step, fed from memory."""
    cfg = build_config(tmp_path, tmp_path / "data", [f"model.design={design}"])
    x_train, y_train, x_val, y_val = clips
    plan = Plan(train_videos=TRAIN, val_videos=VAL, micro_steps_per_epoch=STEPS, steps_per_epoch=STEPS,
                total_steps=STEPS, warmup_steps=STEPS // 10, lr=cfg.scaled_lr)
    step = TrainStep(cfg, plan, torch.device("cpu"))
    order = torch.Generator().manual_seed(0)
    for i in range(STEPS):
        idx = torch.randint(0, len(x_train), (BATCH,), generator=order)
        step(x_train[idx], y_train[idx], None, i)
    assert step.global_step == STEPS
    step.bare.eval()
    with torch.no_grad():
        return (step.bare(normalize(x_val)).argmax(1) == y_val).float().mean().item()


@pytest.mark.slow
def test_temporal_designs_learn_frame_order_and_spatial_cannot(clips, tmp_path):
    parallel = train_and_validate("parallel", clips, tmp_path)
    spatial = train_and_validate("spatial", clips, tmp_path)
    # chance is 25%; spatial sees the same frames in either order, so at best it tells the two pairs
    # apart, never the members of a pair
    assert parallel > 0.9, parallel
    assert spatial < 0.45, spatial
