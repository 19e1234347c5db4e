"""`vfn pretrain EXPERIMENT.yaml [--out PATH] [key=value ...]`: pre-train the image FocalNet that the
experiment's video model inflates from, on synthetic still frames (the laptop's stand-in for the
ImageNet-1k weights the paper starts from; see `vfn.training.image_pretrain`).

The checkpoint goes to `--out`, or else to the experiment's `model.pretrained`, so that
`vfn pretrain X.yaml && vfn train X.yaml` needs no other setting.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="experiment YAML: the image model takes its size and input size from it")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. model.embed_dim=32")
    parser.add_argument("--out", default=None, help="checkpoint path (default: the experiment's model.pretrained)")
    parser.add_argument("--style", choices=["cluttered", "simple"], default="cluttered",
                        help="look of the synthetic frames (as `vfn data synth --style`)")
    parser.add_argument("--images", type=int, default=20000, help="rendered training frames (default 20000)")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps of 64 frames (default 2000)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from vfn.config.load import load_config

    cfg = load_config(args.experiment, args.overrides)
    out = args.out or cfg.model.pretrained
    if not out:
        print("vfn pretrain: where to? give --out PATH or set model.pretrained in the experiment", file=sys.stderr)
        return 2
    if args.images < 100 or args.steps < 1:
        print(f"vfn pretrain: need --images >= 100 and --steps >= 1, got {args.images} and {args.steps}",
              file=sys.stderr)
        return 2
    from vfn.training.image_pretrain import pretrain_image_focalnet

    report = pretrain_image_focalnet(cfg, out, images=args.images, steps=args.steps, lr=args.lr,
                                     style=args.style, seed=args.seed)
    print(report.summary())
    return 0
