"""Parameters and GFLOPs per view, counted by `torch.utils.flop_counter`.

Reported as the paper does: multiply-accumulates (torch counts 2 FLOPs per MAC) in G, for one view
(one clip, one crop) at batch size 1. Like fvcore, only matmuls and convolutions are counted.
`vfn flops MODEL --frames T --size S` (`vfn.commands.flops`) prints them for any design variant.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, num_frames: int, img_size: int) -> tuple[float, float]:
    """(parameters in millions, GFLOPs as G multiply-accumulates) for one (1, T, 3, S, S) view."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.zeros(1, num_frames, 3, img_size, img_size, device=device)
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return count_params(model) / 1e6, counter.get_total_flops() / 2 / 1e9
