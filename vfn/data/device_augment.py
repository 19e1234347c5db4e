"""Training augmentation on the training device, batched: the device half of `augment.on_device`.

Why: crop-resize and colour jitter cost a decode task's CPU core more than the decode of the sampled
frames does, while a GPU does them for a whole batch in about a millisecond. With
`augment.on_device` the decode task ships each clip as a fixed-size uint8 window that holds its crop
box (`clips.decode_train_window`; portrait frames transposed, so that every window is landscape)
plus the parameters it drew with the CPU path's own sampler (`video.AugmentParams.to_vector`);
`DeviceAugment` applies them to every clip of a batch at once, with the CPU path's semantics:

* crop + resize: the antialiased bilinear filter of torchvision's `resize` (the CPU path's), written
  as one resampling matrix per clip and axis and applied with two batched matmuls; the horizontal
  flip is the column matrix reversed (the row matrix for a transposed window, whose crop is then
  transposed back). Equal to the CPU path up to its fixed-point uint8 weights.
* colour: every jitter op and grayscale is a per-clip 3x3 channel matrix (contrast adds a weight of
  each frame's mean gray level). At each of the 4 positions every clip applies the op its own order
  puts there (the identity where it has no jitter), then clamps, as the CPU path does; values are
  rounded where the CPU path rounds to uint8, so `normalize` sees the same numbers.

Pure torch (no Ray, no decord) so it runs on a GPU image that has torch only. The parameters are
read on the host, where the loader leaves them, to build the small matrices: no device syncs.
Everything runs in float32 with autocast off, whatever precision the model trains in.
"""

from __future__ import annotations

import numpy as np
import torch

from .clips import GRAY_WEIGHTS, hue_matrix
from .video import AugmentParams

EYE = np.eye(3)
GRAY_ROWS = np.tile(np.array(GRAY_WEIGHTS), (3, 1))  # every channel <- the luma


def resize_weights(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int) -> torch.Tensor:
    """(B,) crop starts and lengths along one axis of an `in_size`-pixel window -> (B, out_size,
    in_size) matrices that resize each crop to `out_size` as torchvision's antialiased bilinear
    `resize` does (a triangle filter widened to the scale when downscaling, cut to the crop's own
    pixels and renormalised, as a resize of the cropped image sees no pixel outside it)."""
    opts = dict(device=start.device, dtype=torch.float32)
    start, length = start.float()[:, None, None], length.float()[:, None, None]
    scale = length / out_size
    i = torch.arange(out_size, **opts)[None, :, None]
    j = torch.arange(in_size, **opts)[None, None, :]
    centre = start + (i + 0.5) * scale  # of output pixel i, in window pixels
    w = (1 - (j + 0.5 - centre).abs() / scale.clamp(min=1.0)).clamp(min=0.0)
    w = w * ((j + 1 > start) & (j < start + length))  # pixels the (possibly fractional) box touches
    return w / w.sum(-1, keepdim=True).clamp(min=1e-12)


def crop_resize_batch(x: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None,
                      transposed: torch.Tensor | None = None) -> torch.Tensor:
    """float (B, N, H, W) windows and (B, 4) boxes (top, left, height, width in window pixels) ->
    float (B, N, size, size) crops; clips with `flip` (bool (B,)) mirrored left to right. Clips
    with `transposed` (bool (B,)) hold their frames transposed (`clips.landscape`): their crops
    are transposed back, and their flip mirrors the window's rows."""
    rows = resize_weights(boxes[:, 0], boxes[:, 2], x.shape[-2], size)
    cols = resize_weights(boxes[:, 1], boxes[:, 3], x.shape[-1], size)
    if transposed is None:
        transposed = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    if flip is not None:  # output column k <- column size-1-k: the flip costs nothing here
        rows = torch.where((flip & transposed)[:, None, None], rows.flip(1), rows)
        cols = torch.where((flip & ~transposed)[:, None, None], cols.flip(1), cols)
    out = rows[:, None] @ x @ cols.transpose(1, 2)[:, None]
    return torch.where(transposed[:, None, None, None], out.transpose(-1, -2), out)


def jitter_op(op: int, f: float) -> tuple[np.ndarray, float]:
    """One ColorJitter op as (3x3 channel matrix, weight of the frame's mean gray level), the CPU
    path's `apply_color` step: y <- M y + c * mean_gray(y)."""
    if op == 0:  # brightness
        return f * EYE, 0.0
    if op == 1:  # contrast
        return f * EYE, 1.0 - f
    if op == 2:  # saturation: blend with the grayscale image
        return f * EYE + (1.0 - f) * GRAY_ROWS, 0.0
    return (hue_matrix(f).double().numpy() if f != 0 else EYE), 0.0


def color_stages(params: list[AugmentParams]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per jitter position (0..3), the clips' channel matrices (B, 3, 3) and mean-gray weights (B,);
    positions where every clip keeps its colours are left out."""
    stages = []
    for pos in range(4):
        ops = [jitter_op(p.color.order[pos], p.color.factors[p.color.order[pos]]) if p.color.jitter else (EYE, 0.0)
               for p in params]
        mats, means = np.stack([m for m, _ in ops]), np.array([c for _, c in ops])
        if not (np.array_equal(mats, np.broadcast_to(EYE, mats.shape)) and not means.any()):
            stages.append((mats, means))
    return stages


def on_device(a, like: torch.Tensor) -> torch.Tensor:
    """A small host array as float32 on `like`'s device."""
    return torch.as_tensor(a, dtype=torch.float32).to(like.device, non_blocking=True)


def apply_color_batch(y: torch.Tensor, params: list[AugmentParams]) -> torch.Tensor:
    """float (B, T, 3, H, W) in [0, 255] -> jittered (clamped after each op) and grayscaled per
    clip, rounded as the CPU path's uint8 result is."""
    b, t, _, h, w = y.shape
    flat = y.reshape(b, t, 3, h * w)
    for mats, means in color_stages(params):
        out = on_device(mats, y)[:, None] @ flat
        if means.any():  # contrast somewhere at this position: blend with each frame's mean gray
            level = (on_device([GRAY_WEIGHTS], y) @ flat).mean(-1, keepdim=True)
            out = out + on_device(means, y)[:, None, None, None] * level
        flat = out.clamp_(0, 255)
    if any(p.color.gray for p in params):
        gray = np.stack([GRAY_ROWS if p.color.gray else EYE for p in params])
        flat = on_device(gray, y)[:, None] @ flat
    return flat.round_().reshape(b, t, 3, h, w)


class DeviceAugment:
    """Applies the decode tasks' drawn parameters to a batch of windows on the batch's device.

        aug = DeviceAugment(cfg.data.input_size)
        x = normalize(aug(batch["video"].to(device), batch["aug_params"]))   # then mixup, forward
    """

    def __init__(self, size: int):
        self.size = size

    def __call__(self, windows: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """uint8 windows (B, T, H, W, 3) (channels last, as decoded) and float32 params
        (B, PARAMS_SIZE) (host or device) -> float32 clips (B, T, 3, size, size) holding the CPU
        path's uint8 values."""
        host = params.detach().cpu().double().numpy()
        clips = [AugmentParams.from_vector(v) for v in host]
        b, t, h, w, c = windows.shape
        boxes = torch.as_tensor(host[:, :4], dtype=torch.float32).to(windows.device, non_blocking=True)
        flip, transposed = (torch.tensor([getattr(p, k) for p in clips]).to(windows.device, non_blocking=True)
                            for k in ("flip", "transposed"))
        with torch.autocast(windows.device.type, enabled=False):
            planes = windows.permute(0, 1, 4, 2, 3).reshape(b, t * c, h, w)  # one uint8 copy on the device
            x = crop_resize_batch(planes.float(), boxes, self.size, flip, transposed)
            x = x.round_().clamp_(0, 255).reshape(b, t, c, self.size, self.size)  # the CPU path's uint8 crop
            return apply_color_batch(x, clips)
