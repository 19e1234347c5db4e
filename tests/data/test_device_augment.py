"""On-device augmentation (`augment.on_device`) against the CPU path, on real decoded frames.

Tolerances, in uint8 levels: the crop-resize and the colour ops compute what the CPU path computes,
in float32 instead of torchvision's fixed-point uint8 kernel (and a different summation order), so
a value can round the other way: at most 1 level anywhere. End to end on a video whose short side
already is `resize_short` the same holds for each op, but a level of difference before a colour op
is scaled by its factors and can be clamped differently, so the bound there is on the mean
(~0.1-0.2 measured). A frame with another short side is resized to it first, on the device path only
(two resamplings instead of one fused one): a slightly softer picture, ~0.5 level on average,
tens of levels at a few sharp edges. A broken op (wrong box, flip, factor or order) moves the
mean by tens of levels.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.support import VIDEOS, tiny_experiment
from vfn.data.clips import (
    apply_augment_params,
    apply_color,
    crop_resize,
    decode_train_clip,
    decode_train_window,
    draw_augment_params,
    landscape,
    random_resized_box,
    resize_short_side,
    slice_window,
)
from vfn.data.device_augment import DeviceAugment, apply_color_batch, crop_resize_batch
from vfn.data.video import (
    PARAMS_SIZE,
    AugmentParams,
    AugmentSpec,
    ClipSpec,
    ColorParams,
    eval_indices,
    open_video,
    read_frames,
    train_indices,
    train_window_shape,
    train_window_size,
)

CLIP = ClipSpec(num_frames=4, input_size=112)
AUG = AugmentSpec()
SHAPE = train_window_shape(CLIP, AUG)  # (128, 171)


@pytest.fixture(scope="module")
def frames(shared_dir) -> np.ndarray:
    """4 real frames (kinetics_arm_wrestling.mp4, 256 x 340) at the clip's short side, uint8 (T, H, W, 3)."""
    vr = open_video((VIDEOS / "kinetics_arm_wrestling.mp4").read_bytes())
    return resize_short_side(read_frames(vr, eval_indices(len(vr), CLIP)[0]), CLIP.resize_short)


def windows_of(frames: np.ndarray, boxes: list) -> tuple[torch.Tensor, torch.Tensor]:
    """What decode tasks ship for these boxes, as `crop_resize_batch` takes it: float windows
    (B, T*3, H, W) and boxes in them (B, 4)."""
    cut = [slice_window(frames, box, SHAPE) for box in boxes]
    x = torch.from_numpy(np.stack([w for w, _ in cut])).permute(0, 1, 4, 2, 3).float()
    return x.reshape(len(boxes), -1, *SHAPE), torch.tensor([b for _, b in cut], dtype=torch.float32)


def cpu_crops(frames: np.ndarray, n: int) -> torch.Tensor:
    """n CPU-path crops of the frames, uint8 (n, T, 3, S, S), boxes from seeds 0..n-1."""
    boxes = [random_resized_box(*frames.shape[1:3], CLIP, AUG, np.random.default_rng(s)) for s in range(n)]
    return torch.stack([crop_resize(frames, box, CLIP.input_size) for box in boxes])


def test_the_window_holds_every_crop_box():
    assert train_window_shape(ClipSpec(input_size=224), AugmentSpec()) == (256, 342)
    assert train_window_size(ClipSpec(input_size=224), AugmentSpec(ratio=(0.5, 1.5))) == 512
    short = CLIP.resize_short
    for height, width in [(short, short), (short, 340), (400, short), (short, 1000), (1000, short)]:
        for s in range(300):
            box = random_resized_box(height, width, CLIP, AUG, np.random.default_rng(s))
            frames, box, transposed = landscape(np.zeros((1, height, width, 3), np.uint8), box)
            assert transposed == (height > width) and frames.shape[1] <= frames.shape[2]
            window, inside = slice_window(frames, box, SHAPE)
            assert window.shape == (1, *SHAPE, 3) and inside[2:] == box[2:]  # never cut
            assert 0 <= inside[0] <= SHAPE[0] - box[2] and 0 <= inside[1] <= SHAPE[1] - box[3]


def test_slice_window_pads_small_frames_and_keeps_the_box_content(frames):
    box = (5, 17, 100, 90)
    window, (top, left, h, w) = slice_window(frames, box, SHAPE)
    assert np.array_equal(window[:, top:top + h, left:left + w], frames[:, 5:105, 17:107])
    small, inside = slice_window(frames[:, :40, :50], (0, 0, 40, 50), SHAPE)
    assert inside == (0, 0, 40, 50) and small[:, 40:].max() == 0 and small[:, :, 50:].max() == 0


def test_crop_resize_matches_the_cpu_resize(frames):
    boxes = [random_resized_box(*frames.shape[1:3], CLIP, AUG, np.random.default_rng(s)) for s in range(16)]
    x, inside = windows_of(frames, boxes)
    ours = crop_resize_batch(x, inside, CLIP.input_size).round().reshape(16, CLIP.num_frames, 3, 112, 112)
    diff = (ours - cpu_crops(frames, 16).float()).abs()
    assert diff.max() <= 1 and diff.mean() < 0.3, (diff.max(), diff.mean())


def test_flip_is_per_clip(frames):
    box = (10, 30, 100, 120)
    x, inside = windows_of(frames, [box, box])
    out = crop_resize_batch(x, inside, CLIP.input_size, flip=torch.tensor([True, False])).round()
    assert torch.equal(out[0], out[1].flip(-1))
    cpu = crop_resize(frames, box, CLIP.input_size).flip(-1).reshape(-1, 112, 112)
    assert (out[0] - cpu.float()).abs().max() <= 1


def test_portrait_clips_ship_transposed_and_come_back_upright(frames):
    """Portrait frames travel transposed in the landscape window (`clips.landscape`); in a batch that
    mixes both orientations each crop, flip and colour equals the CPU path's on the upright frames."""
    portrait = np.ascontiguousarray(frames.transpose(0, 2, 1, 3))  # (T, 170, 128, 3)
    aug = AugmentSpec(flip_prob=0.5, color_jitter_prob=0.8)
    draws = [(f, draw_augment_params(*f.shape[1:3], CLIP, aug, np.random.default_rng(s)))
             for s, f in enumerate([portrait, portrait, frames, frames] * 3)]
    assert {p.flip for f, p in draws if f is portrait} == {True, False}
    shipped = []
    for f, p in draws:
        upright, box, transposed = landscape(f, p.box)
        window, box = slice_window(upright, box, SHAPE)
        shipped.append((window, replace(p, box=box, transposed=transposed).to_vector()))
    assert [bool(v[15]) for _, v in shipped] == [True, True, False, False] * 3
    ours = DeviceAugment(CLIP.input_size)(torch.from_numpy(np.stack([w for w, _ in shipped])),
                                          torch.from_numpy(np.stack([v for _, v in shipped])))
    cpu = torch.stack([apply_augment_params(f, p, CLIP.input_size) for f, p in draws]).float()
    diff = (ours - cpu).abs()
    assert diff.mean() < 0.5 and diff.mean(dim=(1, 2, 3, 4)).max() < 1.0, diff.mean(dim=(1, 2, 3, 4))


JITTER_ONLY = {  # one op with a real factor, the others at their identity
    "brightness": (1.3, 1.0, 1.0, 0.0),
    "contrast": (1.0, 0.65, 1.0, 0.0),
    "saturation": (1.0, 1.0, 1.4, 0.0),
    "hue": (1.0, 1.0, 1.0, 0.08),
}


@pytest.mark.parametrize("op", [*JITTER_ONLY, "grayscale"])
def test_each_colour_op_matches_the_cpu_path(frames, op):
    x = cpu_crops(frames, 4)
    orders = list(itertools.permutations(range(4)))[::6]  # the op at different positions per clip
    params = [ColorParams(jitter=op != "grayscale", factors=JITTER_ONLY.get(op, ColorParams.factors),
                          order=orders[i], gray=op == "grayscale") for i in range(4)]
    ours = apply_color_batch(x.float(), [AugmentParams((0, 0, 1, 1), False, c) for c in params])
    cpu = torch.stack([apply_color(x[i], params[i]) for i in range(4)])
    assert not torch.equal(cpu, x)  # the op does something
    assert (ours - cpu.float()).abs().max() <= 1


def test_clips_with_their_own_jitter_order_in_one_batch(frames):
    aug = AugmentSpec(color_jitter_prob=0.8, grayscale_prob=0.3)
    x = cpu_crops(frames, 12)
    params = [draw_augment_params(256, 340, CLIP, aug, np.random.default_rng(s)) for s in range(12)]
    assert len({p.color.order for p in params if p.color.jitter}) > 3 and any(not p.color.jitter for p in params)
    ours = apply_color_batch(x.float(), params)
    cpu = torch.stack([apply_color(x[i], p.color) for i, p in enumerate(params)])
    assert (ours - cpu.float()).abs().max() <= 1


def cpu_draws(data: bytes, clip: ClipSpec, aug: AugmentSpec, seed: int) -> AugmentParams:
    """The parameters `decode_train_clip` applies for this seed (its rng calls, replayed)."""
    rng = np.random.default_rng(seed)
    vr = open_video(data)
    idx = train_indices(len(vr), clip, rng)
    height, width = vr[0].shape[:2]
    assert len(idx) == clip.num_frames
    return draw_augment_params(height, width, clip, aug, rng)


@pytest.mark.parametrize("name, size, mean_tol, clip_tol", [
    ("kinetics_arm_wrestling.mp4", 224, 0.5, 1.0),  # 256 x 340: at the short side already (0.12, 0.18 measured)
    ("kinetics_yoga.mp4", 224, 1.5, 2.5),  # 320 x 426: resized to 256 x 341 first (0.54, 0.99)
    ("kinetics_arm_wrestling.mp4", 112, 3.0, 4.0),  # halved first (1.8, 2.3)
])
def test_end_to_end_matches_the_cpu_path(name, size, mean_tol, clip_tol, shared_dir):
    data, clip = (VIDEOS / name).read_bytes(), ClipSpec(num_frames=4, input_size=size, sampling="dense")
    seeds, shape = range(8), train_window_shape(clip, AUG)
    cpu = np.stack([decode_train_clip(data, clip, AUG, np.random.default_rng(s)) for s in seeds])
    shipped = [decode_train_window(data, clip, AUG, np.random.default_rng(s)) for s in seeds]
    for s, (window, vector) in zip(seeds, shipped):
        assert window.shape == (4, *shape, 3) and window.dtype == np.uint8
        assert vector.shape == (PARAMS_SIZE,) and vector.dtype == np.float32
        drawn, expected = AugmentParams.from_vector(vector).color, cpu_draws(data, clip, AUG, s)
        assert (drawn.jitter, drawn.order, drawn.gray) == (expected.color.jitter, expected.color.order,
                                                           expected.color.gray)
        assert bool(vector[4]) == expected.flip and np.allclose(drawn.factors, expected.color.factors, atol=1e-6)
    windows = torch.from_numpy(np.stack([w for w, _ in shipped]))
    ours = DeviceAugment(clip.input_size)(windows, torch.from_numpy(np.stack([v for _, v in shipped])))
    assert ours.dtype == torch.float32 and ours.shape == cpu.shape
    diff = (ours - torch.from_numpy(cpu).float()).abs()
    per_clip = diff.mean(dim=(1, 2, 3, 4))
    assert diff.mean() < mean_tol and per_clip.max() < clip_tol, per_clip


def test_parameter_rates_follow_the_augment_spec():
    """Both paths draw with `draw_augment_params`; its rates are the spec's."""
    aug = AugmentSpec(flip_prob=0.5, color_jitter_prob=0.8, grayscale_prob=0.2)
    draws = [draw_augment_params(256, 340, CLIP, aug, np.random.default_rng(s)) for s in range(4000)]
    assert all(np.array_equal(AugmentParams.from_vector(p.to_vector()).to_vector(), p.to_vector()) for p in draws)
    assert abs(np.mean([p.flip for p in draws]) - 0.5) < 0.03
    assert abs(np.mean([p.color.jitter for p in draws]) - 0.8) < 0.025
    assert abs(np.mean([p.color.gray for p in draws]) - 0.2) < 0.025
    boxes = np.array([p.box for p in draws], float)
    area = boxes[:, 2] * boxes[:, 3] / (256 * 340)
    ratio = boxes[:, 3] / boxes[:, 2]
    assert area.min() > 0.07 and ratio.min() > 0.74 and ratio.max() < 1.35
    torch.manual_seed(0)  # torchvision's own RandomResizedCrop sampler, for the shape of the distribution
    from torchvision.transforms import RandomResizedCrop

    ref = np.array([RandomResizedCrop.get_params(torch.empty(3, 256, 340), list(aug.scale), list(aug.ratio))
                    for _ in range(4000)], float)
    ref_area, ref_ratio = ref[:, 2] * ref[:, 3] / (256 * 340), ref[:, 3] / ref[:, 2]
    for ours, theirs in ((area, ref_area), (ratio, ref_ratio)):
        assert np.abs(np.quantile(ours, [0.1, 0.5, 0.9]) - np.quantile(theirs, [0.1, 0.5, 0.9])).max() < 0.03
    jittered = [p.color for p in draws if p.color.jitter]
    first = np.bincount([c.order[0] for c in jittered], minlength=4) / len(jittered)
    assert len({c.order for c in jittered}) == 24 and np.abs(first - 0.25).max() < 0.03
    factors = np.array([c.factors for c in jittered])
    assert factors[:, :3].min() >= 0.6 and factors[:, :3].max() <= 1.4 and np.abs(factors[:, 3]).max() <= 0.1


def test_a_corrupt_rows_params_give_a_blank_clip():
    params = torch.from_numpy(np.stack([AugmentParams((0.0, 0.0, *SHAPE)).to_vector()] * 2))
    out = DeviceAugment(CLIP.input_size)(torch.zeros(2, 4, *SHAPE, 3, dtype=torch.uint8), params)
    assert out.shape == (2, 4, 3, 112, 112) and torch.equal(out, torch.zeros_like(out))


def tiny_step(cfg, augment):
    from vfn.training.step import Plan, TrainStep

    plan = Plan(train_videos=4, val_videos=0, micro_steps_per_epoch=1, steps_per_epoch=1, total_steps=1,
                warmup_steps=0, lr=1e-3)
    return TrainStep(cfg, plan, torch.device("cpu"), augment=augment)


@pytest.mark.parametrize("setting, use_gpu, expected", [
    ("auto", True, True), ("auto", False, False), (True, False, True), (False, True, False),
])
def test_datasets_for_resolves_on_device(setting, use_gpu, expected, tiny_shards, tmp_path, monkeypatch):
    from vfn.config.schema import config_from_dict
    from vfn.data import pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "build_dataset", lambda shards, split, *a, **kw: seen.setdefault(split, kw))
    cfg = config_from_dict(tiny_experiment(tiny_shards, tmp_path, augment={"on_device": setting}))
    pipeline.datasets_for(cfg, use_gpu=use_gpu)
    assert seen["train"]["augment_on_device"] is expected
    assert "augment_on_device" not in seen["val"]  # evaluation views stay as they are


@pytest.mark.ray
def test_on_device_rows_and_a_train_step_on_cpu(ray_session, tiny_shards, tmp_path):
    from vfn.config.schema import config_from_dict
    from vfn.data.pipeline import datasets_for

    cfg = config_from_dict(tiny_experiment(tiny_shards, tmp_path, augment={"mixup_prob": 1.0, "on_device": True}))
    shape = train_window_shape(ClipSpec.from_config(cfg.data), AugmentSpec.from_config(cfg.augment))
    batch = next(iter(datasets_for(cfg, ("train",))["train"].iter_torch_batches(batch_size=4)))
    assert batch["video"].shape == (4, 4, *shape, 3) and batch["video"].dtype == torch.uint8
    assert batch["aug_params"].shape == (4, PARAMS_SIZE) and batch["aug_params"].dtype == torch.float32
    assert batch["valid"].all() and batch["label"].dtype == torch.int64
    step = tiny_step(cfg, DeviceAugment(cfg.data.input_size))
    step.model.train()
    x = step.prepare(batch["video"], batch["aug_params"])
    assert x.shape == (4, 4, 3, 32, 32) and x.dtype == torch.float32
    out = step(batch["video"], batch["label"], batch["valid"], 0, batch["aug_params"])
    assert out.stepped and np.isfinite(out.loss) and out.scored == 4
    with pytest.raises(ValueError, match="DeviceAugment"):
        tiny_step(cfg, None)(batch["video"], batch["label"], batch["valid"], 0, batch["aug_params"])
