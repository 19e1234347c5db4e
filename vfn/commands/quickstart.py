"""`vfn quickstart [--workdir DIR]`: the whole platform on a laptop in a few minutes.

Synthetic order-sensitive videos -> Parquet shards -> a small Video-FocalNet trained by 2 Ray Train
workers -> multi-view evaluation -> a local MLflow store, all under the work directory (default:
the current one). Its last line is machine-readable:

    quickstart: top-1 100.0% (chance 25.0%) in 147 s; MLflow run <run id>
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vfn.config.schema import ExperimentConfig

# The recipe behind `vfn quickstart` has one source, the experiment file (read from the source tree the
# package is installed from, editable). Tuned for a 2-core CPU machine: a small model on 32x32 clips of
# 8 frames learns the temporal-order classes well above chance in minutes.
RECIPE_FILE = Path(__file__).resolve().parents[2] / "experiments" / "quickstart.yaml"
SHARD_BYTES = 512 << 10
# `simple` (bright objects on a dark background) is learnable from scratch in minutes on a CPU;
# `cluttered` is not, so with it the quickstart first pre-trains the image FocalNet it inflates from
SYNTH_STYLE, SYNTH_STYLES = "simple", ("simple", "cluttered")
SYNTH_SIZE, SYNTH_FRAMES = 32, 8  # stored at the model's input size: nothing to decode that is thrown away
NUM_VIDEOS = 1600  # 1280 train / 320 val: the 4 translation classes (right/left/down/up)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default=".", help="data, Ray storage and the MLflow store go here (default: .)")
    parser.add_argument("--videos", type=int, default=NUM_VIDEOS, help=f"synthetic videos (default {NUM_VIDEOS})")
    parser.add_argument("--style", choices=SYNTH_STYLES, default=SYNTH_STYLE,
                        help="synthetic style: simple (default), or cluttered (any colours, distractors, small "
                             "objects), which adds image pre-training on its frames before training")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="overrides of the recipe, e.g. optim.epochs=4")


def build_config(workdir: Path, data_dir: Path, overrides: list[str] | None = None):
    """The recipe of experiments/quickstart.yaml with its data and output under `workdir`, then `overrides`."""
    from vfn.config.load import read_yaml
    from vfn.config.schema import config_from_dict
    from vfn.errors import ConfigError

    if not RECIPE_FILE.is_file():
        raise ConfigError(f"{RECIPE_FILE}: quickstart recipe not found (vfn quickstart needs the repository's "
                          "experiments/ folder: install from a clone with `pip install -e .`)")
    cfg = config_from_dict(read_yaml(RECIPE_FILE), RECIPE_FILE.name).with_overrides({
        "data.train": str(data_dir / "shards" / "train"),
        "data.val": str(data_dir / "shards" / "val"),
        "data.labels": str(data_dir / "synth" / "labels.csv"),
        "output.root": str(workdir),
    })
    return cfg.with_overrides(overrides) if overrides else cfg


def pretrained_start(cfg: ExperimentConfig, weights: Path) -> ExperimentConfig:
    """`cfg` starting from an image FocalNet pre-trained on `cluttered` frames (written to `weights`)."""
    from vfn.training.image_pretrain import pretrain_image_focalnet

    print("      image pre-training on cluttered frames (the stand-in for ImageNet weights)", flush=True)
    report = pretrain_image_focalnet(cfg, weights, style="cluttered")
    print(f"      {report.summary()}", flush=True)
    return cfg.with_overrides({"model.pretrained": str(weights)})


def run(args: argparse.Namespace) -> int:
    t0 = time.time()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = workdir / "data"
    cfg = build_config(workdir, data_dir, args.overrides)

    from vfn.data.ingest import write_shards
    from vfn.data.synth import make_synthetic_dataset

    print(f"[1/4] synthetic dataset: {args.videos} {args.style} videos, {cfg.data.num_classes} temporal-order "
          f"classes -> {data_dir / 'synth'}", flush=True)
    synth = make_synthetic_dataset(data_dir / "synth", args.videos, seed=0, num_classes=cfg.data.num_classes,
                                   size=SYNTH_SIZE, num_frames=SYNTH_FRAMES, num_workers=2, style=args.style)
    if args.style == "cluttered" and not cfg.model.pretrained:
        cfg = pretrained_start(cfg, data_dir / "image_focalnet.pth")
    print("[2/4] Parquet shards", flush=True)
    for split, manifest in (("train", synth.train_manifest), ("val", synth.val_manifest)):
        # small shards (~0.5 MB, a few hundred clips): Ray Data reads and decodes them in parallel blocks
        report = write_shards(manifest, str(data_dir / "shards" / split), root=synth.root, progress=False,
                              max_shard_bytes=SHARD_BYTES)
        print(f"      {split}: {report.summary()}", flush=True)

    from vfn.training.driver import TrainingError, run_training

    print(f"[3/4] training {cfg.model.name} (embed {cfg.model.embed_dim}, depths {cfg.model.depths}) with "
          f"{cfg.scaling.num_workers} Ray Train workers for {cfg.optim.epochs} epochs", flush=True)
    try:
        result = run_training(cfg, ray_init_kwargs={"log_to_driver": False})
    except TrainingError as e:
        print(f"vfn quickstart: {e}", file=sys.stderr)
        return 1

    from vfn.commands.train import summary
    from vfn.evaluation.driver import run_evaluation

    print(summary(result), flush=True)
    print(f"[4/4] evaluating the best checkpoint ({cfg.eval.num_clips} clips x 3 crops per video)", flush=True)
    res, info = run_evaluation(str(result.best_checkpoint), cfg.data.val, overrides=["eval.num_crops=3"],
                               workdir=str(workdir), ray_init_kwargs={"log_to_driver": False})
    print(f"      {res.summary()}")
    chance = 1.0 / cfg.data.num_classes
    print(f"where to look:\n  run directory  {result.run_dir}\n  MLflow store   {result.tracking_uri}\n"
          f"  browse it      mlflow ui --backend-store-uri {result.tracking_uri}  (then open http://127.0.0.1:5000)")
    print(f"quickstart: top-1 {100 * res.top1:.1f}% (chance {100 * chance:.1f}%) in {time.time() - t0:.0f} s; "
          f"MLflow run {result.mlflow_run_id}")
    return 0 if res.top1 >= 2 * chance else 1
