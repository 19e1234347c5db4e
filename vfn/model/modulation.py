"""Focal modulation operators: the token mixers of every Video-FocalNet design.

All take and return channels-last features (B, T, H, W, C). Parameter names of the spatial and
parallel operators follow the released checkpoints, so their weights load without renaming.

They compute what the published code computes, in a leaner layout: features stay channels-last
throughout. The context that the focal convolutions read is made contiguous once (it is a slice of
the input projection), convolutions see channels-first views of channels-last memory (their
channels-last kernels, no layout conversions), 1x1 convolutions run as linear layers
(`layers.pointwise`) and the dense temporal convolution as one (k, 1, 1) 3D convolution
(`layers.TemporalConv`): no transposes folding space or time into the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from vfn.config.names import DESIGNS

from .layers import TemporalConv, channels_first, focal_kernel_sizes, gated_focal_aggregation, pointwise

# design name -> its modulation class; filled by `register_modulation`, read by `build_modulation`
MODULATIONS: dict[str, type[nn.Module]] = {}


def register_modulation(*designs: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: the modulation of the named designs. A name must first be in
    `vfn.config.names.DESIGNS` (what configs may choose), so that a design is never buildable
    without being selectable, nor selectable without being buildable."""
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown:
        raise ValueError(f"design {unknown[0]!r} is not in vfn.config.names.DESIGNS; add it there first")

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        for design in designs:
            MODULATIONS[design] = cls
        return cls

    return register


def _spatial_levels(dim: int, kernels: list[int]) -> nn.ModuleList:
    # depthwise 2D convolutions, as in image FocalNet
    return nn.ModuleList(
        nn.Sequential(nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim, bias=False), nn.GELU()) for k in kernels
    )


def _temporal_levels(dim: int, kernels: list[int]) -> nn.ModuleList:
    # dense (not depthwise) 1D convolutions over frames, as in the released weights
    return nn.ModuleList(
        nn.Sequential(TemporalConv(dim, dim, k, padding=k // 2, bias=False), nn.GELU()) for k in kernels
    )


def _context(x: torch.Tensor, start: int, dim: int) -> torch.Tensor:
    """The context slice (channels start..start+dim) of an input projection, contiguous channels-last
    and seen channels-first: the layout the focal convolutions read without converting it."""
    return channels_first(x[..., start : start + dim].contiguous())


class _ModulationBase(nn.Module):
    """Shared tail: optional LayerNorm after modulation, output projection, dropout."""

    def __init__(self, dim: int, focal_level: int, normalize_modulator: bool, use_postln_in_modulation: bool,
                 proj_drop: float):
        super().__init__()
        self.dim = dim
        self.focal_level = focal_level
        self.normalize_modulator = normalize_modulator
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.ln = nn.LayerNorm(dim) if use_postln_in_modulation else nn.Identity()

    def _normalize(self, ctx_all: torch.Tensor) -> torch.Tensor:
        return ctx_all / (self.focal_level + 1) if self.normalize_modulator else ctx_all

    def _project(self, x_out: torch.Tensor) -> torch.Tensor:
        return self.proj_drop(self.proj(self.ln(x_out)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, focal_level={self.focal_level}"


@register_modulation("spatial", "factorized")  # factorized: per-frame encoder, time after the stages
class SpatialFocalModulation(_ModulationBase):
    """Image focal modulation applied to every frame independently (the `spatial` design)."""

    def __init__(self, dim: int, focal_level: int, focal_window: int, focal_factor: int = 2, bias: bool = True,
                 proj_drop: float = 0.0, normalize_modulator: bool = False, use_postln_in_modulation: bool = False):
        super().__init__(dim, focal_level, normalize_modulator, use_postln_in_modulation, proj_drop)
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1, bias=bias)
        self.h = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.focal_layers = _spatial_levels(dim, focal_kernel_sizes(focal_level, focal_window, focal_factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[-1]
        xs = self.f(x.flatten(0, 1))  # (B*T, H, W, 2C+L+1)
        gates = channels_first(xs[..., 2 * C :])
        ctx_all = self._normalize(gated_focal_aggregation(_context(xs, C, C), gates, self.focal_layers, (2, 3)))
        x_out = xs[..., :C] * pointwise(self.h, ctx_all.movedim(1, -1))
        return self._project(x_out.unflatten(0, x.shape[:2]))


class TemporalFocalModulation(_ModulationBase):
    """Focal modulation along time only, at every spatial location (second half of `sequential`,
    and the temporal encoder of `factorized`)."""

    def __init__(self, dim: int, focal_level: int, focal_window: int, focal_factor: int = 2, bias: bool = True,
                 proj_drop: float = 0.0, normalize_modulator: bool = False, use_postln_in_modulation: bool = False):
        super().__init__(dim, focal_level, normalize_modulator, use_postln_in_modulation, proj_drop)
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1, bias=bias)
        self.h = nn.Conv1d(dim, dim, kernel_size=1, bias=bias)
        self.focal_layers = _temporal_levels(dim, focal_kernel_sizes(focal_level, focal_window, focal_factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[-1]
        xt = self.f(x)  # (B, T, H, W, 2C+L+1); convolutions see (B, C, T, H, W)
        gates = channels_first(xt[..., 2 * C :])
        ctx_all = self._normalize(gated_focal_aggregation(_context(xt, C, C), gates, self.focal_layers, (2,)))
        return self._project(xt[..., :C] * pointwise(self.h, ctx_all.movedim(1, -1)))

    @torch.no_grad()
    def init_temporal_identity(self) -> None:
        """A pass-through: query = input, modulator = 1, output projection = identity, so the module
        returns its input (exactly so without the optional post-modulation LayerNorm). Context and
        gates keep their random init and take over as the modulator's weight leaves zero."""
        C = self.dim
        self.f.weight[:C].copy_(torch.eye(C))
        if self.f.bias is not None:
            self.f.bias[:C].zero_()
        nn.init.zeros_(self.h.weight)
        if self.h.bias is not None:
            nn.init.ones_(self.h.bias)
        self.proj.weight.copy_(torch.eye(C))
        nn.init.zeros_(self.proj.bias)


@register_modulation("parallel")
class SpatioTemporalFocalModulation(_ModulationBase):
    """The published (`parallel`) design: spatial and temporal contexts aggregated side by side from
    the same input, the query modulated by both: q * h(ctx_spatial) * h_t(ctx_temporal)."""

    def __init__(self, dim: int, focal_level: int, focal_window: int, focal_factor: int = 2, bias: bool = True,
                 proj_drop: float = 0.0, normalize_modulator: bool = False, use_postln_in_modulation: bool = False):
        super().__init__(dim, focal_level, normalize_modulator, use_postln_in_modulation, proj_drop)
        kernels = focal_kernel_sizes(focal_level, focal_window, focal_factor)
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1, bias=bias)
        self.h = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)
        self.focal_layers = _spatial_levels(dim, kernels)
        # the temporal branch has its own context and gates but shares the query
        self.f_temporal = nn.Linear(dim, dim + focal_level + 1, bias=bias)
        self.h_temporal = nn.Conv1d(dim, dim, kernel_size=1, bias=bias)
        self.focal_layers_temporal = _temporal_levels(dim, kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[-1]
        # temporal: (B, T, H, W, C+L+1); its convolutions see (B, C, T, H, W)
        xt = self.f_temporal(x)
        gates_t = channels_first(xt[..., C:])
        ctx_t = _context(xt, 0, C)
        ctx_all_t = self._normalize(gated_focal_aggregation(ctx_t, gates_t, self.focal_layers_temporal, (2,)))
        modulator_t = pointwise(self.h_temporal, ctx_all_t.movedim(1, -1)).flatten(0, 1)  # (BT, H, W, C)

        xs = self.f(x.flatten(0, 1))  # (BT, H, W, 2C+L+1); its convolutions see (BT, C, H, W)
        gates = channels_first(xs[..., 2 * C :])
        ctx_all = self._normalize(gated_focal_aggregation(_context(xs, C, C), gates, self.focal_layers, (2, 3)))
        modulator = pointwise(self.h, ctx_all.movedim(1, -1))

        x_out = xs[..., :C] * modulator * modulator_t
        return self._project(x_out.unflatten(0, x.shape[:2]))

    @torch.no_grad()
    def init_temporal_identity(self) -> None:
        """Temporal modulator exactly 1 (zero weight, unit bias): the block starts as its spatial
        counterpart. With both modulators near zero the gradient of each is scaled by the other, a
        saddle training must first escape; here the temporal one grows from 1 instead."""
        nn.init.zeros_(self.h_temporal.weight)
        nn.init.ones_(self.h_temporal.bias)


@register_modulation("sequential")
class SequentialFocalModulation(nn.Module):
    """Divided space-time: a spatial focal modulation, then a temporal one, each with its own
    query, gates and projections."""

    def __init__(self, dim: int, focal_level: int, focal_window: int, **kwargs):
        super().__init__()
        self.spatial = SpatialFocalModulation(dim, focal_level, focal_window, **kwargs)
        self.temporal = TemporalFocalModulation(dim, focal_level, focal_window, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(self.spatial(x))

    def init_temporal_identity(self) -> None:
        """The temporal half starts as a pass-through: the block is a spatial block."""
        self.temporal.init_temporal_identity()


@register_modulation("joint")
class JointFocalModulation(_ModulationBase):
    """One context aggregation over time and space together: depthwise k x k x k 3D convolutions,
    and a global level over (T, H, W)."""

    def __init__(self, dim: int, focal_level: int, focal_window: int, focal_factor: int = 2, bias: bool = True,
                 proj_drop: float = 0.0, normalize_modulator: bool = False, use_postln_in_modulation: bool = False):
        super().__init__(dim, focal_level, normalize_modulator, use_postln_in_modulation, proj_drop)
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1, bias=bias)
        self.h = nn.Conv3d(dim, dim, kernel_size=1, bias=bias)
        self.focal_layers = nn.ModuleList(
            nn.Sequential(nn.Conv3d(dim, dim, k, padding=k // 2, groups=dim, bias=False), nn.GELU())
            for k in focal_kernel_sizes(focal_level, focal_window, focal_factor)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[-1]
        xj = self.f(x)  # (B, T, H, W, 2C+L+1); convolutions see (B, C, T, H, W)
        gates = channels_first(xj[..., 2 * C :])
        ctx_all = self._normalize(gated_focal_aggregation(_context(xj, C, C), gates, self.focal_layers, (2, 3, 4)))
        return self._project(xj[..., :C] * pointwise(self.h, ctx_all.movedim(1, -1)))

    @torch.no_grad()
    def init_temporal_identity(self) -> None:
        """Only the middle temporal tap of each 3D kernel non-zero: the local levels start as per-frame
        2D aggregations. The global level still averages over time as well as space, so the block is
        close to, not exactly, a spatial block."""
        for level in self.focal_layers:
            w = level[0].weight  # (C, 1, k, k, k)
            mid = w.shape[2] // 2
            keep = w[:, :, mid].clone()
            w.zero_()
            w[:, :, mid] = keep


def build_modulation(design: str, dim: int, focal_level: int, focal_window: int, **kwargs) -> nn.Module:
    if design not in MODULATIONS:
        raise ValueError(f"unknown design {design!r}; choose one of {', '.join(MODULATIONS)}")
    return MODULATIONS[design](dim, focal_level, focal_window, **kwargs)
