"""How the temporal init changes learning from scratch: steps until the loss leaves chance, and
held-out top-1 after a fixed budget, for several seeds (issue #16, item 3). No Ray: the quickstart's
model and recipe trained through the platform's own step (`vfn.platform.step.TrainStep`) on
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
import math
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from vfn.platform.commands.quickstart import SYNTH_FRAMES, SYNTH_SIZE, build_config
from vfn.platform.data.clips import normalize
from vfn.platform.data.synth import STYLES, render_video
from vfn.platform.step import Plan, TrainStep

NUM_CLASSES, TRAIN, VAL, BATCH = 4, 960, 160, 16
STYLE_CHOICES = {"simple": STYLES["simple"],  # the quickstart's data
                 "simple_any_colours": replace(STYLES["simple"], background_levels=(0, 256), object_levels=(0, 256)),
                 "cluttered": STYLES["cluttered"]}
VARIANTS = {  # name: (design, model.init, model.temporal_init)
    "parallel released": ("parallel", "released", "released"),
    "parallel xavier": ("parallel", "xavier", "released"),
    "parallel identity": ("parallel", "xavier", "identity"),
    "sequential released": ("sequential", "xavier", "released"),
    "sequential identity": ("sequential", "xavier", "identity"),
    "spatial": ("spatial", "xavier", "identity"),
}
CHANCE = math.log(NUM_CLASSES)


def clips(style: str, data_seed: int = 0) -> tuple[torch.Tensor, ...]:
    frames = np.stack([render_video(i % NUM_CLASSES, np.random.default_rng([data_seed, i]), SYNTH_SIZE, SYNTH_FRAMES,
                                    STYLE_CHOICES[style]) for i in range(TRAIN + VAL)])
    x = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).contiguous()
    y = torch.arange(TRAIN + VAL) % NUM_CLASSES
    return x[:TRAIN], y[:TRAIN], x[TRAIN:], y[TRAIN:]


def train_once(style: str, variant: str, seed: int, steps: int) -> dict:
    """One from-scratch run: per-step losses, the step the loss left chance, held-out top-1."""
    torch.set_num_threads(1)
    design, linear, temporal = VARIANTS[variant]
    x_train, y_train, x_val, y_val = clips(style)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(Path(tmp), Path(tmp) / "data", [f"model.design={design}", f"model.init={linear}",
                                                            f"model.temporal_init={temporal}", f"seed={seed}"])
    plan = Plan(train_videos=TRAIN, val_videos=VAL, micro_steps_per_epoch=steps, steps_per_epoch=steps,
                total_steps=steps, warmup_steps=steps // 10, lr=cfg.scaled_lr)
    torch.manual_seed(seed)
    step = TrainStep(cfg, plan, torch.device("cpu"))
    step.model.train()
    order = torch.Generator().manual_seed(seed)
    losses = []
    for i in range(steps):
        idx = torch.randint(0, TRAIN, (BATCH,), generator=order)
        losses.append(step(x_train[idx], y_train[idx], None, i).loss)
    step.bare.eval()
    with torch.no_grad():
        top1 = (step.bare(normalize(x_val)).argmax(1) == y_val).float().mean().item()
    return {"style": style, "variant": variant, "seed": seed, "left_chance": left_chance(losses), "val_top1": top1}


def left_chance(losses: list[float], window: int = 25) -> int | None:
    for i in range(window, len(losses) + 1):
        if sum(losses[i - window:i]) / window < 0.9 * CHANCE:
            return i
    return None


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
