"""Model zoo: Tiny/Small/Base sizes, `create_model`, and timm registration.

After `import vfn.model`, `timm.create_model("videofocalnet_tiny", num_classes=400, num_frames=8)` works.
"""

from __future__ import annotations

from collections.abc import Sequence

from timm.models import register_model

from .video_focalnet import VideoFocalNet

ZOO: dict[str, dict] = {
    "videofocalnet_tiny": dict(embed_dim=96, depths=(2, 2, 6, 2)),
    "videofocalnet_small": dict(embed_dim=96, depths=(2, 2, 18, 2)),
    "videofocalnet_base": dict(embed_dim=128, depths=(2, 2, 18, 2)),
}


def create_model(
    name: str,
    *,
    embed_dim: int | None = None,
    depths: Sequence[int] | None = None,
    grad_checkpointing: bool = False,
    **kwargs,
) -> VideoFocalNet:
    """Build a zoo model; `embed_dim`/`depths` override its size (small models for tests and laptops)."""
    if name not in ZOO:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(ZOO)}")
    size = dict(ZOO[name])
    if embed_dim is not None:
        size["embed_dim"] = embed_dim
    if depths is not None:
        size["depths"] = tuple(depths)
    return VideoFocalNet(**size, use_checkpoint=grad_checkpointing, **kwargs)


def _timm_entrypoint(name: str):
    def entrypoint(pretrained: bool = False, **kwargs) -> VideoFocalNet:
        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(key, None)
        if pretrained:
            raise ValueError(
                "vfn never downloads weights: build the model, then call "
                "vfn.model.load_released_weights(model, 'checkpoint.pth')"
            )
        return create_model(name, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__doc__ = f"Video-FocalNet {name.split('_')[1].capitalize()} ({ZOO[name]})."
    return entrypoint


videofocalnet_tiny = register_model(_timm_entrypoint("videofocalnet_tiny"))
videofocalnet_small = register_model(_timm_entrypoint("videofocalnet_small"))
videofocalnet_base = register_model(_timm_entrypoint("videofocalnet_base"))
