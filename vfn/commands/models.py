"""`vfn models`: the model zoo (sizes, parameters, GFLOPs per view) and the paper's released
checkpoints (dataset, top-1, where to download, the file name the docs use, the experiment file
that evaluates it), as timm's `list_models` and mmaction2's model zoo pages show them."""

from __future__ import annotations

import argparse
import json

import torch

from vfn.model.flops import count_flops
from vfn.model.zoo import RELEASED, ZOO, create_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=8, help="frames per view for the GFLOPs (default 8)")
    parser.add_argument("--input-size", type=int, default=224, help="input height = width (default 224)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the tables")


def zoo_rows(frames: int, size: int) -> list[dict]:
    rows = []
    for name, spec in ZOO.items():
        with torch.device("meta"):  # shapes only: counting needs no weights or compute
            model = create_model(name, num_classes=400, num_frames=frames, img_size=size)
        params, gflops = count_flops(model, frames, size)
        rows.append({"model": name, "depths": list(spec["depths"]), "embed_dim": spec["embed_dim"],
                     "params_M": round(params, 2), "gflops_per_view": round(gflops, 1)})
    return rows


def released_rows() -> list[dict]:
    return [{"model": r.model, "dataset": r.dataset, "classes": r.num_classes, "frames": r.frames,
             "views": r.views, "top1": r.top1, "file": r.file, "url": r.url, "experiment": r.experiment}
            for r in RELEASED]


def table(rows: list[dict], columns: list[str]) -> str:
    cells = [[str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    zoo, released = zoo_rows(args.frames, args.input_size), released_rows()
    if args.json:
        print(json.dumps({"input": f"{args.frames}x{args.input_size}", "models": zoo, "released": released}, indent=1))
        return 0
    print(f"models (GFLOPs per view at {args.frames}x{args.input_size}x{args.input_size}, 400 classes):")
    print(table(zoo, ["model", "depths", "embed_dim", "params_M", "gflops_per_view"]))
    print("\nreleased checkpoints (the paper's; top-1 at 8 frames, 4 clips x 3 crops):")
    print(table(released, ["model", "dataset", "classes", "top1", "file", "experiment"]))
    print("\ndownload (vfn never downloads weights):")
    for r in released:
        print(f"  {r['file']}: {r['url']}")
    print("\nevaluate one: vfn eval FILE --data SHARDS --config EXPERIMENT")
    return 0
