"""`vfn data {prepare,synth,shard,check,info}`: manifests from a dataset's own annotation files, the
synthetic dataset, Parquet video shards, manifest checks."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter

from vfn.data.datasets import READERS
from vfn.data.transcode import PRESETS, TUNES, Encoding

DEFAULT = Encoding()
ENCODING_FLAGS = ("short_side", "keyframe_interval", "crf", "preset", "tune", "chroma_qp_offset", "min_psnr")


def add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="manifests with the published label ids from a dataset's annotation files",
                       description="Write <out>/<split>.csv manifests (path,label; paths relative to --root) with the "
                                   "label ids of the released checkpoints, <out>/labels.csv and <out>/missing.csv "
                                   "(annotations whose video is not under --root, with the reason), from the files "
                                   "the dataset ships: Kinetics CSVs, the SSv2 split JSONs, the Diving-48 split "
                                   "JSONs, the ActivityNet-1.3 JSON. Then `vfn data shard <out>/train.csv --root "
                                   "VIDEOS ...`.")
    p.add_argument("dataset", choices=list(READERS))
    p.add_argument("annotations", nargs="+", help="the dataset's annotation files (e.g. train.csv validate.csv)")
    p.add_argument("--root", required=True, help="the directory of the videos (flat, per-class or per-split folders)")
    p.add_argument("--out", required=True, help="where the manifests go")
    p.add_argument("--labels", default=None,
                   help="ssv2: something-something-v2-labels.json; diving48: Diving48_vocab.json (checked against "
                        "the published class order)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    add_prepare(sub)

    p = sub.add_parser("synth", help="write the synthetic temporal-order dataset (H.264 MP4 + manifests)",
                       description="Write a synthetic action dataset whose classes differ only in temporal "
                                   "order (pairs such as moving left/right), with train.csv, val.csv, labels.csv.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--videos", type=int, default=800, help="number of videos (train + val)")
    p.add_argument("--classes", type=int, default=8, help="even number of classes, 2..10")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64, help="frame height and width (even)")
    p.add_argument("--frames", type=int, default=16, help="frames per video")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--workers", type=int, default=2, help="processes writing videos side by side (default 2)")
    p.add_argument("--style", choices=["cluttered", "simple", "simple-any"], default="cluttered",
                   help="cluttered: gradient background, distractors, small objects, random motion start/stop; "
                        "simple: bright objects on a plain dark background, larger, moving over the whole clip; "
                        "simple-any: simple in any colours")

    p = sub.add_parser("shard", help="pack the videos of a manifest into Parquet shards",
                       description="Pack videos into Parquet shards (bytes + label + probed metadata). By default "
                                   f"each video is re-encoded for fast seeking: H.264 {DEFAULT.pix_fmt}, short side "
                                   f"{DEFAULT.short_side} (never upscaled), a keyframe every "
                                   f"{DEFAULT.keyframe_interval} frames, constant frame rate (every frame kept), "
                                   f"rotation applied, audio dropped (libx264 preset {DEFAULT.preset}, tune "
                                   f"{DEFAULT.tune or 'none'}, crf {DEFAULT.crf}). Each re-encode's PSNR against its "
                                   "source is stored and shown by `vfn data info`; `vfn bench encoding` measures "
                                   "what an encoding costs in accuracy. Undecodable videos go to rejected.csv; "
                                   "re-running with the same settings skips finished shards.")
    p.add_argument("manifest", help="path,label CSV, 'path label' text, or Parquet with path/label columns")
    p.add_argument("--root", default=None, help="directory the manifest's paths are relative to")
    p.add_argument("--out", required=True, help="shard directory (local path or pyarrow filesystem URI)")
    p.add_argument("--shard-size-mb", type=float, default=256.0, help="target shard size")
    p.add_argument("--num-classes", type=int, default=None, help="labels must be in [0, N)")
    p.add_argument("--full-probe", action="store_true",
                   help="decode every frame while probing (default: first, middle and last frame)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes probing and re-encoding side by side (default: CPU count, max 8)")
    p.add_argument("--short-side", type=int, default=None,
                   help=f"re-encode with this short side (default {DEFAULT.short_side}; never upscales; "
                        "0 keeps the resolution)")
    p.add_argument("--keyframe-interval", type=int, default=None,
                   help=f"re-encode with a keyframe every N frames (default {DEFAULT.keyframe_interval})")
    p.add_argument("--crf", type=int, default=None,
                   help=f"re-encode at this x264 constant rate factor (default {DEFAULT.crf}; lower keeps more)")
    p.add_argument("--preset", default=None, choices=PRESETS, help=f"x264 preset (default {DEFAULT.preset})")
    p.add_argument("--tune", default=None, choices=[t or "none" for t in TUNES],
                   help=f"x264 tune (default {DEFAULT.tune or 'none'})")
    p.add_argument("--chroma-qp-offset", type=int, default=None,
                   help=f"x264 chroma QP offset, -12..12 (default {DEFAULT.chroma_qp_offset}: colour planes finer "
                        "than luma, so that objects that differ mostly in colour keep moving)")
    p.add_argument("--min-psnr", type=float, default=None,
                   help=f"reject a video whose re-encode's PSNR against the source is below this many dB "
                        f"(default {DEFAULT.min_psnr:g}; 0 keeps every video)")
    p.add_argument("--keep-original", action="store_true",
                   help="store the source bytes unchanged (no re-encoding)")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="Ray cluster address: one Ray task per shard across its nodes (default: $RAY_ADDRESS; "
                        "unset: a local process pool). --out and the videos must be reachable from every node")

    p = sub.add_parser("check", help="validate a manifest (and optionally decode every video)")
    p.add_argument("manifest")
    p.add_argument("--root", default=None)
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--labels", default=None, help="class-name list (id,name CSV); sets --num-classes")
    p.add_argument("--probe", action="store_true", help="also open and decode sample frames of every video")

    p = sub.add_parser("info", help="summarise Parquet shards: videos, classes, resolutions, codecs")
    p.add_argument("shards", help="shard directory, file or URI")
    p.add_argument("--labels", default=None, help="class-name list to print names")


def run(args: argparse.Namespace) -> int:
    from vfn.data.manifest import ManifestError

    try:
        action = {"prepare": _prepare, "synth": _synth, "shard": _shard, "check": _check, "info": _info}
        return action[args.data_command](args)
    except (ManifestError, FileNotFoundError, ValueError) as e:
        print(f"vfn data {args.data_command}: error: {e}", file=sys.stderr)
        return 2


def _prepare(args) -> int:
    from vfn.data.datasets import prepare

    report = prepare(args.dataset, args.annotations, args.root, args.out, labels_file=args.labels)
    print(f"{args.dataset}: {report.summary()}")
    for split in report.per_split:
        print(f"next: vfn data shard {report.out / f'{split}.csv'} --root {args.root} --out SHARDS/{split} "
              f"--num-classes {report.classes}")
    return 0


def _synth(args) -> int:
    from vfn.data.synth import make_synthetic_dataset

    ds = make_synthetic_dataset(args.out, args.videos, seed=args.seed, num_classes=args.classes, size=args.size,
                                num_frames=args.frames, fps=args.fps, val_fraction=args.val_fraction,
                                num_workers=args.workers, style=args.style)
    print(f"wrote {args.videos} videos, {ds.num_classes} classes to {ds.root}")
    print(f"  train manifest: {ds.train_manifest}\n"
          f"  val manifest:   {ds.val_manifest}\n"
          f"  labels:         {ds.labels_csv}")
    print(f"next: vfn data shard {ds.train_manifest} --root {ds.root} --out {ds.root}/shards/train")
    return 0


def _encoding(args) -> Encoding | None:
    """The Encoding the flags ask for (the defaults for the others), None with --keep-original."""
    given = {name: getattr(args, name) for name in ENCODING_FLAGS if getattr(args, name) is not None}
    if args.keep_original:
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ValueError(f"--keep-original stores the source bytes: {flags} do not apply")
        return None
    if given.get("tune") == "none":
        given["tune"] = None
    return Encoding(**given)


def _shard(args) -> int:
    from vfn.data.ingest import write_shards

    if args.keyframe_interval is not None and args.keyframe_interval < 1:
        raise ValueError(f"--keyframe-interval must be >= 1, got {args.keyframe_interval}")
    report = write_shards(args.manifest, args.out, root=args.root, max_shard_bytes=int(args.shard_size_mb * 2**20),
                          full_probe=args.full_probe, num_workers=args.workers, num_classes=args.num_classes,
                          encoding=_encoding(args), address=args.address or None)
    print(report.summary())
    for path, _label, line, reason in report.rejected[:10]:
        print(f"  rejected {args.manifest}:{line} {path}: {reason}")
    if len(report.rejected) > 10:
        print(f"  ... {len(report.rejected) - 10} more in {args.out}/rejected.csv")
    return 0 if report.videos else 1


def _check(args) -> int:
    from vfn.data.manifest import read_label_names, read_manifest

    num_classes = args.num_classes
    if args.labels:
        num_classes = len(read_label_names(args.labels))
    records = read_manifest(args.manifest, root=args.root, num_classes=num_classes)
    counts = Counter(r.label for r in records)
    print(f"{args.manifest}: {len(records)} videos, {len(counts)} classes "
          f"(per class min {min(counts.values())}, max {max(counts.values())})")
    if num_classes is not None and len(counts) < num_classes:
        print(f"  note: {num_classes - len(counts)} of {num_classes} classes have no video")
    if not args.probe:
        return 0
    from vfn.data.ingest import probe_file, process_pool

    with process_pool(min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(probe_file, [(r.full_path, False) for r in records], chunksize=4))
    bad = [(r, reason) for r, (meta, reason) in zip(records, results) if meta is None]
    for r, reason in bad[:20]:
        print(f"  {args.manifest}:{r.line}: {r.path}: {reason}")
    print(f"probed {len(records)} videos: {len(bad)} undecodable")
    return 1 if bad else 0


def _info(args) -> int:
    import numpy as np

    from vfn.data.manifest import read_label_names
    from vfn.data.shards import list_shards, read_encodings, read_metadata

    files = list_shards(args.shards)
    tables = [read_metadata(f) for f in files]
    meta = read_metadata(files).to_pydict()
    n = len(meta["label"])
    print(f"{args.shards}: {len(files)} shards, {n} videos, {sum(meta['num_bytes']) / 2**20:.1f} MiB of video")
    _print_encoding(read_encodings(files), meta)
    _print_quality(files, tables)
    if not n:
        return 0
    names = read_label_names(args.labels) if args.labels else None
    counts = Counter(meta["label"])
    print(f"  classes: {len(counts)} (per class min {min(counts.values())}, max {max(counts.values())})")
    if names and len(counts) <= 20:
        for label, c in sorted(counts.items()):
            print(f"    {label:4d} {names[label] if label < len(names) else '?':30s} {c}")
    frames, fps = np.array(meta["frames"]), np.array(meta["fps"])
    print(f"  frames: min {frames.min()}, median {int(np.median(frames))}, max {frames.max()}; "
          f"fps median {np.median(fps):.1f}")
    res = Counter(f"{h}x{w}" for h, w in zip(meta["height"], meta["width"]))
    print("  resolutions (h x w): " + ", ".join(f"{k} ({v})" for k, v in res.most_common(5)))
    print("  codecs: " + ", ".join(f"{k} ({v})" for k, v in Counter(meta["codec"]).most_common()))
    return 0


def _print_quality(files: list[str], tables: list) -> None:
    """The re-encode's PSNR against the source: over all videos, then per shard (worst first, at
    most 10 shards); nothing for original bytes."""
    import posixpath

    import pyarrow as pa

    from vfn.data.shards import shard_quality

    per_shard = [(posixpath.basename(f), q) for f, t in zip(files, tables) if (q := shard_quality(t))]
    if not per_shard:
        return
    every = shard_quality(pa.concat_tables(tables))
    print(f"  quality (PSNR of the re-encode against the source, {every['videos']} videos): mean "
          f"{every['psnr_mean']:.1f} dB, worst video {every['psnr_worst_video']:.1f} dB, worst frame "
          f"{every['psnr_min']:.1f} dB{colour_kept(every)}")
    per_shard.sort(key=lambda item: item[1]["psnr_worst_video"])
    for name, q in per_shard[:10]:
        print(f"    {name}: mean {q['psnr_mean']:.1f} dB, worst video {q['psnr_worst_video']:.1f}, "
              f"worst frame {q['psnr_min']:.1f}{colour_kept(q)} ({q['videos']} videos)")
    if len(per_shard) > 10:
        print(f"    ... {len(per_shard) - 10} more shards")


def colour_kept(quality: dict) -> str:
    if quality["colour_kept_mean"] is None:
        return ""
    return (f"; colour motion kept {quality['colour_kept_mean']:.0%} (worst video "
            f"{quality['colour_kept_worst_video']:.0%})")


def _print_encoding(encodings: list, meta: dict) -> None:
    """One line per distinct encoding, and what the sources were when they are known."""
    import json

    from vfn.data.transcode import describe_encoding

    kinds = Counter(json.dumps(e, sort_keys=True) for e in encodings)
    for kind, count in kinds.items():
        shards = f" ({count} shards)" if len(kinds) > 1 else ""
        print(f"  encoding: {describe_encoding(json.loads(kind))}{shards}")
    source = [b for b in meta.get("source_bytes", []) if b is not None]
    if source:
        stored = sum(b for b, s in zip(meta["num_bytes"], meta["source_bytes"]) if s is not None)
        codecs = ", ".join(f"{k} ({v})" for k, v in Counter(c for c in meta["source_codec"] if c).most_common())
        print(f"  sources: {sum(source) / 2**20:.1f} MiB (stored {stored / max(1, sum(source)):.0%} of that), "
              f"codecs {codecs}")
