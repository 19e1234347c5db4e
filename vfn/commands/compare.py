"""`vfn compare [RUN_OR_EXPERIMENT ...] [--metric M] [--filter EXPR] [--format table|csv|md] [--all-params]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="*", metavar="RUN_OR_EXPERIMENT",
                        help="run ids, run names or experiment names (default: every run in the store)")
    parser.add_argument("--metric", default="epoch/val_top1", help="metric to sort and plot by")
    parser.add_argument("--filter", default="", help="MLflow search filter, e.g. \"tags.design = 'spatial'\"")
    parser.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or ./mlflow.db")
    parser.add_argument("--out", default="compare.png", help="PNG of learning curves and metric vs GFLOPs")
    parser.add_argument("--format", default="table", choices=("table", "csv", "md"),
                        help="aligned text, CSV, or Markdown (for papers)")
    parser.add_argument("--all-params", action="store_true", help="every parameter, not only those that differ")
    parser.add_argument("--mode", choices=("max", "min"), default=None,
                        help="whether a higher metric is better (default: min for losses, else max)")


def where_to_look(workdir: Path = Path(".")) -> str:
    """The stores under `workdir` that `vfn quickstart` or `vfn train` wrote (`*/mlflow.db`), as the
    --tracking-uri to give; else the flag alone."""
    found = sorted(workdir.glob("*/mlflow.db"))[:3]
    if not found:
        return "give --tracking-uri (or set $MLFLOW_TRACKING_URI)"
    return "stores here: " + ", ".join(f"--tracking-uri sqlite:///{p}" for p in found)


def run(args: argparse.Namespace) -> int:
    from vfn.tracking.compare import CompareError, compare
    from vfn.tracking.runs import default_tracking_uri, sqlite_path

    uri = args.tracking_uri or default_tracking_uri(".")
    if (db := sqlite_path(uri)) is not None and not db.is_file():  # MLflow would create an empty store there
        print(f"vfn compare: no MLflow store at {db}; {where_to_look()}", file=sys.stderr)
        return 2
    try:
        result = compare(uri, args.runs, args.metric, args.filter, Path(args.out), fmt=args.format,
                         all_params=args.all_params, mode=args.mode)
    except CompareError as e:
        print(f"vfn compare: {e}", file=sys.stderr)
        return 2
    print(result["table"])
    print(f"\n{len(result['rows'])} runs; plot: {result['png']}")
    return 0
