"""`vfn train` from original-byte shards and from default re-encoded shards of the same synthetic
videos, over seeds: the platform end to end (Ray Data decode tasks, Ray Train worker, validation),
where `vfn bench encoding` trains in memory. Prints mean +- std of the final held-out top-1 per
shard set and writes them as JSON.

    python scripts/encoding_train_check.py --style simple --seeds 0 1 2 --workdir enc_check
    python scripts/encoding_train_check.py --style simple-any --seeds 0 1 2 --workdir enc_check_any
    python scripts/encoding_train_check.py --style cluttered --seeds 0 1 2 --workdir enc_check_cluttered

`simple` trains the quickstart's recipe as it is (experiments/quickstart.yaml); `simple-any` and
`cluttered` the laptop ablation's fine-tuning from the image-pretrained start
(experiments/ablations/design_cluttered.yaml: one worker, 8 epochs of 16, lr 5e-4, no crops or
jitter): from scratch, whether a run on them leaves chance at all depends on the seed.
Tracking is off; runs go to WORKDIR/runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vfn.commands.bench import encoding as bench_encoding

FINE_TUNING = ["optim.epochs=8", "optim.batch_size=16", "eval.every_epochs=4", "output.checkpoint_every=4",
               "optim.lr=5e-4", "augment.scale=[1.0,1.0]", "augment.color_jitter=0.0", "scaling.num_workers=1"]
RECIPES = {"simple": [], "simple-any": FINE_TUNING, "cluttered": FINE_TUNING}
PRETRAINED = {"simple-any", "cluttered"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--style", choices=sorted(RECIPES), default="simple")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--videos", type=int, default=1120)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from vfn.data.transcode import Encoding
    from vfn.training.driver import run_training

    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    sets = bench_encoding.make_shard_sets(work, args.style, args.videos, [Encoding()])
    extra = []
    if args.style in PRETRAINED:
        bench_encoding.pretrain_once(work, [])
        extra = [f"model.pretrained={bench_encoding.image_weights(work)}"]
    runs = []
    for seed in args.seeds:
        for label, shards in sets.items():
            cfg = bench_encoding.recipe_config(work, "scratch", seed, [
                *RECIPES[args.style], *extra, f"data.train={shards}/train", f"data.val={shards}/val",
                f"data.labels={work / 'synth' / 'labels.csv'}", f"output.root={work / 'runs'}",
                f"output.name={args.style}-{label}-seed{seed}", "tracking.enabled=false"])
            result = run_training(cfg, ray_init_kwargs={"log_to_driver": False})
            top1 = result.metrics["val_top1"]
            runs.append({"label": label, "seed": seed, "top1": top1, "wall_s": result.wall_s})
            print(f"  {label:10s} seed {seed}: val top-1 {top1:.1%} in {result.wall_s:.0f} s", flush=True)
    summary = bench_encoding.summarise(runs, list(sets))
    for label, s in summary.items():
        gap = f", gap {s['gap']:+.1%} ({'within' if s['within_one_std'] else 'NOT within'} one std)" \
            if "gap" in s else ""
        print(f"{label:10s} vfn train top-1 {s['mean']:.1%} +- {s['std']:.1%}{gap}")
    if args.json:
        Path(args.json).write_text(json.dumps({"style": args.style, "summary": summary, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
