"""The laptop design ablation in miniature, without Ray: on the synthetic order-sensitive classes the
quickstart's model learns the motion cue, and the `spatial` design (time only at the final average)
cannot. Fails if a temporal branch stops carrying frame order, or the `simple` style stops being
learnable from scratch. It trains with the platform's own step (`step.TrainStep`), as the Ray
worker does."""

from __future__ import annotations

import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import torch

from vfn.commands.quickstart import SYNTH_FRAMES, SYNTH_SIZE, SYNTH_STYLE, build_config
from vfn.data.synth import STYLES, SynthStyle
from vfn.training.in_memory import left_chance, render_clips, train_in_memory

NUM_CLASSES, TRAIN, VAL, STEPS, BATCH = 4, 960, 160, 250, 16  # parallel leaves chance at step ~120


@pytest.fixture(scope="module")
def clips():
    return render_clips(STYLES[SYNTH_STYLE], NUM_CLASSES, TRAIN, VAL, SYNTH_SIZE, SYNTH_FRAMES)


def quickstart_config(tmp_path, *overrides: str):
    return build_config(tmp_path, tmp_path / "data", list(overrides))


@pytest.mark.slow
def test_temporal_designs_learn_frame_order_and_spatial_cannot(clips, tmp_path):
    parallel = train_in_memory(quickstart_config(tmp_path, "model.design=parallel"), clips, STEPS, BATCH).val_top1
    spatial = train_in_memory(quickstart_config(tmp_path, "model.design=spatial"), clips, STEPS, BATCH).val_top1
    # chance is 25%; spatial sees the same frames in either order, so at best it tells the two pairs
    # apart, never the members of a pair
    assert parallel > 0.9, parallel
    assert spatial < 0.45, spatial


def left_chance_from_scratch(style: SynthStyle, overrides: tuple[str, ...], steps: int, stop_after: int) -> int | None:
    """The step where the loss leaves chance in the first `stop_after` steps of a single-threaded
    `steps`-step run, as the study's (README)."""
    torch.set_num_threads(1)
    clips = render_clips(style, NUM_CLASSES, TRAIN, VAL, SYNTH_SIZE, SYNTH_FRAMES)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = quickstart_config(Path(tmp), *overrides)
    return left_chance(train_in_memory(cfg, clips, steps, BATCH, stop_after).losses, NUM_CLASSES)


@pytest.mark.slow
def test_identity_temporal_init_learns_where_the_released_init_sits_at_chance():
    """#16: the quickstart's recipe on its data with objects of any brightness (the quickstart itself
    uses bright ones because learning stalls here), seed 0 of the README's study: on its 1000-step
    schedule the loss leaves chance at step 585 with the identity temporal init and at step 845 with
    the released one (held-out top-1 96% vs 25% after 1000). The test runs the first 700 steps.
    Single-threaded, as the study, so its figures hold on any machine with the pinned torch."""
    any_colours = STYLES["simple-any"]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        runs = {init: pool.submit(left_chance_from_scratch, any_colours, (f"model.temporal_init={init}", "seed=0"),
                                  1000, 700) for init in ("identity", "released")}
        left = {init: run.result() for init, run in runs.items()}
    assert left["identity"] is not None and left["released"] is None, left
