"""How the temporal init changes learning from scratch: steps until the loss leaves chance, and
held-out top-1 after a fixed budget, for several seeds (issue #16, item 3). No Ray: the quickstart's
model and recipe trained through the platform's own step (`vfn.training.step.TrainStep`) on
rendered synthetic clips held in memory, one run per process.

    python scripts/temporal_init_study.py --seeds 5 --steps 400 --json study.json

Variants: parallel with the released init, with xavier linears (the quickstart's `model.init`), and
with the identity temporal init (on xavier linears); sequential released / identity; spatial.
Styles: `simple` with any colours (objects may be darker or brighter than the background) and
`cluttered` by default; `simple` (the quickstart's data) on request. The loss "leaves chance" at the
first step where its 25-step moving average falls below 90% of ln(4), the 4-class chance loss.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from vfn.commands.quickstart import SYNTH_FRAMES, SYNTH_SIZE, build_config
from vfn.data.synth import STYLES
from vfn.training.in_memory import left_chance, render_clips, train_in_memory

NUM_CLASSES, TRAIN, VAL, BATCH = 4, 960, 160, 16
STYLE_CHOICES = {"simple": STYLES["simple"],  # the quickstart's data
                 "simple_any_colours": STYLES["simple-any"],
                 "cluttered": STYLES["cluttered"]}
VARIANTS = {  # name: (design, model.init, model.temporal_init)
    "parallel released": ("parallel", "released", "released"),
    "parallel xavier": ("parallel", "xavier", "released"),
    "parallel identity": ("parallel", "xavier", "identity"),
    "sequential released": ("sequential", "xavier", "released"),
    "sequential identity": ("sequential", "xavier", "identity"),
    "spatial": ("spatial", "xavier", "identity"),
}


def train_once(style: str, variant: str, seed: int, steps: int) -> dict:
    """One from-scratch run: the step the loss left chance, held-out top-1."""
    torch.set_num_threads(1)
    design, linear, temporal = VARIANTS[variant]
    clips = render_clips(STYLE_CHOICES[style], NUM_CLASSES, TRAIN, VAL, SYNTH_SIZE, SYNTH_FRAMES)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(Path(tmp), Path(tmp) / "data", [f"model.design={design}", f"model.init={linear}",
                                                            f"model.temporal_init={temporal}", f"seed={seed}"])
    run = train_in_memory(cfg, clips, steps, BATCH)
    return {"style": style, "variant": variant, "seed": seed, "left_chance": left_chance(run.losses, NUM_CLASSES),
            "val_top1": run.val_top1}


def table(runs: list[dict], steps: int) -> str:
    rows = ["| style | variant | steps until the loss leaves chance | held-out top-1 |", "|---|---|---|---|"]
    for style in STYLE_CHOICES:
        for variant in VARIANTS:
            rs = [r for r in runs if r["style"] == style and r["variant"] == variant]
            if not rs:
                continue
            left = [r["left_chance"] for r in rs if r["left_chance"] is not None]
            never = len(rs) - len(left)
            left_s = (f"{statistics.median(left):.0f} (median of {len(left)})" if left else "-") + (
                f", {never} of {len(rs)} never within {steps}" if never else "")
            top1 = [r["val_top1"] * 100 for r in rs]
            rows.append(f"| {style} | {variant} | {left_s} | {statistics.mean(top1):.1f} +- "
                        f"{statistics.pstdev(top1):.1f}% |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--styles", nargs="+", default=["simple_any_colours", "cluttered"], choices=list(STYLE_CHOICES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args()
    jobs = [(s, v, seed, args.steps) for s in args.styles for v in args.variants for seed in range(args.seeds)]
    with ProcessPoolExecutor(args.processes) as pool:
        runs = list(pool.map(train_once, *zip(*jobs)))
    print(table(runs, args.steps))
    if args.json:
        Path(args.json).write_text(json.dumps({"steps": args.steps, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
