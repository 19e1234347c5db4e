"""Clip decoding, frame sampling, test views and augmentation on the real videos in ../shared."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support import VIDEOS
from vfn.data.clips import (
    VideoMixup,
    apply_augment_params,
    decode_test_views,
    decode_train_clip,
    draw_augment_params,
    eval_boxes,
    normalize,
    resize_short_side,
)
from vfn.data.video import (
    AugmentSpec,
    ClipSpec,
    CorruptVideoError,
    eval_indices,
    open_video,
    read_frames,
    segment_indices,
    train_indices,
)

GOOD = ["kinetics_arm_wrestling.mp4", "kinetics_yoga.mp4", "flipping_a_pancake.mkv", "short_test.avi",
        "one_second.mp4", "rotated_90.mov"]


def _bytes(name: str) -> bytes:
    return (VIDEOS / name).read_bytes()


@pytest.mark.parametrize("name", GOOD)
def test_every_shared_video_gives_train_clip_and_test_views(name, shared_dir):
    data = _bytes(name)
    x = decode_train_clip(data, ClipSpec(num_frames=8, input_size=112), AugmentSpec(), np.random.default_rng(0))
    assert x.shape == (8, 3, 112, 112) and x.dtype == np.uint8
    assert x.std() > 1  # real picture content, not a blank frame
    v = decode_test_views(data, ClipSpec(num_frames=8, input_size=112, num_clips=2, num_crops=3))
    assert v.shape == (6, 8, 3, 112, 112) and v.dtype == np.uint8


def test_corrupt_video_raises_corrupt_video_error(shared_dir):
    data = _bytes("corrupted.mp4")
    with pytest.raises(CorruptVideoError):
        decode_train_clip(data, ClipSpec(input_size=64), AugmentSpec(), np.random.default_rng(0))
    with pytest.raises(CorruptVideoError):
        decode_test_views(data, ClipSpec(input_size=64))
    with pytest.raises(CorruptVideoError):
        open_video(b"this is not a video at all" * 10)


def test_rotation_metadata_is_applied(shared_dir):
    # rotated_90.mov is coded 568x320 (w x h) with a 90 degree rotation: frames come out portrait
    vr = open_video(_bytes("rotated_90.mov"))
    assert len(vr) == 3 and vr[0].shape == (568, 320, 3)


def test_segment_sampling_one_random_frame_per_segment():
    n, t = 300, 8
    seg = n / t
    seen = set()
    for s in range(50):
        idx = segment_indices(n, t, np.random.default_rng(s))
        assert all(int(i * seg) <= v < int((i + 1) * seg) + 1 for i, v in enumerate(idx))
        seen.add(tuple(idx))
    assert len(seen) > 40  # really random within segments
    # frame_interval has no effect in segment mode (as in the released configs)
    a = train_indices(n, ClipSpec(frame_interval=2), np.random.default_rng(3))
    b = train_indices(n, ClipSpec(frame_interval=8), np.random.default_rng(3))
    assert np.array_equal(a, b)


def test_short_videos_repeat_frames_in_order():
    idx = segment_indices(3, 8, np.random.default_rng(0))
    assert idx.tolist() == sorted(idx.tolist()) and set(idx.tolist()) == {0, 1, 2}
    dense = train_indices(10, ClipSpec(num_frames=8, frame_interval=4, sampling="dense"), np.random.default_rng(0))
    assert dense.tolist() == [0, 4, 8, 9, 9, 9, 9, 9]
    assert eval_indices(3, ClipSpec(num_frames=8, num_clips=2)).max() <= 2


def test_dense_sampling_uses_interval_from_random_start():
    clip = ClipSpec(num_frames=8, frame_interval=4, sampling="dense")
    starts = set()
    for s in range(20):
        idx = train_indices(280, clip, np.random.default_rng(s))
        assert np.all(np.diff(idx) == 4) and idx[-1] < 280
        starts.add(int(idx[0]))
    assert len(starts) > 10


def test_test_indices_are_deterministic_and_evenly_offset():
    clip = ClipSpec(num_frames=8, num_clips=4)
    a, b = eval_indices(300, clip), eval_indices(300, clip)
    assert np.array_equal(a, b) and a.shape == (4, 8)
    offsets = a[:, 0]
    assert np.all(np.diff(offsets) > 0) and len(set(np.diff(offsets).tolist())) <= 2  # evenly spaced
    dense = eval_indices(300, ClipSpec(num_frames=8, frame_interval=4, sampling="dense", num_clips=3))
    assert np.all(np.diff(dense, axis=1) == 4) and np.all(np.diff(dense[:, 0]) > 0)


def test_test_views_are_deterministic_and_three_crops_differ(shared_dir):
    data = _bytes("kinetics_arm_wrestling.mp4")
    clip = ClipSpec(num_frames=4, input_size=64, num_clips=2, num_crops=3)
    v1, v2 = decode_test_views(data, clip), decode_test_views(data, clip)
    assert np.array_equal(v1, v2)
    assert not np.array_equal(v1[0], v1[2])  # left vs right crop
    assert not np.array_equal(v1[0], v1[3])  # clip 0 vs clip 1
    assert eval_boxes(256, 340, clip) == [(0, 0, 256, 256), (0, 42, 256, 256), (0, 84, 256, 256)]
    centre = ClipSpec(input_size=224).resize_short
    assert centre == 256 and eval_boxes(256, 340, ClipSpec(input_size=224)) == [(16, 58, 224, 224)]


def test_augmentation_is_deterministic_under_a_seed_and_varies_across_seeds(shared_dir):
    data = _bytes("one_second.mp4")
    clip, aug = ClipSpec(num_frames=4, input_size=64), AugmentSpec()
    a = decode_train_clip(data, clip, aug, np.random.default_rng(7))
    b = decode_train_clip(data, clip, aug, np.random.default_rng(7))
    c = decode_train_clip(data, clip, aug, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_flip_probability_is_respected(shared_dir):
    data = _bytes("short_test.avi")
    clip = ClipSpec(num_frames=4, input_size=64)
    base = dict(color_jitter_prob=0.0, grayscale_prob=0.0)
    no_flip = decode_train_clip(data, clip, AugmentSpec(flip_prob=0.0, **base), np.random.default_rng(1))
    flip = decode_train_clip(data, clip, AugmentSpec(flip_prob=1.0, **base), np.random.default_rng(1))
    assert np.array_equal(flip, no_flip[..., ::-1])


def test_grayscale_and_no_augmentation(shared_dir):
    data = _bytes("kinetics_yoga.mp4")
    clip = ClipSpec(num_frames=4, input_size=64)
    gray = decode_train_clip(data, clip, AugmentSpec(grayscale_prob=1.0, color_jitter_prob=0.0),
                             np.random.default_rng(0))
    assert np.array_equal(gray[:, 0], gray[:, 1]) and np.array_equal(gray[:, 1], gray[:, 2])
    plain = decode_train_clip(data, clip, None, np.random.default_rng(0))
    assert plain.shape == (4, 3, 64, 64) and not np.array_equal(plain[:, 0], plain[:, 1])


def test_spec_validation():
    with pytest.raises(ValueError, match="sampling"):
        ClipSpec(sampling="uniform")
    with pytest.raises(ValueError, match="num_crops"):
        ClipSpec(num_crops=2)
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentSpec(flip_prob=1.5)


def test_normalize_matches_imagenet_statistics():
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    y = normalize(x)
    assert y.dtype == torch.float32
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224,
                                                       (1 - 0.406) / 0.225]))


def test_video_mixup_shapes_targets_and_shared_cutmix_box():
    torch.manual_seed(0)
    np.random.seed(0)
    b, t, n_cls = 4, 3, 5
    x = torch.stack([torch.full((t, 3, 16, 16), float(i)) for i in range(b)])
    y = torch.arange(b) % n_cls
    cutmix = VideoMixup(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, label_smoothing=0.1, num_classes=n_cls)
    xm, target = cutmix(x.clone(), y)
    assert xm.shape == x.shape and target.shape == (b, n_cls)
    assert torch.allclose(target.sum(1), torch.ones(b))
    # the pasted box is the same in every frame and channel of a clip
    changed = xm[0] != x[0]
    assert changed.any() and torch.equal(changed, changed[:1, :1].expand_as(changed))
    off = VideoMixup(mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.1, num_classes=n_cls)
    same, t_off = off(x.clone(), y)
    assert torch.equal(same, x) and torch.allclose(t_off.max(1).values, torch.full((b,), 0.92))
    odd, t_odd = VideoMixup(num_classes=n_cls)(x[:3].clone(), y[:3])
    assert odd.shape == (3, t, 3, 16, 16) and t_odd.shape == (3, n_cls)


def test_colour_jitter_matches_torchvision_for_brightness_contrast_saturation(shared_dir):
    import torchvision.transforms.v2.functional as TF

    from vfn.data.clips import apply_color, draw_color_params

    x = torch.from_numpy(decode_test_views(_bytes("kinetics_yoga.mp4"), ClipSpec(num_frames=2, input_size=64))[0])
    aug = AugmentSpec(color_jitter=0.4, hue=0.0, color_jitter_prob=1.0, grayscale_prob=0.0)
    for seed in range(4):
        ours = apply_color(x, draw_color_params(aug, np.random.default_rng(seed)))
        rng = np.random.default_rng(seed)  # replay the draws: apply?, 3 factors, hue, order
        rng.random()
        factors = [rng.uniform(0.6, 1.4) for _ in range(3)]
        rng.uniform(0, 0)
        ref = x.float() / 255
        for op in rng.permutation(4):
            if op < 3:
                ref = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation][op](ref, factors[op])
        ref = (ref * 255).round().to(torch.uint8)
        assert (ours.int() - ref.int()).abs().max() <= 2, seed


def test_train_clip_is_the_drawn_parameters_applied(shared_dir):
    """One sampler for both augmentation paths: `decode_train_clip` draws frames, then
    `draw_augment_params` (box, flip, colour), then applies them; the on-device path replays it."""
    data, clip, aug = _bytes("kinetics_yoga.mp4"), ClipSpec(num_frames=4, input_size=64), AugmentSpec()
    for seed in range(3):
        rng = np.random.default_rng(seed)
        vr = open_video(data)
        frames = read_frames(vr, train_indices(len(vr), clip, rng))
        params = draw_augment_params(*frames.shape[1:3], clip, aug, rng)
        ours = decode_train_clip(data, clip, aug, np.random.default_rng(seed))
        assert np.array_equal(ours, apply_augment_params(frames, params, clip.input_size).numpy())


def test_resize_is_torchvisions_uint8_resize():
    """`clips.resize` calls torch's kernel directly; torchvision's `resize` gives the same bytes."""
    import torchvision.transforms.v2.functional as TF

    from vfn.data.clips import resize

    gen = torch.Generator().manual_seed(0)
    for t, h, w, size in [(8, 256, 340, [224, 224]), (1, 300, 200, [224, 224]), (4, 240, 320, [256, 341]),
                          (2, 100, 90, [224, 224])]:
        x = torch.randint(0, 256, (t, h, w, 3), dtype=torch.uint8, generator=gen).permute(0, 3, 1, 2)
        for layout in (x, x.contiguous()):
            assert torch.equal(resize(layout, size), TF.resize(layout, size, antialias=True)), (t, h, w, size)


def test_resize_short_side_keeps_frames_already_there():
    frames = np.random.default_rng(0).integers(0, 256, (2, 320, 426, 3), dtype=np.uint8)
    assert resize_short_side(frames, 256).shape == (2, 256, 341, 3)
    assert resize_short_side(frames.transpose(0, 2, 1, 3), 256).shape == (2, 341, 256, 3)
    assert resize_short_side(frames, 320) is frames
