"""Video-FocalNet (Wasim et al., ICCV 2023): a clean re-implementation of the released model.

Input (B, T, 3, H, W) -> logits (B, num_classes). Four stages of focal-modulation blocks at
channel dims C, 2C, 4C, 8C on a 4x-strided patch grid, 2x2 patch merging between stages, final
LayerNorm, mean over space and time, linear head. The constructor accepts the published keyword
names, so released configs build as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint
from timm.layers import DropPath, Mlp, trunc_normal_

from .layers import PatchEmbed, channels_last_to_frames
from .modulation import MODULATIONS, TemporalFocalModulation, build_modulation

TEMPORAL_INITS: tuple[str, ...] = ("identity", "released")


class VideoFocalNetBlock(nn.Module):
    """Pre-norm focal modulation + residual, pre-norm MLP + residual (post-norm when `use_postln`)."""

    def __init__(
        self,
        dim: int,
        modulation: nn.Module,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        layerscale_value: float | None = None,
        use_postln: bool = False,
    ):
        super().__init__()
        self.use_postln = use_postln
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = modulation
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop)
        if layerscale_value is not None:
            self.gamma_1 = nn.Parameter(layerscale_value * torch.ones(dim))
            self.gamma_2 = nn.Parameter(layerscale_value * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_postln:
            x = x + self.drop_path(self.gamma_1 * self.norm1(self.modulation(x)))
            return x + self.drop_path(self.gamma_2 * self.norm2(self.mlp(x)))
        x = x + self.drop_path(self.gamma_1 * self.modulation(self.norm1(x)))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


class VideoFocalNetStage(nn.Module):
    """`depth` blocks at one resolution, then (except in the last stage) 2x2 patch merging."""

    def __init__(self, blocks: list[VideoFocalNetBlock], downsample: PatchEmbed | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        if self.downsample is not None:
            x = self.downsample(channels_last_to_frames(x))
        return x


class VideoFocalNet(nn.Module):
    """Spatio-temporal focal modulation network.

    `design` picks the token mixer: `parallel` (published), `sequential`, `spatial`, `joint`, or
    `factorized` (per-frame spatial stages, then `temporal_depth` temporal focal blocks over the
    per-frame features). `temporal_init="identity"` (default) starts every temporal part where the
    model is its spatial counterpart (the parallel block's temporal modulator is exactly 1), which
    trains from scratch and from inflated ImageNet weights far better than the released init;
    `"released"` keeps the published initialisation. Unknown keyword arguments are an error.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 400,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        patch_norm: bool = True,
        use_checkpoint: bool = False,
        focal_levels: Sequence[int] = (2, 2, 2, 2),
        focal_windows: Sequence[int] = (3, 3, 3, 3),
        focal_factor: int = 2,
        use_conv_embed: bool = False,
        use_layerscale: bool = False,
        layerscale_value: float = 1e-4,
        use_postln: bool = False,
        use_postln_in_modulation: bool = False,
        normalize_modulator: bool = False,
        num_frames: int = 8,
        tubelet_size: int = 1,
        design: str = "parallel",
        temporal_depth: int = 2,
        head_drop_rate: float = 0.0,
        temporal_init: str = "identity",
    ):
        super().__init__()
        num_stages = len(depths)
        if not (len(focal_levels) == len(focal_windows) == num_stages):
            raise ValueError(
                f"focal_levels ({len(focal_levels)}) and focal_windows ({len(focal_windows)}) need one entry "
                f"per stage ({num_stages})"
            )
        if design not in MODULATIONS:
            raise ValueError(f"unknown design {design!r}; choose one of {', '.join(MODULATIONS)}")
        if num_frames % tubelet_size:
            raise ValueError(f"num_frames={num_frames} is not divisible by tubelet_size={tubelet_size}")
        if temporal_init not in TEMPORAL_INITS:
            raise ValueError(f"unknown temporal_init {temporal_init!r}; choose one of {', '.join(TEMPORAL_INITS)}")
        dims = [embed_dim * 2**i for i in range(num_stages)]
        self.img_size = img_size
        self.num_frames = num_frames
        self.tubelet_size = tubelet_size
        self.num_classes = num_classes
        self.design = design
        self.num_features = dims[-1]

        self.patch_embed = PatchEmbed(in_chans, dims[0], patch_size, tubelet_size, use_conv_embed, True, patch_norm)
        self.pos_drop = nn.Dropout(drop_rate)

        n_blocks = sum(depths)  # stochastic depth decay rule: 0 -> drop_path_rate, linear over blocks
        drop_path = [drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)]
        modulation_kwargs = dict(
            focal_factor=focal_factor,
            proj_drop=drop_rate,
            normalize_modulator=normalize_modulator,
            use_postln_in_modulation=use_postln_in_modulation,
        )
        self.layers = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            blocks = [
                VideoFocalNetBlock(
                    dim,
                    build_modulation(design, dim, focal_levels[i], focal_windows[i], **modulation_kwargs),
                    mlp_ratio=mlp_ratio,
                    drop=drop_rate,
                    drop_path=drop_path[sum(depths[:i]) + j],
                    layerscale_value=layerscale_value if use_layerscale else None,
                    use_postln=use_postln,
                )
                for j in range(depth)
            ]
            last = i == num_stages - 1
            downsample = None if last else PatchEmbed(dim, dims[i + 1], 2, 1, use_conv_embed, False, patch_norm)
            self.layers.append(VideoFocalNetStage(blocks, downsample))
        self.norm = nn.LayerNorm(self.num_features)

        if design == "factorized":
            # time enters only here: focal modulation along frames over pooled per-frame features
            self.temporal_encoder = nn.ModuleList(
                VideoFocalNetBlock(
                    self.num_features,
                    TemporalFocalModulation(
                        self.num_features, focal_levels[-1], focal_windows[-1], **modulation_kwargs
                    ),
                    mlp_ratio=mlp_ratio,
                    drop=drop_rate,
                    drop_path=drop_path_rate,
                )
                for _ in range(temporal_depth)
            )
            self.temporal_norm = nn.LayerNorm(self.num_features)

        self.head_drop = nn.Dropout(head_drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)
        self.init_temporal(temporal_init)
        self.set_grad_checkpointing(use_checkpoint)

    @torch.no_grad()
    def init_temporal(self, mode: str = "identity") -> None:
        """`identity`: every temporal part starts where the model equals its spatial counterpart (see
        each modulation's `init_temporal_identity`; `factorized`: the temporal encoder's residual
        branches start at zero output, so the encoder is the identity and only its final LayerNorm
        differs from `spatial`). `released`: keep the released code's initialisation. Weights loaded
        afterwards (released or trained checkpoints) overwrite either."""
        if mode == "released":
            return
        if mode not in TEMPORAL_INITS:
            raise ValueError(f"unknown temporal_init {mode!r}; choose one of {', '.join(TEMPORAL_INITS)}")
        for module in self.layers.modules():
            if hasattr(module, "init_temporal_identity"):
                module.init_temporal_identity()
        for block in getattr(self, "temporal_encoder", []):  # residual branches start at zero output
            for layer in (block.modulation.h, block.mlp.fc2):  # h, not proj: its input gets gradient at once
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    # timm-style API ---------------------------------------------------------------------------
    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.layers:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            _init_weights(self.head)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> channels-last features (B, T', H', W', C) after the final norm."""
        if x.ndim != 5:
            raise ValueError(f"expected a clip batch (B, T, 3, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] % self.tubelet_size:
            raise ValueError(f"{x.shape[1]} frames are not divisible by tubelet_size={self.tubelet_size}")
        x = self.pos_drop(self.patch_embed(x))
        for stage in self.layers:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.design == "factorized":
            x = x.mean((2, 3), keepdim=True)  # (B, T, 1, 1, C): one token per frame
            for block in self.temporal_encoder:
                x = block(x)
            x = self.temporal_norm(x)
        x = self.head_drop(x.mean((1, 2, 3)))  # spatial average pool, then average over frames
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    # as the released code: truncated normal linears, unit LayerNorms, PyTorch defaults for convs
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
