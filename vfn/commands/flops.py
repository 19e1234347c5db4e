"""`vfn flops`: parameters and GFLOPs per view of a zoo model, for any design variant, counted on
the meta device (shapes only: no weights, no compute). Counting is `vfn.model.flops`'s job."""

from __future__ import annotations

import argparse

import torch

from vfn.commands import former_spelling
from vfn.config.names import DESIGNS, MODELS
from vfn.model.flops import count_flops
from vfn.model.zoo import create_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=MODELS, help="zoo model")
    parser.add_argument("--frames", type=int, default=8, help="frames per view (default 8)")
    parser.add_argument("--input-size", type=int, default=224, help="input height = width (default 224)")
    former_spelling(parser, "--size", "input_size")
    parser.add_argument("--num-classes", type=int, default=400)
    parser.add_argument("--design", choices=DESIGNS, default="parallel")
    parser.add_argument("--tubelet-size", type=int, default=1)
    parser.add_argument("--focal-levels", type=int, nargs=4, metavar="L", help="per-stage focal levels")
    parser.add_argument("--focal-windows", type=int, nargs=4, metavar="K", help="per-stage focal windows")
    parser.add_argument("--views", type=str, default="4x3", help="clips x crops at test time, for the total")


def run(args: argparse.Namespace) -> int:
    kwargs = dict(num_classes=args.num_classes, num_frames=args.frames, img_size=args.input_size,
                  design=args.design, tubelet_size=args.tubelet_size)
    if args.focal_levels:
        kwargs["focal_levels"] = args.focal_levels
    if args.focal_windows:
        kwargs["focal_windows"] = args.focal_windows
    with torch.device("meta"):  # shapes only: counting needs no weights or compute
        model = create_model(args.model, **kwargs)
    params, gflops = count_flops(model, args.frames, args.input_size)
    clips, crops = (int(v) for v in args.views.lower().split("x"))
    print(f"{args.model} design={args.design} input={args.frames}x{args.input_size}x{args.input_size}")
    print(f"params: {params:.2f} M")
    print(f"GFLOPs per view: {gflops:.1f} (x{clips * crops} views = {gflops * clips * crops:.0f} GFLOPs)")
    return 0
