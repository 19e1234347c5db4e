"""What a clip is and how its frames are read: the clip and augmentation specs, frame sampling,
and decord decoding from memory. numpy and decord only, no torch.

Separate from `clips` (crops, colour, the decode entry points: torch) because Ray's
coordinator processes never decode: Ray Train's controller, its DatasetManager and each dataset's
SplitCoordinator unpickle the pipeline's task functions and these specs, and importing torch there
costs ~2 s of CPU per process, several processes per run.

Decoding is decord from memory (`decord.VideoReader(io.BytesIO(data))`), reading only the
frames a clip needs. Every random choice comes from an explicit `numpy.random.Generator`,
so a clip is a pure function of (bytes, spec, rng state).

Sampling, as the paper's released code really does it (mmaction `SampleFrames` with
`clip_len=1, num_clips=NUM_FRAMES`):
  * "segment" (TSN): split the video into `num_frames` equal segments and take one random
    frame from each during training, the middle of each segment at test time. The released
    configs' `frame_interval` has no effect in this mode.
  * "dense": `num_frames` frames `frame_interval` apart from a random start.
Short videos never fail: segments narrower than a frame repeat frames, and a dense span longer
than the video repeats its last frame (order is kept, so temporal direction stays meaningful).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np

from vfn.errors import last_line


class CorruptVideoError(RuntimeError):
    """The bytes could not be opened or the needed frames could not be decoded."""


@dataclass(frozen=True)
class ClipSpec:
    num_frames: int = 8
    frame_interval: int = 4  # used by sampling="dense" only (segment sampling ignores it)
    sampling: Literal["segment", "dense"] = "segment"
    input_size: int = 224
    num_clips: int = 1  # test views: temporal clips
    num_crops: int = 1  # test views: 1 (centre) or 3 (along the long side)

    def __post_init__(self):
        if self.num_frames < 1 or self.frame_interval < 1 or self.input_size < 8:
            raise ValueError(f"invalid ClipSpec {self}: num_frames, frame_interval >= 1, input_size >= 8")
        if self.sampling not in ("segment", "dense"):
            raise ValueError(f"ClipSpec.sampling must be 'segment' or 'dense', got {self.sampling!r}")
        if self.num_clips < 1 or self.num_crops not in (1, 3):
            raise ValueError("ClipSpec needs num_clips >= 1 and num_crops in (1, 3), "
                             f"got {self.num_clips}, {self.num_crops}")

    @classmethod
    def from_config(cls, data, views=None) -> ClipSpec:
        """From an experiment's `data` section; with its `eval` section as `views`, the test views."""
        extra = dict(num_clips=views.num_clips, num_crops=views.num_crops) if views is not None else {}
        return cls(num_frames=data.num_frames, frame_interval=data.frame_interval, sampling=data.sampling,
                   input_size=data.input_size, **extra)

    @property
    def resize_short(self) -> int:
        """Short side before cropping: 256 for 224 inputs, as in the paper's pipeline."""
        return int(round(self.input_size * 256 / 224))

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops


@dataclass(frozen=True)
class AugmentSpec:
    flip_prob: float = 0.5  # 0 for direction-sensitive data (Something-Something, synthetic)
    color_jitter: float = 0.4  # brightness/contrast/saturation strength
    hue: float = 0.1
    color_jitter_prob: float = 0.8
    grayscale_prob: float = 0.2
    scale: tuple[float, float] = (0.08, 1.0)  # random resized crop: area fraction
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # random resized crop: aspect ratio

    @classmethod
    def from_config(cls, augment) -> AugmentSpec:
        """From an experiment's `augment` section (which holds these fields and more)."""
        return cls(**{f.name: tuple(v) if isinstance(v := getattr(augment, f.name), list) else v
                      for f in fields(cls)})

    def __post_init__(self):
        for name in ("flip_prob", "color_jitter_prob", "grayscale_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"AugmentSpec.{name} must be in [0, 1], got {v}")
        if not (0 < self.scale[0] <= self.scale[1] <= 1.0):
            raise ValueError(f"AugmentSpec.scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"AugmentSpec.ratio must satisfy 0 < lo <= hi, got {self.ratio}")


# ---------------------------------------------------------------- one training clip's random draws


@dataclass(frozen=True)
class ColorParams:
    """One clip's colour draw: jitter on/off, its factors and op order, grayscale on/off."""

    jitter: bool = False
    factors: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 0.0)  # brightness, contrast, saturation, hue
    order: tuple[int, int, int, int] = (0, 1, 2, 3)  # ops by position (0..3 as in `factors`)
    gray: bool = False


@dataclass(frozen=True)
class AugmentParams:
    """Every random choice of one training clip, drawn once (`draw_augment_params`) and applied by
    either path: on CPU in the decode task (`apply_augment_params`) or batched on the training
    device (`device_augment.DeviceAugment`, from `to_vector`)."""

    box: tuple[float, float, float, float]  # top, left, height, width of the crop, in frame pixels
    flip: bool = False
    color: ColorParams = ColorParams()
    transposed: bool = False  # on-device path: the window holds a portrait frame transposed (box too)

    def to_vector(self) -> np.ndarray:
        """float32 (PARAMS_SIZE,): box, flip, jitter, 4 factors, 4 op positions, gray, transposed."""
        c = self.color
        return np.array([*self.box, self.flip, c.jitter, *c.factors, *c.order, c.gray, self.transposed], np.float32)

    @classmethod
    def from_vector(cls, v) -> AugmentParams:
        v = [float(x) for x in v]
        color = ColorParams(bool(v[5]), tuple(v[6:10]), tuple(int(x) for x in v[10:14]), bool(v[14]))
        return cls(tuple(v[:4]), bool(v[4]), color, bool(v[15]))


PARAMS_SIZE = 16  # len(AugmentParams(...).to_vector())


def train_window_size(clip: ClipSpec, aug: AugmentSpec) -> int:
    """Longest side of any random-resized-crop box of a frame whose short side is
    `clip.resize_short`: short * max(ratio_hi, 1/ratio_lo) (342 for 224 inputs with the default
    ratios). The box's other side is at most the short side."""
    return math.ceil(clip.resize_short * max(aug.ratio[1], 1 / aug.ratio[0], 1.0) - 1e-6)


def train_window_shape(clip: ClipSpec, aug: AugmentSpec) -> tuple[int, int]:
    """(height, width) of the window a decode task ships per frame on the on-device path: it holds
    any crop box of a landscape frame at the training short side (portrait frames go transposed),
    (256, 342) for 224 inputs: 25% fewer bytes than a square that fits either orientation."""
    return clip.resize_short, train_window_size(clip, aug)


# ---------------------------------------------------------------- frame indices


def segment_indices(num_video_frames: int, num_frames: int, rng: np.random.Generator | None,
                    offset: float = 0.5) -> np.ndarray:
    """One frame per equal segment: random within the segment if `rng`, else at `offset` in [0, 1)."""
    n = int(num_video_frames)
    edges = np.arange(num_frames + 1) * (n / num_frames)
    lo = np.floor(edges[:-1]).astype(np.int64)
    hi = np.maximum(lo + 1, np.ceil(edges[1:]).astype(np.int64))  # exclusive; >= 1 frame wide
    if rng is not None:
        idx = lo + np.floor(rng.random(num_frames) * (hi - lo)).astype(np.int64)
    else:
        idx = np.floor(edges[:-1] + offset * (n / num_frames)).astype(np.int64)
    return np.clip(idx, 0, n - 1)


def dense_indices(num_video_frames: int, num_frames: int, frame_interval: int, start: int) -> np.ndarray:
    idx = start + np.arange(num_frames, dtype=np.int64) * frame_interval
    return np.minimum(idx, num_video_frames - 1)  # too short: repeat the last frame


def train_indices(num_video_frames: int, clip: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    n = int(num_video_frames)
    if clip.sampling == "segment":
        return segment_indices(n, clip.num_frames, rng)
    span = (clip.num_frames - 1) * clip.frame_interval + 1
    start = int(rng.integers(0, n - span + 1)) if n > span else 0
    return dense_indices(n, clip.num_frames, clip.frame_interval, start)


def eval_indices(num_video_frames: int, clip: ClipSpec) -> np.ndarray:
    """(num_clips, num_frames) deterministic, evenly offset frame indices."""
    n = int(num_video_frames)
    rows = []
    for k in range(clip.num_clips):
        if clip.sampling == "segment":
            rows.append(segment_indices(n, clip.num_frames, None, offset=(k + 0.5) / clip.num_clips))
        else:
            span = (clip.num_frames - 1) * clip.frame_interval + 1
            start = int((n - span) * (k + 0.5) / clip.num_clips) if n > span else 0
            rows.append(dense_indices(n, clip.num_frames, clip.frame_interval, start))
    return np.stack(rows)


# ---------------------------------------------------------------- decoding


def open_video(data: bytes, num_threads: int = 1):
    """A decord VideoReader over bytes in memory; CorruptVideoError if it cannot be opened."""
    import decord  # LAZY: decord only where videos are decoded (the guard child, vfn.data.guard)

    decord.logging.set_level(decord.logging.QUIET)  # ffmpeg's own messages for corrupt streams
    try:
        vr = decord.VideoReader(io.BytesIO(data), num_threads=num_threads)
    except Exception as e:  # decord raises DECORDError / RuntimeError with ffmpeg text
        raise CorruptVideoError(f"cannot open video: {last_line(e)}") from None
    if len(vr) < 1:
        raise CorruptVideoError("video has no frames")
    return vr


def read_frames(vr, indices: np.ndarray) -> np.ndarray:
    """Decode only the frames in `indices` (any order, repeats allowed) -> uint8 (N, H, W, 3)."""
    flat = np.asarray(indices, dtype=np.int64).reshape(-1)
    unique, inverse = np.unique(flat, return_inverse=True)
    try:
        frames = vr.get_batch(unique.tolist()).asnumpy()
    except Exception as e:
        raise CorruptVideoError(f"cannot decode frames: {last_line(e)}") from None
    if frames.ndim != 4 or frames.shape[0] != len(unique) or frames.shape[-1] != 3:
        raise CorruptVideoError(f"decoder returned frames of shape {frames.shape}")
    return frames[inverse]
