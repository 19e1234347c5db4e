"""Small building blocks shared by every Video-FocalNet design.

Feature maps flow through the network channels-last as (B, T, H, W, C): spatial operators fold
time into the batch, temporal operators fold space into the batch, and nothing needs to be told
the frame count or the resolution from outside.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def gated_focal_aggregation(
    ctx: torch.Tensor, gates: torch.Tensor, levels: nn.ModuleList, global_dims: tuple[int, ...]
) -> torch.Tensor:
    """Hierarchical contextualisation + gated aggregation (FocalNet, eq. 4-5).

    `ctx` and `gates` are channels-first (N, C, *extent) and (N, L+1, *extent). Each level refines the
    previous level's context (receptive fields grow), its output is weighted by its gate; the last gate
    weights a global level: GELU of the context mean over `global_dims`.
    """
    ctx_all = 0
    for level, layer in enumerate(levels):
        ctx = layer(ctx)
        ctx_all = ctx_all + ctx * gates[:, level : level + 1]
    ctx_global = F.gelu(ctx.mean(global_dims, keepdim=True))
    return ctx_all + ctx_global * gates[:, len(levels) :]


def pointwise(conv: nn.Conv1d | nn.Conv2d | nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution applied to channels-last features (..., C) as the linear layer it is: no
    transposes around it, and the released checkpoints' convolution weights stay as they are."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


class TemporalConv(nn.Conv1d):
    """The released dense temporal convolution (a `Conv1d(C, C, k)`, weights and keys unchanged),
    applied at every spatial location of (N, C, T, H, W) features stored channels-last
    (`channels_last_3d`) as one `(k, 1, 1)` 3D convolution: the backends run it as an implicit GEMM
    on that layout, where the published code first folded space into the batch with two transposes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, self.weight[..., None, None], self.bias, padding=(self.padding[0], 0, 0))


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """(N, *extent, C) channels-last features as a (N, C, *extent) view without copying: what
    convolutions take, with `channels_last(_3d)` strides that their channels-last kernels use."""
    return x.movedim(-1, 1)


def focal_kernel_sizes(focal_level: int, focal_window: int, focal_factor: int = 2) -> list[int]:
    """Kernel of each focal level: `window + factor * level` (3, 5, 7, ... by default)."""
    return [focal_factor * level + focal_window for level in range(focal_level)]


class PatchEmbed(nn.Module):
    """Non-overlapping patch embedding (stem or 2x2 patch merging between stages), then LayerNorm.

    With `tubelet_size > 1` (stem only) a 3D convolution also strides over time. With `conv_embed`
    the published overlapping variant is used (7x7/4 for the stem, 3x3/2 between stages).
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        patch_size: int,
        tubelet_size: int = 1,
        conv_embed: bool = False,
        is_stem: bool = True,
        norm: bool = True,
    ):
        super().__init__()
        self.tubelet_size = tubelet_size
        if conv_embed:
            if tubelet_size != 1:
                raise ValueError("conv_embed with tubelet_size > 1 is not supported")
            kernel, padding, stride = (7, 2, 4) if is_stem else (3, 1, 2)
            self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel, stride=stride, padding=padding)
        elif tubelet_size == 1:
            self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        else:
            kernel = (tubelet_size, patch_size, patch_size)
            self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)
        self.norm = nn.LayerNorm(embed_dim) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W), channels-first frames or feature maps -> (B, T', H', W', C') channels-last."""
        if self.tubelet_size > 1:
            x = self.proj(x.transpose(1, 2))  # (B, C, T', H', W')
            x = x.permute(0, 2, 3, 4, 1)
        else:
            B, T = x.shape[:2]
            x = self.proj(x.flatten(0, 1))  # (B*T, C', H', W')
            x = x.permute(0, 2, 3, 1).unflatten(0, (B, T))
        return self.norm(x)


def channels_last_to_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, T, H, W, C) -> (B, T, C, H, W), the layout PatchEmbed's 2D convolution expects."""
    return x.permute(0, 1, 4, 2, 3)
