"""`vfn predict CHECKPOINT VIDEO [--labels labels.csv]`: top-5 classes for one video file.

The checkpoint comes first, as in `vfn eval CHECKPOINT`. CHECKPOINT is a vfn training checkpoint or
run directory (its saved config gives model, frames, size and classes), an MLflow model of a run
(`runs:/<run id>/model`, `models:/NAME/VERSION`; from `--tracking-uri`, default $MLFLOW_TRACKING_URI,
else `vfn train`'s local store ./mlflow.db), or a released Video-FocalNet checkpoint (then
`--model/--frames/--input-size/--num-classes` describe it).
With VIDEO alone the zoo model runs with random weights (a smoke test of the whole path). The former
spelling `vfn predict VIDEO --checkpoint CHECKPOINT` still parses, for a release.
"""

from __future__ import annotations

import argparse
import sys

from vfn.commands import former_spelling


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "vfn predict [-h] [CHECKPOINT] VIDEO [options]"
    parser.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT",
                        help="a vfn run directory or checkpoint, an MLflow model (runs:/<run id>/model, "
                             "models:/NAME/VERSION), or released weights (with --model, --frames, ...); "
                             "left out: random weights")
    parser.add_argument("video", nargs="?", metavar="VIDEO", help="a video file (mp4, mkv, avi, mov, ...)")
    parser.add_argument("--checkpoint", dest="former_checkpoint", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--labels", default=None, help="class-name CSV (default: the checkpoint's data.labels)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store of runs:/ and models:/ URIs (default: $MLFLOW_TRACKING_URI or ./mlflow.db)")
    parser.add_argument("--model", default="videofocalnet_tiny", help="zoo model for released weights")
    parser.add_argument("--design", default="parallel")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--sampling", choices=("segment", "dense"), default="segment",
                        help="released weights: one frame per segment, as the released code samples")
    parser.add_argument("--interval", type=int, default=4, help="frame interval (dense sampling only)")
    parser.add_argument("--input-size", type=int, default=224, help="input height = width (default 224)")
    former_spelling(parser, "--size", "input_size")
    parser.add_argument("--num-classes", type=int, default=None, help="default: from --labels, else 400")
    parser.add_argument("--views", default="1x1", help="clips x crops, e.g. 4x3 (default 1x1)")
    parser.add_argument("--top", type=int, default=5)


def checkpoint_and_video(args: argparse.Namespace) -> tuple[str | None, str]:
    """(CHECKPOINT or None, VIDEO) from `CHECKPOINT VIDEO`, `VIDEO` alone or the former `VIDEO --checkpoint X`."""
    if args.checkpoint is None:
        raise ValueError("give a VIDEO (and the CHECKPOINT before it): vfn predict CHECKPOINT VIDEO")
    if args.video is None:
        return args.former_checkpoint, args.checkpoint
    if args.former_checkpoint:
        raise ValueError(f"two checkpoints: {args.checkpoint} and --checkpoint {args.former_checkpoint}")
    return args.checkpoint, args.video


def run(args: argparse.Namespace) -> int:
    try:
        args.checkpoint, args.video = checkpoint_and_video(args)
        rows = predict(args)
    except (ValueError, RuntimeError, OSError) as e:  # ConfigError, RunCheckpointError, CorruptVideoError, ...
        print(f"vfn predict: {e}", file=sys.stderr)
        return 2
    width = max(len(name) for _, name, _ in rows)
    print(f"{args.video}:")
    for rank, (idx, name, p) in enumerate(rows, 1):
        print(f"  {rank}. {name:<{width}}  {100 * p:5.1f}%  (class {idx})")
    return 0


def predict(args: argparse.Namespace) -> list[tuple[int, str, float]]:
    import dataclasses
    from pathlib import Path

    import torch

    from vfn.data.clips import decode_test_views, normalize
    from vfn.data.manifest import read_label_names
    from vfn.data.video import ClipSpec, CorruptVideoError
    from vfn.errors import first_line

    video = Path(args.video)
    if not video.is_file():
        raise OSError(f"{video}: no such file")
    clips, crops = (int(v) for v in args.views.lower().split("x"))
    labels = read_label_names(args.labels) if args.labels else None
    model, cfg, names = load_model(args, labels)
    if cfg is not None:  # a run's model: clips cut as it trained
        spec = dataclasses.replace(ClipSpec.from_config(cfg.data), num_clips=clips, num_crops=crops)
        if labels is None and (cfg.data.labels and Path(cfg.data.labels).is_file()):
            labels = read_label_names(cfg.data.labels)
        labels = labels or names
    else:
        spec = ClipSpec(num_frames=args.frames, frame_interval=args.interval, sampling=args.sampling,
                        input_size=args.input_size, num_clips=clips, num_crops=crops)
    num_classes = model.num_classes
    if labels is not None and len(labels) != num_classes:
        raise ValueError(f"--labels lists {len(labels)} classes, the model has {num_classes}")
    try:
        views = torch.from_numpy(decode_test_views(video.read_bytes(), spec))  # (V, T, 3, S, S)
    except CorruptVideoError as e:
        raise CorruptVideoError(f"{video}: not decodable ({first_line(e)})") from None
    model.eval()
    with torch.no_grad():
        probs = model(normalize(views)).softmax(-1).mean(0)
    top = probs.topk(min(args.top, num_classes))
    return [(int(i), labels[int(i)] if labels else f"class {int(i)}", float(p))
            for p, i in zip(top.values, top.indices)]


def load_model(args: argparse.Namespace, labels: list[str] | None):
    """(model, its experiment config, the class names it carries) from an MLflow model URI or a
    training checkpoint; released weights (or none: random) come without config or names."""
    import vfn.model as vm
    from vfn.config.schema import config_from_dict
    from vfn.tracking.models import is_model_uri, load_logged_model
    from vfn.tracking.runs import default_tracking_uri
    from vfn.training.build import build_model
    from vfn.training.checkpoints import RunCheckpointError, load_state, resolve_checkpoint

    if args.checkpoint and is_model_uri(args.checkpoint):
        return load_logged_model(args.checkpoint, args.tracking_uri or default_tracking_uri())
    if args.checkpoint:
        try:
            state = load_state(resolve_checkpoint(args.checkpoint))
        except RunCheckpointError:
            state = None  # not a training checkpoint: released weights below
        if state is not None:
            cfg = config_from_dict(state["config"], "checkpoint config")
            model = build_model(cfg, load_pretrained=False)
            model.load_state_dict(state["model"])
            return model, cfg, None
    num_classes = args.num_classes or (len(labels) if labels else 400)
    model = vm.create_model(args.model, num_classes=num_classes, num_frames=args.frames, img_size=args.input_size,
                            design=args.design)
    if args.checkpoint:
        vm.load_released_weights(model, args.checkpoint)
    else:
        print(f"vfn predict: no CHECKPOINT, {args.model} has random weights", file=sys.stderr)
    return model, None, None
