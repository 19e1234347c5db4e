"""Parameters and GFLOPs per view, counted by `torch.utils.flop_counter`.

Reported as the paper does: multiply-accumulates (torch counts 2 FLOPs per MAC) in G, for one view
(one clip, one crop) at batch size 1. Like fvcore, only matmuls and convolutions are counted.
`vfn flops MODEL --frames T --size S` is the command; it runs on any design variant.
"""

from __future__ import annotations

import argparse

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .modulation import DESIGNS
    from .zoo import ZOO

    parser.add_argument("model", choices=sorted(ZOO), help="zoo model")
    parser.add_argument("--frames", type=int, default=8, help="frames per view (default 8)")
    parser.add_argument("--size", type=int, default=224, help="input height = width (default 224)")
    parser.add_argument("--num-classes", type=int, default=400)
    parser.add_argument("--design", choices=DESIGNS, default="parallel")
    parser.add_argument("--tubelet-size", type=int, default=1)
    parser.add_argument("--focal-levels", type=int, nargs=4, metavar="L", help="per-stage focal levels")
    parser.add_argument("--focal-windows", type=int, nargs=4, metavar="K", help="per-stage focal windows")
    parser.add_argument("--views", type=str, default="4x3", help="clips x crops at test time, for the total")


def run(args: argparse.Namespace) -> int:
    from .zoo import create_model

    kwargs = dict(num_classes=args.num_classes, num_frames=args.frames, img_size=args.size,
                  design=args.design, tubelet_size=args.tubelet_size)
    if args.focal_levels:
        kwargs["focal_levels"] = args.focal_levels
    if args.focal_windows:
        kwargs["focal_windows"] = args.focal_windows
    with torch.device("meta"):  # shapes only: counting needs no weights or compute
        model = create_model(args.model, **kwargs)
    params, gflops = count_flops(model, args.frames, args.size)
    clips, crops = (int(v) for v in args.views.lower().split("x"))
    print(f"{args.model} design={args.design} input={args.frames}x{args.size}x{args.size}")
    print(f"params: {params:.2f} M")
    print(f"GFLOPs per view: {gflops:.1f} (x{clips * crops} views = {gflops * clips * crops:.0f} GFLOPs)")
    return 0
