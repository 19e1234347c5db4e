"""Image pre-training on synthetic frames: the laptop's stand-in for the ImageNet-1k FocalNets that
the paper inflates its video models from (`vfn pretrain`, then `model.pretrained`).

Why it exists: from scratch, no Video-FocalNet design learns the synthetic set's `cluttered` style at
laptop scale (objects of either contrast among static distractors; docs/research.md). What it
lacks is what ImageNet gives the published models: spatial features that find an object in clutter.
A micro image FocalNet (timm's, the layout `model.pretrained` reads) trained for ~2 minutes on
still frames of that style, each labelled with its object's shape and quadrant
(`synth.render_image`), gives them; inflated into a video model with the identity temporal init,
every order-aware design then learns `cluttered` within the ablation's budget while `spatial`
stays at chance, as the paper's ablation expects.

The image model takes its size from the experiment (embed_dim, depths, focal levels and windows),
so the checkpoint fits that experiment's video model whatever its design.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.focalnet import FocalNet

from vfn.config.schema import ExperimentConfig
from vfn.data.clips import normalize
from vfn.data.synth import IMAGE_CLASSES, render_image
from vfn.model.zoo import ZOO


@dataclass(frozen=True)
class PretrainReport:
    path: str
    images: int
    steps: int
    val_top1: float  # on held-out rendered frames; chance is 1 / len(IMAGE_CLASSES)
    seconds: float

    def summary(self) -> str:
        return (f"image FocalNet pre-trained on {self.images} synthetic frames for {self.steps} steps in "
                f"{self.seconds:.0f} s: held-out top-1 {100 * self.val_top1:.1f}% "
                f"(chance {100 / len(IMAGE_CLASSES):.1f}%) -> {self.path}")


def image_focalnet(cfg: ExperimentConfig) -> FocalNet:
    """timm's image FocalNet with the spatial layout of the experiment's video model."""
    m = cfg.model
    return FocalNet(num_classes=len(IMAGE_CLASSES), embed_dim=m.embed_dim or ZOO[m.name]["embed_dim"],
                    depths=tuple(m.depths or ZOO[m.name]["depths"]), focal_levels=tuple(m.focal_levels),
                    focal_windows=tuple(m.focal_windows), drop_path_rate=0.0)


def render_images(count: int, size: int, style: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (count, 3, size, size) frames and their labels, seeded."""
    rng = np.random.default_rng(seed)
    frames, labels = zip(*(render_image(rng, size, style) for _ in range(count)))
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels)


def pretrain_image_focalnet(cfg: ExperimentConfig, out: str | Path, *, images: int = 20000, steps: int = 2000,
                            batch: int = 64, lr: float = 1e-3, style: str = "cluttered", seed: int = 0,
                            log: Callable[[str], None] = print) -> PretrainReport:
    """Train the experiment's image FocalNet on `images` rendered frames (AdamW, one-cycle cosine
    schedule, label smoothing 0.1) and save it as `{"model": state_dict}` to `out`."""
    t0 = time.time()
    size = cfg.data.input_size
    x, y = render_images(images, size, style, seed)
    x_val, y_val = render_images(max(images // 10, 100), size, style, seed + 1)
    torch.manual_seed(seed)
    model = image_focalnet(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    order = torch.Generator().manual_seed(seed)
    for i in range(steps):
        idx = torch.randint(0, images, (batch,), generator=order)
        loss = F.cross_entropy(model(normalize(x[idx])), y[idx], label_smoothing=0.1)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"image pre-training diverged at step {i} (loss {loss.item()}): lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        schedule.step()
        if (i + 1) % max(steps // 5, 1) == 0:
            log(f"      step {i + 1}/{steps}: loss {loss.item():.3f}")
    top1 = accuracy(model, x_val, y_val)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "pretrain": {"style": style, "images": images, "steps": steps,
                                                           "val_top1": top1, "seed": seed}}, out)
    return PretrainReport(str(out), images, steps, top1, time.time() - t0)


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    hits = sum((model(normalize(x[i:i + batch])).argmax(1) == y[i:i + batch]).sum().item()
               for i in range(0, len(y), batch))
    model.train()
    return hits / len(y)
