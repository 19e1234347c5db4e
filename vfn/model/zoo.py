"""Model zoo: Tiny/Small/Base sizes, `create_model`, timm registration, and the checkpoints the
paper released (`RELEASED`: what `vfn models` lists and the docs name).

After `import vfn.model`, `timm.create_model("videofocalnet_tiny", num_classes=400, num_frames=8)` works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from timm.models import register_model

from .video_focalnet import VideoFocalNet

ZOO: dict[str, dict] = {
    "videofocalnet_tiny": dict(embed_dim=96, depths=(2, 2, 6, 2)),
    "videofocalnet_small": dict(embed_dim=96, depths=(2, 2, 18, 2)),
    "videofocalnet_base": dict(embed_dim=128, depths=(2, 2, 18, 2)),
}



@dataclass(frozen=True)
class ReleasedCheckpoint:
    """One checkpoint of the paper's model zoo (github.com/TalalWasim/Video-FocalNets, README), as
    published: top-1 of 8-frame clips at 224, 4 clips x 3 crops per video. vfn never downloads it:
    `url` is where a user fetches it, `file` the name these docs and experiment files use."""
    model: str
    dataset: str
    num_classes: int
    top1: float
    url: str
    experiment: str  # the experiment file that evaluates it (`vfn eval FILE --config ...`)
    frames: int = 8
    views: str = "4x3"

    @property
    def file(self) -> str:
        """`video-focalnet_<size>_<dataset>.pth`, as the paper's own evaluation example names the file."""
        return f"video-focalnet_{self.model.removeprefix('videofocalnet_')}_{self.dataset}.pth"


def _drive(file_id: str) -> str:
    return f"https://drive.google.com/file/d/{file_id}/view"


RELEASED: tuple[ReleasedCheckpoint, ...] = (
    ReleasedCheckpoint("videofocalnet_tiny", "k400", 400, 79.8, _drive("1wsUjJbPVQd7pf-OocD9mVU8pak0gdBTP"),
                       "experiments/k400_tiny.yaml"),
    ReleasedCheckpoint("videofocalnet_small", "k400", 400, 81.4, _drive("1gO4_tluuoR4mn2bSQRNyy9_wFCnUSiQ0"),
                       "experiments/k400_small.yaml"),
    ReleasedCheckpoint("videofocalnet_base", "k400", 400, 83.6, _drive("1tc1AKKmvHN7Hzxpd53QsBIMQZmLH8ozX"),
                       "experiments/k400_base.yaml"),
    ReleasedCheckpoint("videofocalnet_base", "k600", 600, 86.7, _drive("16u1dij3dde0KmaajiB5lAFy8FaRvQDmS"),
                       "experiments/k600_base.yaml"),
    ReleasedCheckpoint("videofocalnet_base", "ssv2", 174, 71.1, _drive("1MIPLjMVDmYEY5jmJs8pRRIj4gKNVqETg"),
                       "experiments/ssv2_base.yaml"),
    ReleasedCheckpoint("videofocalnet_base", "diving48", 48, 90.8, _drive("1MMZeDucN1cfC5MiTGIft8xNfo5358dA2"),
                       "experiments/diving48_base.yaml"),
    ReleasedCheckpoint("videofocalnet_base", "activitynet", 200, 89.8, _drive("1Zku86i9Ol1gabqBqf0h1vtL-_H5gglA3"),
                       "experiments/activitynet_base.yaml"),
)


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
