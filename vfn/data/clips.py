"""Encoded video bytes -> model input clips: crops, flips, colour, the decode entry points. Pure
functions, no Ray. Specs, frame sampling and frame reading live in `video` (no torch there).

Test views are deterministic: `num_clips` evenly offset clips x `num_crops` crops (1 centre crop
after a short-side resize to `input_size*256/224`, or 3 crops along the long side after a
short-side resize to `input_size`), in clip-major order. The released code draws its test
clips at random, so its scores move between runs; these do not.

Training augmentation (the paper's recipe): short-side resize to `input_size*256/224`, random
resized crop to `input_size`, horizontal flip, colour jitter and grayscale with probabilities.
The same parameters apply to every frame of a clip. Crop and resize are fused (the crop box is
mapped back to the decoded frame, then one antialiased resize), which is cheaper and equal up to
interpolation. Normalisation happens later, on the training device (`normalize`).

Every random choice of a training clip is drawn by one function (`draw_augment_params`), so the
two places that can apply it agree: the CPU path here (`decode_train_clip`) and the on-device
path (`augment.on_device`), where the decode task only decodes, brings frames to the short side
`resize_short` and slices a fixed window that holds the crop box (`decode_train_window`), and
`device_augment.DeviceAugment` crops, flips and colours whole batches on the training device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from vfn.data.video import (
    AugmentParams,
    AugmentSpec,
    ClipSpec,
    ColorParams,
    eval_indices,
    open_video,
    read_frames,
    train_indices,
    train_window_shape,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ---------------------------------------------------------------- spatial ops


def resize(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, C, *size), antialiased bilinear: the kernel torchvision's `resize`
    calls for uint8 on the CPU, without importing torchvision (~1.5 s of CPU in every decode process)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def crop_resize(frames: np.ndarray, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """frames uint8 (T, H, W, 3), box (top, left, h, w) -> uint8 tensor (T, 3, size, size)."""
    top, left, h, w = box
    x = torch.from_numpy(frames[:, top:top + h, left:left + w]).permute(0, 3, 1, 2)
    if (h, w) != (size, size):
        # uint8 + antialias has a fast path in torch; memory_format keeps it cheap
        x = resize(x.contiguous(memory_format=torch.channels_last), [size, size])
    return x.contiguous()


def random_resized_box(height: int, width: int, clip: ClipSpec, aug: AugmentSpec,
                       rng: np.random.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box on the short-side-resized frame, mapped back to (height, width)."""
    r = clip.resize_short / min(height, width)
    rh, rw = height * r, width * r
    area = rh * rw
    log_ratio = (math.log(aug.ratio[0]), math.log(aug.ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(aug.scale[0], aug.scale[1])
        ar = math.exp(rng.uniform(*log_ratio))
        w = math.sqrt(target * ar)
        h = math.sqrt(target / ar)
        if 0 < w <= rw and 0 < h <= rh:
            top = rng.uniform(0, rh - h)
            left = rng.uniform(0, rw - w)
            break
    else:  # fall back to a centre crop within the ratio bounds
        in_ratio = rw / rh
        if in_ratio < aug.ratio[0]:
            w, h = rw, rw / aug.ratio[0]
        elif in_ratio > aug.ratio[1]:
            h, w = rh, rh * aug.ratio[1]
        else:
            w, h = rw, rh
        top, left = (rh - h) / 2, (rw - w) / 2
    return _to_pixels(top / r, left / r, h / r, w / r, height, width)


def _to_pixels(top, left, h, w, height, width) -> tuple[int, int, int, int]:
    h = max(1, min(height, int(round(h))))
    w = max(1, min(width, int(round(w))))
    top = min(max(0, int(round(top))), height - h)
    left = min(max(0, int(round(left))), width - w)
    return top, left, h, w


def eval_boxes(height: int, width: int, clip: ClipSpec) -> list[tuple[int, int, int, int]]:
    """1 centre crop after resize to resize_short, or 3 crops along the long side after resize to input_size."""
    short = min(height, width)
    if clip.num_crops == 1:
        side = short * clip.input_size / clip.resize_short
        return [_to_pixels((height - side) / 2, (width - side) / 2, side, side, height, width)]
    side = short  # short side resized to input_size: a crop spans it
    if width >= height:
        lefts = [0, (width - side) / 2, width - side]
        return [_to_pixels(0, left, side, side, height, width) for left in lefts]
    tops = [0, (height - side) / 2, height - side]
    return [_to_pixels(top, 0, side, side, height, width) for top in tops]


GRAY_WEIGHTS = (0.299, 0.587, 0.114)
_RGB2YIQ = np.array([GRAY_WEIGHTS, [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


def _mix_channels(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(k, 3) matrix applied to the channels of float (T, 3, H, W) -> (T, k, H, W); a matmul is
    several times faster than per-channel arithmetic or einsum here."""
    t, _, h, w = x.shape
    return (m @ x.reshape(t, 3, h * w)).reshape(t, m.shape[0], h, w)


def gray_level(x: torch.Tensor) -> torch.Tensor:
    """float (T, 3, H, W) -> (T, 1, H, W) luma (ITU-R 601, as torchvision's rgb_to_grayscale)."""
    return _mix_channels(torch.tensor([GRAY_WEIGHTS]), x)


def hue_matrix(shift: float) -> torch.Tensor:
    """Hue rotation as one 3x3 RGB matrix (rotation of the I/Q chroma plane; `shift` in turns)."""
    c, s = math.cos(2 * math.pi * shift), math.sin(2 * math.pi * shift)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return torch.from_numpy((_YIQ2RGB @ rot @ _RGB2YIQ).astype(np.float32))


def draw_color_params(aug: AugmentSpec, rng: np.random.Generator) -> ColorParams:
    """The colour draws, in the rng order every path shares: apply?, 3 factors, hue, order, gray?"""
    jitter = aug.color_jitter_prob > 0 and rng.random() < aug.color_jitter_prob
    factors, order = ColorParams.factors, ColorParams.order
    if jitter:
        s = aug.color_jitter
        factors = tuple(rng.uniform(max(0.0, 1 - s), 1 + s) for _ in range(3)) + (rng.uniform(-aug.hue, aug.hue),)
        order = tuple(int(op) for op in rng.permutation(4))
    gray = aug.grayscale_prob > 0 and rng.random() < aug.grayscale_prob
    return ColorParams(bool(jitter), tuple(float(f) for f in factors), order, bool(gray))


def apply_color(x: torch.Tensor, c: ColorParams) -> torch.Tensor:
    """Colour jitter (brightness, contrast, saturation, hue in `c.order`, clamped after each, as
    torchvision's ColorJitter) and grayscale, on uint8 (T, 3, H, W); uint8 out.

    Computed in float32 with blends and one 3x3 matrix for hue (YIQ rotation, as GPU loaders do)
    instead of torchvision's uint8 path with an HSV round trip, which costs ~4x the decode."""
    if not (c.jitter or c.gray):
        return x
    y = x.float()
    if c.jitter:
        for op in c.order:
            f = c.factors[op]
            if op == 0:  # brightness
                y.mul_(f)
            elif op == 1:  # contrast: blend with each frame's mean gray level
                m = gray_level(y).mean(dim=(-3, -2, -1), keepdim=True)
                y.mul_(f).add_((1 - f) * m)
            elif op == 2:  # saturation: blend with the grayscale image
                g = gray_level(y)
                y.mul_(f).add_((1 - f) * g)
            elif f != 0:  # hue
                y = _mix_channels(hue_matrix(f), y)
            y.clamp_(0, 255)
    if c.gray:
        y = gray_level(y).expand(-1, 3, -1, -1).contiguous()
    return y.round_().to(torch.uint8)


# ---------------------------------------------------------------- public entry points


def draw_augment_params(height: int, width: int, clip: ClipSpec, aug: AugmentSpec,
                        rng: np.random.Generator) -> AugmentParams:
    """A clip's crop box (on the decoded height x width frame), flip and colour draws, in the rng
    order of the original CPU pipeline: box, flip?, colour (`draw_color_params`)."""
    box = random_resized_box(height, width, clip, aug, rng)
    flip = aug.flip_prob > 0 and rng.random() < aug.flip_prob
    return AugmentParams(box, bool(flip), draw_color_params(aug, rng))


def apply_augment_params(frames: np.ndarray, p: AugmentParams, size: int) -> torch.Tensor:
    """The CPU path: uint8 frames (T, H, W, 3) -> augmented uint8 clip (T, 3, size, size)."""
    x = crop_resize(frames, tuple(int(v) for v in p.box), size)
    if p.flip:
        x = x.flip(-1)
    return apply_color(x, p.color)


def decode_train_clip(data: bytes, clip: ClipSpec, aug: AugmentSpec | None,
                      rng: np.random.Generator, num_threads: int = 1) -> np.ndarray:
    """Encoded video -> one augmented training clip, uint8 (T, 3, S, S).

    `aug=None` gives the un-augmented training clip (random frames, centre crop).
    """
    vr = open_video(data, num_threads)
    frames = read_frames(vr, train_indices(len(vr), clip, rng))
    _, height, width, _ = frames.shape
    if aug is None:
        return crop_resize(frames, eval_boxes(height, width, clip)[0], clip.input_size).numpy()
    p = draw_augment_params(height, width, clip, aug, rng)
    return np.ascontiguousarray(apply_augment_params(frames, p, clip.input_size).numpy())


# ---------------------------------------------------------------- the on-device path's decode side


def resize_short_side(frames: np.ndarray, short: int) -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (T, h, w, 3) with min(h, w) == short (antialiased); as is when
    it already is (shards written at the training short side)."""
    _, height, width, _ = frames.shape
    if min(height, width) == short:
        return frames
    r = short / min(height, width)
    size = [short, max(1, round(width * r))] if height <= width else [max(1, round(height * r)), short]
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # a channels_last view: torch's fast uint8 path
    return resize(x, size).permute(0, 2, 3, 1).numpy()


def window_origin(start: float, length: float, extent: int, size: int) -> int:
    """First pixel of a `size`-long window over [0, extent) that holds [start, start + length)."""
    if extent <= size:
        return 0
    return int(min(max(0, math.floor(start)), extent - size))


def slice_window(frames: np.ndarray, box: tuple[float, float, float, float],
                 shape: tuple[int, int]) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """uint8 (T, H, W, 3) and a crop box -> the (height, width) = `shape` window that holds the box,
    uint8 (T, *shape, 3), zero-padded where the frame is smaller, and the box relative to it. The
    window keeps the decoder's channels-last layout: the device permutes for free what would cost
    this core a strided copy (0.6 ms per 8x256x342 clip, 9x the plain copy)."""
    t, height, width, _ = frames.shape
    top, left, h, w = box
    wy, wx = window_origin(top, h, height, shape[0]), window_origin(left, w, width, shape[1])
    part = frames[:, wy:wy + shape[0], wx:wx + shape[1]]
    out = np.zeros((t, *shape, 3), np.uint8)
    out[:, :part.shape[1], :part.shape[2]] = part
    # a box longer than the window (sub-pixel rounding of a resized frame) is cut to it
    top, left = top - wy, left - wx
    return out, (top, left, min(h, shape[0] - top), min(w, shape[1] - left))


def landscape(frames: np.ndarray, box: tuple[float, float, float, float]
              ) -> tuple[np.ndarray, tuple[float, float, float, float], bool]:
    """(frames, box, transposed): a portrait frame (and its box) transposed, so that every clip's
    window has the same landscape shape; a view, nothing is copied."""
    if frames.shape[1] <= frames.shape[2]:
        return frames, box, False
    top, left, h, w = box
    return frames.transpose(0, 2, 1, 3), (left, top, w, h), True


def decode_train_window(data: bytes, clip: ClipSpec, aug: AugmentSpec, rng: np.random.Generator,
                        num_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Encoded video -> (uint8 window (T, *train_window_shape, 3), float32 AugmentParams vector with
    the box relative to the window): the decode task's share of the on-device path. The draws are
    `decode_train_clip`'s, so the same rng state gives the same clip either way (up to
    interpolation when the frame's short side is not `clip.resize_short`)."""
    vr = open_video(data, num_threads)
    frames = read_frames(vr, train_indices(len(vr), clip, rng))
    _, height, width, _ = frames.shape
    p = draw_augment_params(height, width, clip, aug, rng)
    frames = resize_short_side(frames, clip.resize_short)
    sy, sx = frames.shape[1] / height, frames.shape[2] / width
    top, left, h, w = p.box
    box = (top * sy, left * sx, min(h * sy, frames.shape[1] - top * sy), min(w * sx, frames.shape[2] - left * sx))
    frames, box, transposed = landscape(frames, box)
    window, box = slice_window(frames, box, train_window_shape(clip, aug))
    return window, replace(p, box=box, transposed=transposed).to_vector()


def decode_test_views(data: bytes, clip: ClipSpec, num_threads: int = 1) -> np.ndarray:
    """Encoded video -> deterministic test views, uint8 (V, T, 3, S, S), V = num_clips * num_crops,
    clip-major (all crops of clip 0, then clip 1, ...)."""
    vr = open_video(data, num_threads)
    idx = eval_indices(len(vr), clip)  # (C, T)
    frames = read_frames(vr, idx)  # (C*T, H, W, 3), decoded once
    _, height, width, _ = frames.shape
    frames = frames.reshape(clip.num_clips, clip.num_frames, height, width, 3)
    boxes = eval_boxes(height, width, clip)
    views = [crop_resize(frames[c], box, clip.input_size) for c in range(clip.num_clips) for box in boxes]
    return torch.stack(views).numpy()


def normalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 normalised, on x's device (do it after the copy to the GPU)."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(3, 1, 1) * 255.0
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(3, 1, 1) * 255.0
    return (x.float() - m) / s


class VideoMixup:
    """timm's Mixup/CutMix (batch mode) for 5-D clips (B, T, 3, H, W): one lambda per batch and
    one CutMix box shared by every frame (the box must not move between frames).

    Returns (mixed float clips, soft targets with label smoothing). An odd batch mixes its first
    B-1 clips and gives the last one plain smoothed targets (timm requires even batches).
    """

    def __init__(self, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, label_smoothing: float = 0.1, num_classes: int = 1000):
        # LAZY: timm imports torchvision, which decode tasks must not load (see the module docstring)
        from timm.data import Mixup

        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.enabled = prob > 0 and (mixup_alpha > 0 or cutmix_alpha > 0)
        self._mixup = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=prob,
                            switch_prob=switch_prob, mode="batch", label_smoothing=label_smoothing,
                            num_classes=num_classes) if self.enabled else None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # LAZY: timm imports torchvision, which decode tasks must not load (see the module docstring)
        from timm.data.mixup import mixup_target

        if x.ndim != 5:
            raise ValueError(f"VideoMixup expects (B, T, 3, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError("VideoMixup needs float clips: normalize() them first")
        b, t, c, h, w = x.shape
        y = y.long()
        target = mixup_target(y, self.num_classes, lam=1.0, smoothing=self.label_smoothing)
        if not self.enabled or b < 2:
            return x, target
        n = b - (b % 2)
        flat = x[:n].reshape(n, t * c, h, w)  # timm's cutmix boxes index the last two dims
        flat, mixed = self._mixup(flat, y[:n])
        x = torch.cat([flat.reshape(n, t, c, h, w), x[n:]]) if n < b else flat.reshape(b, t, c, h, w)
        target = torch.cat([mixed, target[n:]]) if n < b else mixed
        return x, target
